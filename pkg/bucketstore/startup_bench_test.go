package bucketstore

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

// BenchmarkStartup measures what makes store gateways slow to start: with
// 1000 blocks in the bucket (STRATA_BENCH_BLOCKS sets another count) it
// reports the time and bucket requests until ready (the first sync), the
// first query over all blocks (which derives every index header from ranged
// reads), and the same after a restart with the headers kept in --data-dir.
func BenchmarkStartup(b *testing.B) {
	nblocks := 1000
	if v := os.Getenv("STRATA_BENCH_BLOCKS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		nblocks = n
	}
	ctx := context.Background()
	root := b.TempDir()
	fs, err := filesystem.NewBucket(root)
	if err != nil {
		b.Fatal(err)
	}
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	cfg := blockgen.Config{Seed: 3, Targets: 2, MinTime: end.Add(-time.Duration(nblocks) * 2 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(),
		Replicas: 1, ReplicaValues: []string{"a"}, ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, objstore.WrapWithMetrics(fs, nil, "gen")); err != nil {
		b.Fatal(err)
	}
	req := &storepb.SeriesRequest{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}, Aggregates: []storepb.Aggr{storepb.Aggr_RAW}}

	var ready, first, restartReady, restartFirst time.Duration
	var readyOps, firstOps, restartOps float64
	var heap uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dataDir := b.TempDir()
		start := func() (*Store, *prometheus.Registry, time.Duration) {
			reg := prometheus.NewRegistry()
			bkt := objstore.WrapWithMetrics(fs, reg, "store")
			t0 := time.Now()
			s := New(ctx, Config{DataDir: dataDir, MaxTime: cfg.MaxTime * 2}, bkt, logger, reg)
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			return s, reg, time.Since(t0)
		}
		query := func(s *Store) time.Duration {
			client, _, _ := serveStore(b, s)
			t0 := time.Now()
			got, _, err := series(b, client, req)
			if err != nil || len(got) != cfg.Targets {
				b.Fatalf("%d series, err %v", len(got), err)
			}
			return time.Since(t0)
		}
		s, reg, d := start()
		ready += d
		readyOps += ops(b, reg)
		first += query(s)
		firstOps += ops(b, reg)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapInuse)

		s2, reg2, d2 := start()
		restartReady += d2
		restartFirst += query(s2)
		restartOps += ops(b, reg2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(nblocks), "blocks")
	b.ReportMetric(ready.Seconds()*1000/n, "ready-ms")
	b.ReportMetric(readyOps/n, "ready-bucket-ops")
	b.ReportMetric(first.Seconds()*1000/n, "first-query-ms")
	b.ReportMetric(firstOps/n, "bucket-ops-after-first-query")
	b.ReportMetric(restartReady.Seconds()*1000/n, "restart-ready-ms")
	b.ReportMetric(restartFirst.Seconds()*1000/n, "restart-first-query-ms")
	b.ReportMetric(restartOps/n, "restart-bucket-ops-after-first-query")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}

// ops is the number of bucket operations the store made so far.
func ops(b *testing.B, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if !strings.HasSuffix(mf.GetName(), "objstore_bucket_operations_total") {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
