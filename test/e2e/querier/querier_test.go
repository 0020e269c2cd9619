// Package querier_test runs the querier in front of a live HA pair of real
// Prometheus servers with sidecars: deduplication, a replica killed and
// restarted (no gap, no rate spike), a dead sidecar with and without
// partial response, and promtool as a client.
package querier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/strata-metrics/strata/test/e2e"
)

// maxGap is the longest gap allowed in a deduplicated series: two scrape
// intervals and some scheduling slack.
const maxGap = 2*scrapeInterval + scrapeInterval/2

// counter is scraped from every target, Prometheus and Strata alike.
const counter = "go_memstats_alloc_bytes_total"

func TestHAPairThroughQuerier(t *testing.T) {
	h := startHAPair(t)
	base := "http://" + h.q.HTTPAddr
	qAPI := e2e.NewAPI(t, base)
	noDedup := e2e.NewAPIWithParams(t, base, url.Values{"dedup": {"false"}})

	// Both replicas scrape every target and have a few samples of each,
	// as the querier sees them.
	e2e.Eventually(t, 45*time.Second, 250*time.Millisecond, func() error {
		for _, q := range []string{`count by (replica) (up == 1)`, `count by (replica) (count_over_time(up[1m]) >= 3)`} {
			v, _, _, err := noDedup.Query(e2e.QueryContext(t), q, time.Now())
			if err != nil {
				return err
			}
			vec, _ := v.(model.Vector)
			n := model.SampleValue(len(h.targets))
			if len(vec) != 2 || vec[0].Value != n || vec[1].Value != n {
				return fmt.Errorf("%s = %v, want %v for each replica", q, v, n)
			}
		}
		return nil
	})
	t0 := time.Now()

	t.Run("dedup", func(t *testing.T) {
		at := time.Now()
		v, warns, _, err := qAPI.Query(e2e.QueryContext(t), `up`, at)
		if err != nil || len(warns) > 0 {
			t.Fatalf("up: %v %v", err, warns)
		}
		vec := v.(model.Vector)
		got := map[string]int{}
		for _, s := range vec {
			if _, ok := s.Metric["replica"]; ok || s.Metric["cluster"] != "e2e" || s.Value != 1 {
				t.Fatalf("deduplicated series %s = %v: want cluster=e2e, no replica label, up", s.Metric, s.Value)
			}
			got[string(s.Metric["instance"])]++
		}
		for _, tg := range h.targets {
			if got[tg] != 1 {
				t.Fatalf("deduplicated up: %d series of %s, want 1:\n%v", got[tg], tg, vec)
			}
		}
		if len(vec) != len(h.targets) {
			t.Fatalf("deduplicated up: %d series, want %d:\n%v", len(vec), len(h.targets), vec)
		}

		v, _, _, err = noDedup.Query(e2e.QueryContext(t), `up`, at)
		if err != nil {
			t.Fatal(err)
		}
		both := map[string]int{}
		for _, s := range v.(model.Vector) {
			both[string(s.Metric["instance"])+" "+string(s.Metric["replica"])]++
		}
		for _, tg := range h.targets {
			if both[tg+" a"] != 1 || both[tg+" b"] != 1 {
				t.Fatalf("dedup=false: want %s from replica a and b once each:\n%v", tg, v)
			}
		}
		if len(v.(model.Vector)) != 2*len(h.targets) {
			t.Fatalf("dedup=false: %d series, want %d", len(v.(model.Vector)), 2*len(h.targets))
		}

		// The replica label is hidden from the label endpoints too.
		names, _, _, err := qAPI.LabelNames(e2e.QueryContext(t), nil, t0.Add(-time.Minute), at)
		if err != nil || slices.Contains(names, "replica") || !slices.Contains(names, "cluster") {
			t.Fatalf("label names with dedup: %v %v", names, err)
		}
	})

	t.Run("replica killed and restarted", func(t *testing.T) {
		apiA, apiB := h.promA.API(t), h.promB.API(t)
		qInstance := fmt.Sprintf(`up{instance=%q}`, h.q.HTTPAddr)
		// Both replicas scrape for a while, then a is killed, b goes on
		// alone for a while, and a, back with its WAL, scrapes again.
		waitSamples(t, apiA, qInstance, t0, 6)
		h.promA.Kill()
		killed := time.Now()
		waitSamples(t, apiB, qInstance, killed, 6)
		h.promA.Restart()
		restarted := time.Now()
		waitSamples(t, apiA, qInstance, restarted, 5)
		end := time.Now()
		window := fmt.Sprintf("%dms", end.Sub(t0).Milliseconds())

		// No gap in any deduplicated series: b's scrapes fill a's outage.
		dedupUp := rawSamples(t, qAPI, `up[`+window+`]`, end)
		aUp := rawSamples(t, apiA, `up[`+window+`]`, end)
		if len(dedupUp) != len(h.targets) {
			t.Fatalf("deduplicated up: %d series, want %d: %v", len(dedupUp), len(h.targets), keys(dedupUp))
		}
		from, to := model.TimeFromUnixNano(t0.UnixNano()), model.TimeFromUnixNano(end.UnixNano())
		for k, ps := range dedupUp {
			if g, at := longestGap(ps, from, to); g > maxGap {
				t.Errorf("deduplicated %s has a gap of %v at %s (replica a down from %s to %s)", k, g, at.Time().Format(time.RFC3339Nano),
					killed.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano))
			}
		}
		// ...which replica a alone does have, so the above proves something.
		for k, ps := range aUp {
			if g, _ := longestGap(ps, from, to); g < 5*scrapeInterval {
				t.Fatalf("replica a's own %s has no outage gap (longest %v)", k, g)
			}
		}

		// rate() of a counter: where the deduplicated samples in a window
		// are replica b's, the querier's rate is b's own; everywhere it
		// stays within the replicas' own rates (no spike at a switch).
		r := promv1.Range{Start: t0.Add(5 * time.Second), End: end, Step: time.Second}
		rateQ := `rate(` + counter + `[5s])`
		dRate := rangeSamples(t, qAPI, rateQ, r)
		bRate := rangeSamples(t, apiB, rateQ, r)
		dRaw := rawSamples(t, qAPI, counter+`[`+window+`]`, end)
		aRaw, bRaw := rawSamples(t, apiA, counter+`[`+window+`]`, end), rawSamples(t, apiB, counter+`[`+window+`]`, end)
		if len(dRate) != len(h.targets) {
			t.Fatalf("deduplicated %s: %d series, want %d: %v", rateQ, len(dRate), len(h.targets), keys(dRate))
		}
		compared := 0
		for k, ps := range dRate {
			bAt := byTime(bRate[k])
			aTimes := byTime(aRaw[k])
			for _, p := range ps {
				win := between(dRaw[k], p.Timestamp-5000, p.Timestamp)
				bWin := between(bRaw[k], p.Timestamp-5000, p.Timestamp)
				bv, hasB := bAt[p.Timestamp]
				if hasB && sameTimes(win, bWin) && !anyAt(win, aTimes) {
					compared++
					if !closeTo(float64(p.Value), float64(bv)) {
						t.Errorf("%s %s at %s: %v through the querier, replica b alone answers %v", rateQ, k, p.Timestamp, p.Value, bv)
					}
				}
			}
		}
		// No spike: a switch of replica read as a counter reset is what
		// makes rate() spike after dedup. Replica b scraped every target
		// throughout, so its own resets() are the true ones (one, for
		// replica a's own counter, which restarted); the querier's must
		// be the same. (Comparing rates themselves cannot tell: two
		// replicas' scrapes of a bursty counter give rates a few times
		// apart over 5s windows, and these processes are young enough
		// that a reset adds only some ten times the rate.)
		resetsQ := `resets(` + counter + `[` + window + `])`
		dResets, bResets := instant(t, qAPI, resetsQ, end), instant(t, apiB, resetsQ, end)
		if len(dResets) != len(h.targets) || len(bResets) != len(h.targets) {
			t.Fatalf("%s: %d series through the querier, %d from replica b, want %d", resetsQ, len(dResets), len(bResets), len(h.targets))
		}
		for k, b := range bResets {
			if d, ok := dResets[k]; !ok || d != b {
				t.Errorf("%s %s: %v through the querier, replica b alone %v: a replica switch read as a reset", resetsQ, k, d, b)
			}
		}
		// Four targets stayed up and b alone served a's outage for at
		// least one 5s window each.
		if compared < 4 {
			t.Fatalf("only %d rate points were served by replica b alone", compared)
		}
		t.Logf("%d of the rate points were replica b's alone and equal b's own answer", compared)
	})

	// After the kill test: by now every target has been scraped for well
	// over the 5s range below.
	t.Run("promtool", func(t *testing.T) {
		// Whole seconds, so that promtool and the API client ask for the
		// same evaluation time.
		at := time.Now().Truncate(time.Second)
		want, _, _, err := qAPI.Query(e2e.QueryContext(t), `up{job="strata"}`, at)
		if err != nil {
			t.Fatal(err)
		}
		out := promtool(t, "query", "instant", "--time="+unixTime(at), base, `up{job="strata"}`)
		if got := strings.TrimSpace(out); got != want.String() {
			t.Fatalf("promtool query instant printed:\n%s\nthe API answers:\n%s", got, want)
		}
		if n := len(want.(model.Vector)); n != 3 || strings.Contains(out, "replica") {
			t.Fatalf("promtool query instant: want the 3 strata targets once each, without replica:\n%s", out)
		}

		r := promv1.Range{Start: at.Add(-5 * time.Second), End: at, Step: time.Second}
		wantR, _, _, err := qAPI.QueryRange(e2e.QueryContext(t), `up{job="strata"}`, r)
		if err != nil {
			t.Fatal(err)
		}
		out = promtool(t, "query", "range", "--start="+unixTime(r.Start), "--end="+unixTime(r.End), "--step=1s", base, `up{job="strata"}`)
		if got := strings.TrimSpace(out); got != wantR.String() {
			t.Fatalf("promtool query range printed:\n%s\nthe API answers:\n%s", got, wantR)
		}
		m := wantR.(model.Matrix)
		if len(m) != 3 || strings.Contains(out, "replica") {
			t.Fatalf("promtool query range: want the 3 strata targets once each, without replica:\n%s", out)
		}
		for _, s := range m {
			if len(s.Values) != 6 {
				t.Fatalf("promtool query range: %s has %d points, want 6", s.Metric, len(s.Values))
			}
		}

		// promtool query series and labels: the API's answers, and no
		// replica label or replica values with dedup on.
		from := at.Add(-10 * time.Second)
		sets, _, _, err := qAPI.Series(e2e.QueryContext(t), []string{`up{job="strata"}`}, from, at)
		if err != nil {
			t.Fatal(err)
		}
		var wantSeries []string
		for _, ls := range sets {
			wantSeries = append(wantSeries, ls.String())
		}
		out = promtool(t, "query", "series", `--match=up{job="strata"}`, "--start="+unixTime(from), "--end="+unixTime(at), base)
		gotSeries := strings.Split(strings.TrimSpace(out), "\n")
		sort.Strings(wantSeries)
		sort.Strings(gotSeries)
		if !slices.Equal(gotSeries, wantSeries) || len(gotSeries) != 3 || strings.Contains(out, "replica") {
			t.Fatalf("promtool query series printed:\n%s\nthe API answers %v, want the 3 strata targets without replica", out, wantSeries)
		}
		vals, _, _, err := qAPI.LabelValues(e2e.QueryContext(t), "job", nil, from, at)
		if err != nil {
			t.Fatal(err)
		}
		out = promtool(t, "query", "labels", "--start="+unixTime(from), "--end="+unixTime(at), base, "job")
		if got := strings.Fields(out); !slices.Equal(got, []string{"app", "prometheus", "strata"}) || len(vals) != 3 {
			t.Fatalf("promtool query labels job printed %q, the API answers %v, want app, prometheus and strata", out, vals)
		}
		if out = promtool(t, "query", "labels", "--start="+unixTime(from), "--end="+unixTime(at), base, "replica"); strings.TrimSpace(out) != "" {
			t.Fatalf("promtool query labels replica printed %q: with dedup the replica label has no values", out)
		}
	})

	// The querier shards range queries (4 shards, any range); one that
	// evaluates them whole, over the same sidecars, answers the same, value
	// for value, over a window both replicas have fully written.
	t.Run("vertical shards", func(t *testing.T) {
		whole := e2e.StartStrata(t, "querier", true, "", "--endpoint="+h.scA.GRPCAddr, "--endpoint="+h.scB.GRPCAddr,
			"--query.replica-label=replica", "--endpoint.refresh-interval=1s", "--query.vertical-shards=1")
		wAPI := e2e.NewAPI(t, "http://"+whole.HTTPAddr)
		e2e.Eventually(t, 30*time.Second, 250*time.Millisecond, func() error {
			v, _, _, err := wAPI.Query(e2e.QueryContext(t), `count(up)`, time.Now())
			if vec, _ := v.(model.Vector); err != nil || len(vec) != 1 || vec[0].Value != model.SampleValue(len(h.targets)) {
				return fmt.Errorf("second querier not ready: %v %v", v, err)
			}
			return nil
		})
		end := time.Now().Add(-3 * time.Second).Truncate(time.Second)
		r := promv1.Range{Start: end.Add(-20 * time.Second), End: end, Step: time.Second}
		for _, q := range []string{
			`count(up)`,
			`count by (job) (up)`,
			`sum by (job) (rate(prometheus_http_requests_total[5s]))`,
			`sum without (instance) (rate(process_cpu_seconds_total[5s]))`,
			`max by (job) (go_goroutines)`,
		} {
			got, gw, _, err := qAPI.QueryRange(e2e.QueryContext(t), q, r)
			if err != nil {
				t.Fatalf("%s sharded: %v", q, err)
			}
			want, ww, _, err := wAPI.QueryRange(e2e.QueryContext(t), q, r)
			if err != nil {
				t.Fatalf("%s whole: %v", q, err)
			}
			if got.String() != want.String() || !slices.Equal(gw, ww) {
				t.Fatalf("%s: sharded\n%s %v\nwhole\n%s %v", q, got, gw, want, ww)
			}
			if m, _ := want.(model.Matrix); len(m) == 0 {
				t.Fatalf("%s: empty answer: the case proves nothing", q)
			}
		}
		resp, err := http.Get("http://" + h.q.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^strata_querier_range_queries_total\{evaluation="sharded"\} [1-9]`).Match(body) {
			t.Fatal("the querier evaluated no range query shard by shard")
		}
	})

	t.Run("metadata and exemplars", func(t *testing.T) {
		apiA := e2e.NewAPI(t, h.promA.URL)
		// Metadata: Prometheus' own, once, though both replicas know it.
		e2e.Eventually(t, 20*time.Second, 250*time.Millisecond, func() error {
			want, err := apiA.Metadata(e2e.QueryContext(t), "", "")
			if err != nil {
				return err
			}
			got, err := qAPI.Metadata(e2e.QueryContext(t), "", "")
			if err != nil {
				return err
			}
			if len(want["app_requests"]) == 0 {
				return fmt.Errorf("replica a has no metadata of app_requests yet")
			}
			if w, g := metadataString(want), metadataString(got); w != g {
				return fmt.Errorf("the querier's metadata differs from replica a's:\n%.600s\nwant:\n%.600s", g, w)
			}
			return nil
		})
		one, err := qAPI.Metadata(e2e.QueryContext(t), "app_requests", "")
		if err != nil || len(one) != 1 || len(one["app_requests"]) != 1 || one["app_requests"][0].Type != "counter" {
			t.Fatalf("metadata of app_requests: %v %v", one, err)
		}
		// Limits as Prometheus: limit=0 nothing, limit=1 one metric,
		// limit_per_metric=0 no limit.
		for limit, want := range map[string]int{"0": 0, "1": 1} {
			if md, err := qAPI.Metadata(e2e.QueryContext(t), "", limit); err != nil || len(md) != want {
				t.Fatalf("metadata with limit=%s: %d metrics (%v), want %d", limit, len(md), err, want)
			}
		}
		if code, body := httpGet(t, base+"/api/v1/metadata?metric=app_requests&limit_per_metric=0"); code != 200 || !strings.Contains(body, `"app_requests":[{"type":"counter"`) {
			t.Fatalf("metadata with limit_per_metric=0: %d %s", code, body)
		}
		if code, _ := httpGet(t, base+"/api/v1/query_exemplars?query=vector(1)"); code != http.StatusNoContent {
			t.Fatalf("exemplars of a query without selectors: HTTP %d, Prometheus answers 204", code)
		}

		// Exemplars: the app's one exemplar, once per series with dedup,
		// as replica a stores it, external labels added.
		from, to := t0.Add(-time.Minute), time.Now()
		want, err := apiA.QueryExemplars(e2e.QueryContext(t), "app_requests_total", from, to)
		if err != nil || len(want) != 1 || len(want[0].Exemplars) != 1 {
			t.Fatalf("replica a's exemplars: %v %v", want, err)
		}
		got, err := qAPI.QueryExemplars(e2e.QueryContext(t), "app_requests_total", from, to)
		if err != nil || len(got) != 1 || len(got[0].Exemplars) != 1 {
			t.Fatalf("exemplars through the querier: %+v %v", got, err)
		}
		wantLabels := want[0].SeriesLabels.Clone()
		wantLabels["cluster"] = "e2e"
		ge, we := got[0].Exemplars[0], want[0].Exemplars[0]
		if !got[0].SeriesLabels.Equal(wantLabels) || !ge.Labels.Equal(we.Labels) || ge.Value != we.Value || !ge.Timestamp.Equal(we.Timestamp) ||
			ge.Labels["trace_id"] != appExemplar {
			t.Fatalf("exemplar through the querier %v %+v, replica a has %v %+v", got[0].SeriesLabels, ge, wantLabels, we)
		}
		both, err := noDedup.QueryExemplars(e2e.QueryContext(t), `{__name__="app_requests_total", job="app"}`, from, to)
		if err != nil || len(both) != 2 || both[0].SeriesLabels["replica"] != "a" || both[1].SeriesLabels["replica"] != "b" {
			t.Fatalf("exemplars with dedup=false: want replica a's and b's series, got %+v %v", both, err)
		}
		if _, err := qAPI.QueryExemplars(e2e.QueryContext(t), "app_requests_total{", from, to); err == nil || !strings.Contains(err.Error(), "bad_data") {
			t.Fatalf("a bad exemplar query must be a bad_data error, got %v", err)
		}

		// A querier stacked on this one gets both over gRPC and answers
		// the same.
		top := e2e.StartStrata(t, "querier", true, "", "--endpoint="+h.q.GRPCAddr, "--query.replica-label=replica", "--endpoint.refresh-interval=1s")
		topAPI := e2e.NewAPI(t, "http://"+top.HTTPAddr)
		e2e.Eventually(t, 20*time.Second, 250*time.Millisecond, func() error {
			viaTop, err := topAPI.QueryExemplars(e2e.QueryContext(t), "app_requests_total", from, to)
			if err != nil {
				return err
			}
			if len(viaTop) != 1 || !viaTop[0].SeriesLabels.Equal(got[0].SeriesLabels) || len(viaTop[0].Exemplars) != 1 || viaTop[0].Exemplars[0].Value != ge.Value {
				return fmt.Errorf("exemplars through stacked queriers: %+v, want %+v", viaTop, got)
			}
			md, err := topAPI.Metadata(e2e.QueryContext(t), "app_requests", "")
			if err != nil || len(md["app_requests"]) != 1 {
				return fmt.Errorf("metadata through stacked queriers: %v %v", md, err)
			}
			return nil
		})
	})

	t.Run("dead sidecar", func(t *testing.T) {
		strict := e2e.NewAPIWithParams(t, base, url.Values{"partial_response": {"false"}})
		partial := e2e.NewAPIWithParams(t, base, url.Values{"partial_response": {"true"}})
		dead := h.scB.GRPCAddr
		check := func(when string) {
			t.Helper()
			at := time.Now()
			_, _, _, err := strict.Query(e2e.QueryContext(t), `up`, at)
			if err == nil || !strings.Contains(err.Error(), dead) {
				t.Fatalf("%s: partial_response=false must fail naming the sidecar %s, got %v", when, dead, err)
			}
			v, warns, _, err := partial.Query(e2e.QueryContext(t), `up`, at)
			if err != nil {
				t.Fatalf("%s: partial_response=true must answer: %v", when, err)
			}
			if len(v.(model.Vector)) != len(h.targets) {
				t.Fatalf("%s: partial_response=true answered %v, want replica a's %d series", when, v, len(h.targets))
			}
			if !strings.Contains(strings.Join(warns, "\n"), dead) {
				t.Fatalf("%s: partial_response=true must warn about the sidecar %s, got warnings %q", when, dead, warns)
			}
		}
		h.scB.Kill()
		check("right after the sidecar died")
		if _, err := strict.Metadata(e2e.QueryContext(t), "", ""); err == nil || !strings.Contains(err.Error(), dead) {
			t.Fatalf("metadata with partial_response=false must fail naming the sidecar %s, got %v", dead, err)
		}
		if md, err := partial.Metadata(e2e.QueryContext(t), "app_requests", ""); err != nil || len(md["app_requests"]) != 1 {
			t.Fatalf("metadata with partial_response=true must answer from replica a: %v %v", md, err)
		}
		e2e.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
			if storeHealthy(t, base, dead) {
				return fmt.Errorf("the querier still has %s as healthy", dead)
			}
			return nil
		})
		check("once the querier marked the sidecar unhealthy")
	})
}

// waitSamples waits until the Prometheus behind api has at least n samples
// of the single series q since the given time.
func waitSamples(t *testing.T, api promv1.API, q string, since time.Time, n int) {
	t.Helper()
	e2e.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		now := time.Now()
		cq := fmt.Sprintf("count_over_time(%s[%dms])", q, now.Sub(since).Milliseconds())
		v, _, _, err := api.Query(e2e.QueryContext(t), cq, now)
		if err != nil {
			return err
		}
		if vec, _ := v.(model.Vector); len(vec) != 1 || vec[0].Value < model.SampleValue(n) {
			return fmt.Errorf("%s = %v, waiting for %d", cq, v, n)
		}
		return nil
	})
}

// seriesKey names a series by its labels without the external labels, so
// that the querier's answers match each Prometheus' own, and without the
// metric name, so that raw samples match the rates of them.
func seriesKey(m model.Metric) string {
	c := m.Clone()
	delete(c, "cluster")
	delete(c, "replica")
	delete(c, model.MetricNameLabel)
	return c.String()
}

// rawSamples runs an instant query of a range selector and returns the raw
// samples by series.
func rawSamples(t *testing.T, api promv1.API, q string, at time.Time) map[string][]model.SamplePair {
	t.Helper()
	v, warns, _, err := api.Query(e2e.QueryContext(t), q, at)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%s: %v %v", q, err, warns)
	}
	return byKey(t, q, v)
}

// instant runs an instant query and returns its vector by series.
func instant(t *testing.T, api promv1.API, q string, at time.Time) map[string]model.SampleValue {
	t.Helper()
	v, warns, _, err := api.Query(e2e.QueryContext(t), q, at)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%s: %v %v", q, err, warns)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("%s: want a vector, got %s", q, v.Type())
	}
	out := map[string]model.SampleValue{}
	for _, s := range vec {
		out[seriesKey(s.Metric)] = s.Value
	}
	return out
}

func rangeSamples(t *testing.T, api promv1.API, q string, r promv1.Range) map[string][]model.SamplePair {
	t.Helper()
	v, warns, _, err := api.QueryRange(e2e.QueryContext(t), q, r)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%s: %v %v", q, err, warns)
	}
	return byKey(t, q, v)
}

func byKey(t *testing.T, q string, v model.Value) map[string][]model.SamplePair {
	t.Helper()
	m, ok := v.(model.Matrix)
	if !ok {
		t.Fatalf("%s: want a matrix, got %s", q, v.Type())
	}
	out := map[string][]model.SamplePair{}
	for _, s := range m {
		k := seriesKey(s.Metric)
		if _, dup := out[k]; dup {
			t.Fatalf("%s: series %s twice", q, k)
		}
		out[k] = s.Values
	}
	return out
}

// longestGap is the longest time in [from, to] without a sample, and where
// it ends.
func longestGap(ps []model.SamplePair, from, to model.Time) (time.Duration, model.Time) {
	prev, longest, at := from, time.Duration(0), from
	for _, p := range ps {
		if p.Timestamp < from {
			continue
		}
		if g := p.Timestamp.Sub(prev); g > longest {
			longest, at = g, p.Timestamp
		}
		prev = p.Timestamp
	}
	if g := to.Sub(prev); g > longest {
		longest, at = g, to
	}
	return longest, at
}

// between returns the samples in (from, to], as a range selector sees them.
func between(ps []model.SamplePair, from, to model.Time) []model.SamplePair {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Timestamp > from })
	j := sort.Search(len(ps), func(i int) bool { return ps[i].Timestamp > to })
	return ps[i:j]
}

func byTime(ps []model.SamplePair) map[model.Time]model.SampleValue {
	out := make(map[model.Time]model.SampleValue, len(ps))
	for _, p := range ps {
		out[p.Timestamp] = p.Value
	}
	return out
}

func sameTimes(a, b []model.SamplePair) bool {
	return slices.EqualFunc(a, b, func(x, y model.SamplePair) bool { return x.Timestamp == y.Timestamp })
}

func anyAt(ps []model.SamplePair, times map[model.Time]model.SampleValue) bool {
	for _, p := range ps {
		if _, ok := times[p.Timestamp]; ok {
			return true
		}
	}
	return false
}

// closeTo tells whether two floats are equal but for rounding.
func closeTo(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func keys(m map[string][]model.SamplePair) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func unixTime(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// promtool runs the real promtool with args and returns what it printed.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, e2e.ToolBinary(t, "promtool"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// storeHealthy tells whether the querier's /api/v1/stores lists name as
// healthy.
func storeHealthy(t *testing.T, base, name string) bool {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/stores")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data map[string][]struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, eps := range body.Data {
		for _, e := range eps {
			if e.Name == name {
				return e.Healthy
			}
		}
	}
	return false
}

// metadataString prints metadata with each metric's entries sorted, so
// that answers merged from several targets compare.
func metadataString(md map[string][]promv1.Metadata) string {
	names := make([]string, 0, len(md))
	for n := range md {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		var es []string
		for _, m := range md[n] {
			es = append(es, fmt.Sprintf("%s|%s|%s", m.Type, m.Unit, m.Help))
		}
		sort.Strings(es)
		fmt.Fprintf(&b, "%s: %s\n", n, strings.Join(es, "; "))
	}
	return b.String()
}

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(e2e.QueryContext(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
