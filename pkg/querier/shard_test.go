package querier

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/strata-metrics/strata/pkg/query"
)

// TestVerticalShardsEqualWhole: range queries evaluated shard by shard
// (--query.vertical-shards) answer bit for bit what the Prometheus engine
// answers evaluating them whole over the same stores: an HA pair, one
// replica missing a block, so deduplication switches replicas.
func TestVerticalShardsEqualWhole(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, 1)
	a, _ := serveStore(t, dirA, labels.FromStrings("cluster", "c1", "replica", "a"))
	b, _ := serveStore(t, dirB, labels.FromStrings("cluster", "c1", "replica", "b"))
	_, url, _, qr := runQuerier(t, a, b)
	waitStores(t, url, 2)
	whole := localEngine()
	start, stop, step := end.Add(-5*time.Hour), end.Add(-time.Minute), time.Minute

	for _, tc := range []struct {
		q         string
		dedup     bool
		gaps      bool // the answer has series that come and go: stale markers between parts
		annotated bool // the answer has warnings or infos
		wantErr   string
	}{
		{q: `count({__name__=~".+"})`, dedup: true},
		{q: `count({__name__=~"node_.+"})`, dedup: false},
		{q: `sum by (job, mode) (rate(node_cpu_seconds_total[5m]))`, dedup: true},
		{q: `histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))`, dedup: true},
		{q: `sum by (handler) (rate(http_request_duration_native_seconds[5m]))`, dedup: true},
		{q: `histogram_quantile(0.5, sum by (handler) (rate(http_request_duration_native_seconds[5m])))`, dedup: true},
		{q: `sum without (instance) (rate(http_requests_total[5m]))`, dedup: true},
		{q: `max(node_load1) - min(node_load1 offset 10m) + group(node_load1)`, dedup: true},
		{q: `topk by (job) (2, rate(http_requests_total[10m]))`, dedup: true},
		{q: `sum by (instance) (rate(http_requests_total[5m])) / sum by (instance) (rate(http_requests_total[1h]))`, dedup: true},
		{q: `count by (instance) (timestamp(node_load1) % 3600 > 1800)`, dedup: true, gaps: true},
		{q: `quantile by (job) (0.9, node_load1) + stddev by (job) (node_load1)`, dedup: true},
		{q: `count_values by (job) ("v", round(node_load1 * 2))`, dedup: true, gaps: true},
		{q: `sum by (job) (max_over_time(node_load1[30m:1m]))`, dedup: true},
		{q: `count by (replica) (node_load1)`, dedup: false},
		// Annotations of the parts and of the query over them, at the
		// positions of the query as asked.
		{q: `1 + sum by (job) (rate(node_load1[5m]))`, dedup: true, annotated: true},
		{q: "sum by (job) (node_load1)\n  + on (job) group_left max by (job) (rate(node_load1[5m]))\n  + on (job) group_left rate(node_load1{instance=\"host-00001:9100\"}[5m])", dedup: true, annotated: true},
		// Series that differ only in their name collide after rate(): the
		// error must not vanish because they fell into different shards.
		{q: `count(rate({__name__=~"node_load1|node_memory_MemAvailable_bytes"}[5m]))`, dedup: true, wantErr: "same labelset"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			c := query.WithOptions(ctx(t), query.Options{Dedup: tc.dedup, ReplicaLabels: []string{"replica"}, PartialResponse: false})
			run := func(e promql.QueryEngine) (promql.Query, *promql.Result) {
				q, err := e.NewRangeQuery(c, qr.Queryable, nil, tc.q, start, stop, step)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(q.Close)
				return q, q.Exec(c)
			}
			sq, got := run(qr.Engine)
			if !strings.Contains(fmt.Sprintf("%T", sq), "queryshard") {
				t.Fatalf("not sharded: %T", sq)
			}
			_, want := run(whole)
			if tc.wantErr != "" {
				if got.Err == nil || want.Err == nil || !strings.Contains(got.Err.Error(), tc.wantErr) || !strings.Contains(want.Err.Error(), tc.wantErr) {
					t.Fatalf("errors: sharded %v, whole %v; want both %q", got.Err, want.Err, tc.wantErr)
				}
				return
			}
			if got.Err != nil || want.Err != nil {
				t.Fatalf("errors: sharded %v, whole %v", got.Err, want.Err)
			}
			// Warnings and infos name the same expressions at the same
			// positions of the query.
			gw, gi := got.Warnings.AsStrings(tc.q, 0, 0)
			ww, wi := want.Warnings.AsStrings(tc.q, 0, 0)
			slices.Sort(gw)
			slices.Sort(ww)
			slices.Sort(gi)
			slices.Sort(wi)
			if !slices.Equal(gw, ww) || !slices.Equal(gi, wi) {
				t.Fatalf("annotations: sharded %q %q, whole %q %q", gw, gi, ww, wi)
			}
			if tc.annotated && len(ww)+len(wi) == 0 {
				t.Fatal("no annotations: the case proves nothing")
			}
			gm, wm := got.Value.(promql.Matrix), want.Value.(promql.Matrix)
			if d := diffMatrix(gm, wm); d != "" {
				t.Fatal(d)
			}
			if len(wm) == 0 {
				t.Fatal("empty answer: the case proves nothing")
			}
			steps := int(stop.Sub(start)/step) + 1
			sawGap := false
			for _, s := range wm {
				sawGap = sawGap || len(s.Floats)+len(s.Histograms) < steps
			}
			if tc.gaps && !sawGap {
				t.Fatal("no series with gaps: the case proves nothing")
			}
		})
	}
}

