package compact

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/strata-metrics/strata/pkg/blockgen"
)

// BenchmarkRunOnce runs the compactor once over 2 days of raw 2h blocks of
// one stream (20k series by default; STRATA_BENCH_SERIES sets another size):
// 24 blocks compacted to 8h and 2d, the 2d block downsampled to 5m, through
// a filesystem bucket. It reports raw samples per second and the peak Go
// heap, which follows the group being compacted, not the bucket.
func BenchmarkRunOnce(b *testing.B) {
	series := 20000
	if v := os.Getenv("STRATA_BENCH_SERIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		series = n
	}
	ctx := context.Background()
	end := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cfg := blockgen.Config{Seed: 1, Targets: max(1, series/blockgen.SeriesPerTarget(false)), MinTime: end.Add(-48 * time.Hour).UnixMilli(),
		MaxTime: end.UnixMilli(), Replicas: 1, ExternalLabels: map[string]string{"cluster": "bench"}}
	var samples uint64
	var peak uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bkt := newBucket(b)
		infos, err := blockgen.WriteBucket(ctx, logger, cfg, bkt)
		if err != nil {
			b.Fatal(err)
		}
		for _, in := range infos {
			samples += in.Meta.Stats.NumSamples
		}
		c, err := New(Config{DataDir: b.TempDir(), Downsampling: true}, bkt, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		stop, done := make(chan struct{}), make(chan struct{})
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
		b.StartTimer()
		err = c.RunOnce(ctx)
		b.StopTimer()
		close(stop)
		<-done
		if err != nil {
			b.Fatal(err)
		}
		if n := live(b, bkt); len(n) != 2 {
			b.Fatalf("%d live blocks after the run, want the 2d block and its 5m block", len(n))
		}
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(series), "series")
}
