// Package system_test runs the whole system as in the demo, on a real MinIO
// bucket: an HA pair of real Prometheus servers with sidecars, three days of
// history backfilled, compacted and deduplicated by the compactor, served by
// the store gateway, queried through the querier, and compares dashboard
// queries with one Prometheus holding the same history.
package system_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/test/e2e"
)

var dashboard = []string{
	`sum by (job) (rate(http_requests_total[5m]))`,
	`histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))`,
	`topk(3, max_over_time(node_load1[1h]))`,
	`count({__name__=~"node_.+"})`,
	`sum by (mode) (increase(node_cpu_seconds_total[1h]))`,
	`avg(node_memory_MemAvailable_bytes)`,
}

func TestSystemAgainstOnePrometheus(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	end := time.Now().Add(-4 * time.Hour).Truncate(2 * time.Hour)
	hist := blockgen.Config{Seed: 21, Targets: 8, MinTime: end.Add(-72 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(),
		Replicas: 2, ExternalLabels: map[string]string{"cluster": "sys"}}

	minio := e2e.StartMinIO(t)
	bkt := minio.NewBucket(t)
	if _, err := blockgen.WriteBucket(ctx, logger, hist, bkt); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "objstore.yml")
	if err := os.WriteFile(conf, []byte(minio.ObjstoreConfig()), 0o600); err != nil {
		t.Fatal(err)
	}

	// The reference: one Prometheus holding replica a's history.
	refCfg := hist
	refCfg.Replicas = 1
	refDir := t.TempDir()
	if _, err := blockgen.WriteDir(ctx, refCfg, refDir); err != nil {
		t.Fatal(err)
	}
	ref := e2e.StartPrometheus(t, e2e.PrometheusOptions{DataDir: refDir})

	// The live pair with sidecars shipping to the same bucket.
	var endpoints []string
	for _, r := range []string{"a", "b"} {
		p := e2e.StartPrometheus(t, e2e.PrometheusOptions{BlockDuration: 2 * time.Hour,
			ExternalLabels: map[string]string{"cluster": "sys", "replica": r}})
		sc := e2e.StartStrata(t, "sidecar", true, "", "--prometheus.url="+p.URL, "--tsdb.path="+p.DataDir, "--objstore.config-file="+conf)
		endpoints = append(endpoints, "--endpoint="+sc.GRPCAddr)
	}

	// The compactor compacts and deduplicates the history, once.
	comp := e2e.StartStrataNoWait(t, "compactor", false, "", "--objstore.config-file="+conf, "--data-dir="+t.TempDir(),
		"--consistency-delay=0s", "--delete-delay=0s", "--deduplication.replica-label=replica")
	e2e.Eventually(t, 5*time.Minute, time.Second, func() error {
		if !comp.Exited() {
			return fmt.Errorf("compactor still running")
		}
		return nil
	})
	l, err := block.NewLister(bkt, 8).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compacted := 0
	var fiveMin *block.Meta
	for id, m := range l.Metas {
		if l.DeletionMarks[id] == nil && m.Thanos.Downsample.Resolution == block.Resolution5m {
			fiveMin = m
		}
		if l.DeletionMarks[id] == nil && m.Thanos.Source == block.SourceCompactor {
			compacted++
			if m.Thanos.Labels["replica"] != "" {
				t.Fatalf("compacted block %s keeps the replica label: %v", id, m.Thanos.Labels)
			}
		}
	}
	if compacted == 0 || fiveMin == nil {
		t.Fatalf("the compactor wrote no compacted block (%d) or no 5m block (%v):\n%s", compacted, fiveMin != nil, comp.Logs())
	}

	store := e2e.StartStrata(t, "store", true, "", "--objstore.config-file="+conf, "--data-dir="+t.TempDir(),
		"--ignore-deletion-marks-delay=0s", "--sync-block-duration=2s")
	q := e2e.StartStrata(t, "querier", true, "", append(endpoints, "--endpoint="+store.GRPCAddr,
		"--query.replica-label=replica", "--endpoint.refresh-interval=1s")...)
	api := e2e.NewAPIWithParams(t, "http://"+q.HTTPAddr, url.Values{"max_source_resolution": {"0s"}})
	refAPI := ref.API(t)

	r := promv1.Range{Start: end.Add(-71 * time.Hour), End: end.Add(-time.Minute), Step: 30 * time.Minute}
	e2e.Eventually(t, time.Minute, 500*time.Millisecond, func() error {
		v, _, _, err := api.Query(e2e.QueryContext(t), `count(node_load1)`, end.Add(-time.Hour))
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || int(vec[0].Value) != hist.Targets {
			return fmt.Errorf("count(node_load1) = %v", v)
		}
		return nil
	})
	for _, query := range dashboard {
		got, _, _, err := api.QueryRange(e2e.QueryContext(t), query, r)
		if err != nil {
			t.Fatalf("%s through the querier: %v", query, err)
		}
		want, _, _, err := refAPI.QueryRange(e2e.QueryContext(t), query, r)
		if err != nil {
			t.Fatalf("%s on Prometheus: %v", query, err)
		}
		if g, w := render(got), render(want); g != w {
			t.Fatalf("%s differs from one Prometheus:\ngot:\n%.1500s\nwant:\n%.1500s", query, g, w)
		}
	}

	// Through the 5m block: windows aligned to the aggregates (evaluated
	// 1ms before each full hour, so (t-1h, t] holds exactly twelve 5m
	// windows) give the raw answers for min, max and sum, and the
	// counter aggregate gives the raw increase within extrapolation error.
	dsAPI := e2e.NewAPIWithParams(t, "http://"+q.HTTPAddr, url.Values{"max_source_resolution": {"5m"}})
	hour := int64(time.Hour / time.Millisecond)
	dr := promv1.Range{Start: time.UnixMilli(fiveMin.MinTime + hour - 1), End: time.UnixMilli(fiveMin.MaxTime - 1), Step: time.Hour}
	for _, tc := range []struct {
		query string
		tol   float64 // relative
	}{
		{`max_over_time(node_load1[1h])`, 0},
		{`min_over_time(node_memory_MemAvailable_bytes[1h])`, 0},
		{`sum_over_time(node_load1[1h])`, 1e-9},
		{`sum by (mode) (increase(node_cpu_seconds_total[1h]))`, 0.05},
		{`sum by (job) (rate(http_requests_total[1h]))`, 0.05},
	} {
		got, _, _, err := dsAPI.QueryRange(e2e.QueryContext(t), tc.query, dr)
		if err != nil {
			t.Fatalf("%s at 5m: %v", tc.query, err)
		}
		want, _, _, err := refAPI.QueryRange(e2e.QueryContext(t), tc.query, dr)
		if err != nil {
			t.Fatalf("%s on Prometheus: %v", tc.query, err)
		}
		if err := within(got, want, tc.tol); err != nil {
			t.Fatalf("%s at 5m vs raw on Prometheus: %v", tc.query, err)
		}
	}
	// And the 5m data are what was read: twelve aggregates per hour, not
	// the raw samples.
	v, _, _, err := dsAPI.Query(e2e.QueryContext(t), `count_over_time(node_load1[1h])`, dr.End)
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != hist.Targets || vec[0].Value != 12 {
		t.Fatalf("count_over_time at 5m = %v, want %d series of 12 aggregates", v, hist.Targets)
	}
}

