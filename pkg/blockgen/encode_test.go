package blockgen

import (
	"context"
	"errors"
	"testing"
)

// TestEncodeSeriesStopsOnWriteError: when writing fails midway the
// parallel encoder returns that error and stops its goroutines instead of
// blocking on batches nobody will write.
func TestEncodeSeriesStopsOnWriteError(t *testing.T) {
	cfg := testConfig()
	cfg.Targets = 50 // ~2500 series: several batches
	cfg.Defaults()
	defs := catalog(&cfg)
	spec := blockSpec{min: cfg.MaxTime - 3600_000, max: cfg.MaxTime}
	boom := errors.New("disk full")
	for _, workers := range []int{1, 2, 4} {
		var batches, series int
		err := encodeSeries(context.Background(), &cfg, defs, spec, workers, func(b *encodedBatch) error {
			if b.first != batches*seriesPerBatch {
				t.Fatalf("batch starting at series %d written out of order", b.first)
			}
			batches++
			series += len(b.samples)
			if batches == 2 {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) || batches != 2 || series != 2*seriesPerBatch {
			t.Fatalf("%d workers: err %v after %d batches of %d series", workers, err, batches, series)
		}
	}
}
