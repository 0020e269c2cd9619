package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/test/e2e"
)

// TestFixtures proves the test data path end to end: blockgen writes the
// same blocks into a real MinIO bucket (through our upload code) and into a
// Prometheus data directory; the bucket lists and downloads them back byte
// for byte, and the real Prometheus answers queries over them with the
// generated values.
func TestFixtures(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	cfg := blockgen.Config{
		Seed:             7,
		Targets:          5,
		MinTime:          end.Add(-6 * time.Hour).UnixMilli(),
		MaxTime:          end.UnixMilli(),
		NativeHistograms: true,
		ExternalLabels:   map[string]string{"cluster": "e2e"},
	}

	m := e2e.StartMinIO(t)
	bkt := m.NewBucket(t)
	uploaded, err := blockgen.WriteBucket(ctx, logger, cfg, bkt)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	local, err := blockgen.WriteDir(ctx, cfg, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(uploaded) != 3 || len(local) != 3 {
		t.Fatalf("want 3 blocks each, got %d uploaded and %d local", len(uploaded), len(local))
	}

	listing, err := block.NewLister(bkt, 4).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(listing.Metas) != 3 || len(listing.Partial) != 0 || len(listing.Corrupt) != 0 {
		t.Fatalf("bucket listing: %d complete, %d partial, %d corrupt", len(listing.Metas), len(listing.Partial), len(listing.Corrupt))
	}
	dl := t.TempDir()
	for _, bi := range local {
		id := bi.Meta.ULID
		meta := listing.Metas[id]
		if meta == nil {
			t.Fatalf("block %s written locally is not in the bucket", id)
		}
		if meta.Thanos.Labels["cluster"] != "e2e" || meta.Thanos.Labels["replica"] != "a" || meta.Stats.NumSamples != bi.Meta.Stats.NumSamples {
			t.Fatalf("block %s meta in bucket: %+v", id, meta)
		}
		if _, err := block.Download(ctx, logger, bkt, id, dl); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"index", "chunks/000001"} {
			want, err := os.ReadFile(filepath.Join(bi.Dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dl, id.String(), rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("block %s %s: downloaded copy differs from the generated one (err %v)", id, rel, err)
			}
		}
	}

	// The expected value: one sample of a gauge, read from a block on disk.
	want := sampleOf(t, local[1].Dir, `node_load1`, "host-00003:9100")

	p := e2e.StartPrometheus(t, e2e.PrometheusOptions{DataDir: dataDir})
	api := p.API(t)
	v, _, _, err := api.Query(e2e.QueryContext(t), `node_load1{instance="host-00003:9100"}`, time.UnixMilli(want.t))
	if err != nil {
		t.Fatal(err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 || float64(vec[0].Value) != want.v {
		t.Fatalf("Prometheus answered %v at %d, the block holds %v", v, want.t, want.v)
	}
	// All generated series are there: 5 targets x 49 series.
	v, _, _, err = api.Query(e2e.QueryContext(t), `count({job=~"node|api"})`, time.UnixMilli(want.t))
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || int(vec[0].Value) != cfg.Targets*blockgen.SeriesPerTarget(true) {
		t.Fatalf("count of generated series = %v, want %d", v, cfg.Targets*blockgen.SeriesPerTarget(true))
	}
}

type sample struct {
	t int64
	v float64
}

// sampleOf returns the middle sample of a series in a block directory.
func sampleOf(t *testing.T, dir, name, instance string) sample {
	t.Helper()
	b, err := tsdb.OpenBlock(nil, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil,
		labels.MustNewMatcher(labels.MatchEqual, "__name__", name), labels.MustNewMatcher(labels.MatchEqual, "instance", instance))
	if !ss.Next() {
		t.Fatalf("series %s{instance=%q} not in block", name, instance)
	}
	it := ss.At().Iterator(nil)
	var all []sample
	for it.Next() == chunkenc.ValFloat {
		ts, v := it.At()
		all = append(all, sample{ts, v})
	}
	if len(all) == 0 {
		t.Fatal(fmt.Errorf("no samples"))
	}
	return all[len(all)/2]
}