// within compares two matrices point by point, values within tol relative
// error, ignoring the cluster label the querier adds.
func within(got, want model.Value, tol float64) error {
	g, ok1 := got.(model.Matrix)
	w, ok2 := want.(model.Matrix)
	if !ok1 || !ok2 {
		return fmt.Errorf("not matrices: %T %T", got, want)
	}
	byLabels := map[string]*model.SampleStream{}
	for _, s := range w {
		byLabels[s.Metric.String()] = s
	}
	if len(g) != len(w) || len(w) == 0 {
		return fmt.Errorf("%d series, want %d", len(g), len(w))
	}
	for _, s := range g {
		delete(s.Metric, "cluster")
		ws := byLabels[s.Metric.String()]
		if ws == nil {
			return fmt.Errorf("unexpected series %s", s.Metric)
		}
		if len(s.Values) != len(ws.Values) {
			return fmt.Errorf("%s: %d points, want %d", s.Metric, len(s.Values), len(ws.Values))
		}
		for i, p := range s.Values {
			wp := ws.Values[i]
			d := math.Abs(float64(p.Value - wp.Value))
			if p.Timestamp != wp.Timestamp || d > tol*math.Abs(float64(wp.Value)) {
				return fmt.Errorf("%s at %s: %v, want %v", s.Metric, p.Timestamp, p.Value, wp.Value)
			}
		}
	}
	return nil
}

// render prints a matrix sorted, without the cluster label the querier adds.
func render(v model.Value) string {
	m, ok := v.(model.Matrix)
	if !ok {
		return fmt.Sprint(v)
	}
	var lines []string
	for _, s := range m {
		delete(s.Metric, "cluster")
		var b strings.Builder
		b.WriteString(s.Metric.String())
		for _, p := range s.Values {
			fmt.Fprintf(&b, " %s@%d", p.Value, p.Timestamp)
		}
		lines = append(lines, b.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
