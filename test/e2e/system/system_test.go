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
		"--consistency-delay=0s", "--delete-delay=0s", "--deduplication.replica-label=replica", "--downsampling.disable")
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
	for id, m := range l.Metas {
		if l.DeletionMarks[id] == nil && m.Thanos.Source == block.SourceCompactor {
			compacted++
			if m.Thanos.Labels["replica"] != "" {
				t.Fatalf("compacted block %s keeps the replica label: %v", id, m.Thanos.Labels)
			}
		}
	}
	if compacted == 0 {
		t.Fatalf("the compactor wrote no block:\n%s", comp.Logs())
	}

	store := e2e.StartStrata(t, "store", true, "", "--objstore.config-file="+conf, "--data-dir="+t.TempDir(),
		"--ignore-deletion-marks-delay=0s", "--sync-block-duration=2s")
	q := e2e.StartStrata(t, "querier", true, "", append(endpoints, "--endpoint="+store.GRPCAddr,
		"--query.replica-label=replica", "--endpoint.refresh-interval=1s")...)
	api := e2e.NewAPI(t, "http://"+q.HTTPAddr)
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
