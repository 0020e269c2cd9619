package downsample

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

// BenchmarkBlock downsamples one 2-day raw block of blockgen data (20k
// series by default; STRATA_BENCH_SERIES sets another size, e.g. 200000)
// to 5m, and reports raw samples per second and the peak Go heap, which
// must follow the largest series, not the block.
func BenchmarkBlock(b *testing.B) {
	series := 20000
	if v := os.Getenv("STRATA_BENCH_SERIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		series = n
	}
	end := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cfg := blockgen.Config{Seed: 1, Targets: max(1, series/blockgen.SeriesPerTarget(false)), MinTime: end.Add(-48 * time.Hour).UnixMilli(),
		MaxTime: end.UnixMilli(), Replicas: 1, BlockDuration: 48 * time.Hour, ExternalLabels: map[string]string{"cluster": "bench"}}
	dir := b.TempDir()
	infos, err := blockgen.WriteDir(context.Background(), cfg, filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	if len(infos) != 1 {
		b.Fatalf("%d blocks, want one 2d block", len(infos))
	}
	src := infos[0].Dir
	m, err := block.ReadMeta(src)
	if err != nil {
		b.Fatal(err)
	}
	m.Thanos = block.Thanos{Version: 1, Labels: cfg.ExternalLabels}
	logger := promslog.NewNopLogger()
	b.ResetTimer()
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(dir, "out", strconv.Itoa(i))
		nm, err := Block(context.Background(), logger, m, src, out, block.Resolution5m)
		if err != nil {
			b.Fatal(err)
		}
		if nm.Stats.NumSeries != m.Stats.NumSeries {
			b.Fatalf("%d series out of %d", nm.Stats.NumSeries, m.Stats.NumSeries)
		}
		os.RemoveAll(out)
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(m.Stats.NumSamples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(m.Stats.NumSeries), "series")
}
