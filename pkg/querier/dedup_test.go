package querier

import (
	"context"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/pkg/queryapi"
)

var queries = []string{
	`node_load1`,
	`rate(http_requests_total[5m])`,
	`increase(http_requests_total[1h])`,
	`sum by (job, mode) (rate(node_cpu_seconds_total[5m]))`,
	`histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))`,
	`histogram_quantile(0.5, rate(http_request_duration_native_seconds[5m]))`,
	`rate(http_request_duration_native_seconds[5m])`,
	`topk(3, node_memory_MemAvailable_bytes)`,
	`max_over_time(node_load1[30m:1m])`,
	`node_load1 offset 10m`,
	`resets(http_requests_total[2h])`,
	`count({__name__=~"node_.+"})`,
}

// TestDedupEqualsOnePrometheus: with dedup on, every query through two
// stores of an HA pair and the querier answers exactly what Prometheus'
// engine answers over one replica.
func TestDedupEqualsOnePrometheus(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, -1)
	a, _ := serveStore(t, dirA, labels.FromStrings("cluster", "c1", "replica", "a"))
	b, _ := serveStore(t, dirB, labels.FromStrings("cluster", "c1", "replica", "b"))
	api, url := startQuerier(t, a, b)
	waitStores(t, url, 2)
	local := localEngine()
	dbA := openDB(t, dirA)

	at := end.Add(-2*time.Hour - 7*time.Minute)
	for _, q := range queries {
		t.Run(q, func(t *testing.T) {
			got, warns, _, err := api.Query(ctx(t), q, at)
			if err != nil || len(warns) > 0 {
				t.Fatalf("instant: %v %v", err, warns)
			}
			if want := localQuery(t, local, dbA, q, at, at, 0); normalise(got, "cluster") != want {
				t.Fatalf("instant %s:\ngot:\n%s\nwant:\n%s", q, normalise(got, "cluster"), want)
			}
			r := promv1.Range{Start: end.Add(-5 * time.Hour), End: end.Add(-time.Minute), Step: 5 * time.Minute}
			gotR, _, _, err := api.QueryRange(ctx(t), q, r)
			if err != nil {
				t.Fatalf("range: %v", err)
			}
			if want := localQuery(t, local, dbA, q, r.Start, r.End, r.Step); normalise(gotR, "cluster") != want {
				t.Fatalf("range %s differs from Prometheus over one replica:\ngot:\n%.2000s\nwant:\n%.2000s", q, normalise(gotR, "cluster"), want)
			}
		})
	}

	// dedup=false shows both replicas.
	v, err := rawQuery(t, url, `count(node_load1)`, at, "dedup=false")
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(model.Vector); len(vec) != 1 || vec[0].Value != 8 {
		t.Fatalf("dedup=false: count = %v, want both replicas' 8 series", v)
	}
	// Replica labels are hidden with dedup.
	names, _, _, err := api.LabelNames(ctx(t), nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !contains(names, "cluster") || !contains(names, "instance") || contains(names, "replica") {
		t.Fatalf("label names: %v", names)
	}
	vals, _, _, err := api.LabelValues(ctx(t), "replica", nil, time.Time{}, time.Time{})
	if err != nil || len(vals) != 0 {
		t.Fatalf("replica label values with dedup: %v %v", vals, err)
	}

	// Native histograms: Prometheus' JSON unless the client asks for every
	// field (queryapi.FullHistogramsMIME).
	q := url + "/api/v1/query?query=" + neturl.QueryEscape(`rate(http_request_duration_native_seconds[5m])`) + "&time=" + strconv.FormatInt(at.Unix(), 10)
	for _, accept := range []string{"", queryapi.FullHistogramsMIME} {
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, q, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ct, full := resp.Header.Get("Content-Type"), strings.Contains(string(body), `"counterResetHint":"gauge"`)
		if want := map[string]string{"": "application/json", queryapi.FullHistogramsMIME: queryapi.FullHistogramsMIME}[accept]; ct != want || full != (accept != "") {
			t.Fatalf("Accept %q: Content-Type %s, every histogram field %v:\n%.500s", accept, ct, full, body)
		}
	}
}

// TestReplicaDownLeavesNoGapNoSpike: replica a lost a 2h block; the
// deduplicated answer has no gap and its rates stay close to replica b's.
func TestReplicaDownLeavesNoGapNoSpike(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, 1) // a misses its second block
	a, _ := serveStore(t, dirA, labels.FromStrings("cluster", "c1", "replica", "a"))
	b, _ := serveStore(t, dirB, labels.FromStrings("cluster", "c1", "replica", "b"))
	api, url := startQuerier(t, a, b)
	waitStores(t, url, 2)
	r := promv1.Range{Start: end.Add(-6 * time.Hour).Add(10 * time.Minute), End: end.Add(-time.Minute), Step: time.Minute}

	got, _, _, err := api.QueryRange(ctx(t), `count(node_load1)`, r)
	if err != nil {
		t.Fatal(err)
	}
	m := got.(model.Matrix)
	if len(m) != 1 || len(m[0].Values) != int(r.End.Sub(r.Start)/r.Step)+1 {
		t.Fatalf("deduplicated series has gaps: %d steps", len(m[0].Values))
	}
	for _, p := range m[0].Values {
		if p.Value != 4 {
			t.Fatalf("count at %v = %v, want 4", p.Timestamp, p.Value)
		}
	}

	dbB := openDB(t, dirB)
	want := rangeByMetric(t, toModel(t, mustRange(t, localEngine(), dbB, `rate(http_requests_total[5m])`, r)).(model.Matrix))
	gotRate, _, _, err := api.QueryRange(ctx(t), `rate(http_requests_total[5m])`, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range gotRate.(model.Matrix) {
		delete(s.Metric, "cluster")
		ref := want[s.Metric.String()]
		for i, p := range s.Values {
			w := float64(ref[i].Value)
			if d := float64(p.Value) - w; d > 0.05*w+0.01 || d < -0.05*w-0.01 {
				t.Fatalf("%s at %v: rate %v vs replica b's %v: a spike at the replica switch", s.Metric, p.Timestamp, p.Value, w)
			}
		}
	}
}

// TestStoreDown: a failing store is a warning under partial response and an
// error without it.
func TestStoreDown(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, -1)
	a, _ := serveStore(t, dirA, labels.FromStrings("cluster", "c1", "replica", "a"))
	b, stopB := serveStore(t, dirB, labels.FromStrings("cluster", "c1", "replica", "b"))
	api, url := startQuerier(t, a, b)
	waitStores(t, url, 2)
	stopB()
	at := end.Add(-time.Hour)
	v, warns, _, err := api.Query(ctx(t), `count(node_load1)`, at)
	if err != nil {
		t.Fatalf("partial response should answer: %v", err)
	}
	if vec := v.(model.Vector); len(vec) != 1 || vec[0].Value != 4 {
		t.Fatalf("answer from the live store: %v", v)
	}
	if len(warns) == 0 || !strings.Contains(strings.Join(warns, " "), b) {
		t.Fatalf("want a warning naming the failed store %s, got %v", b, warns)
	}
	_, err = rawQuery(t, url, `count(node_load1)`, at, "partial_response=false")
	if err == nil || !strings.Contains(err.Error(), b) {
		t.Fatalf("partial_response=false must fail naming the store, got %v", err)
	}
}

func contains(s model.LabelNames, v string) bool {
	for _, x := range s {
		if string(x) == v {
			return true
		}
	}
	return false
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