// TestVerticalShardsMinRange: ranges shorter than the minimum are
// evaluated whole (runQuerier sets it to 1h), and the metrics count both.
func TestVerticalShardsMinRange(t *testing.T) {
	_, url, _, qr := runQuerier(t)
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for rng, sharded := range map[time.Duration]bool{59 * time.Minute: false, time.Hour: true} {
		q, err := qr.Engine.NewRangeQuery(ctx(t), qr.Queryable, nil, `count(node_load1)`, end.Add(-rng), end, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		q.Close()
		if got := strings.Contains(fmt.Sprintf("%T", q), "queryshard"); got != sharded {
			t.Fatalf("range %s: sharded %v, want %v", rng, got, sharded)
		}
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`strata_querier_range_queries_total{evaluation="sharded"} 1`, `strata_querier_range_queries_total{evaluation="whole"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// diffMatrix describes the first difference between two range answers,
// comparing floats bit for bit.
func diffMatrix(got, want promql.Matrix) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d series, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !labels.Equal(g.Metric, w.Metric) {
			return fmt.Sprintf("series %d: %s, want %s", i, g.Metric, w.Metric)
		}
		if len(g.Floats) != len(w.Floats) || len(g.Histograms) != len(w.Histograms) {
			return fmt.Sprintf("%s: %d floats %d histograms, want %d %d", w.Metric, len(g.Floats), len(g.Histograms), len(w.Floats), len(w.Histograms))
		}
		for j := range w.Floats {
			if g.Floats[j].T != w.Floats[j].T || math.Float64bits(g.Floats[j].F) != math.Float64bits(w.Floats[j].F) {
				return fmt.Sprintf("%s: point %d is %v, want %v", w.Metric, j, g.Floats[j], w.Floats[j])
			}
		}
		for j := range w.Histograms {
			if g.Histograms[j].T != w.Histograms[j].T || !g.Histograms[j].H.Equals(w.Histograms[j].H) {
				return fmt.Sprintf("%s: histogram %d is %v, want %v", w.Metric, j, g.Histograms[j], w.Histograms[j])
			}
		}
	}
	return ""
}

var _ storage.Queryable = (*query.Queryable)(nil)
