package shipper

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

var logger = slog.New(slog.DiscardHandler)

func setup(t *testing.T) (string, []blockgen.BlockInfo, objstore.Bucket) {
	t.Helper()
	dir := t.TempDir()
	end := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocks, err := blockgen.WriteDir(context.Background(), blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 6*3600_000, MaxTime: end}, dir)
	if err != nil {
		t.Fatal(err)
	}
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir, blocks, bkt
}

func ext() labels.Labels { return labels.FromStrings("cluster", "c", "replica", "a") }

func TestShipsEachBlockOnce(t *testing.T) {
	ctx := context.Background()
	dir, blocks, bkt := setup(t)
	reg := prometheus.NewRegistry()
	s := New(dir, bkt, ext, false, logger, reg)
	n, err := s.Sync(ctx)
	if err != nil || n != len(blocks) {
		t.Fatalf("first sync shipped %d of %d: %v", n, len(blocks), err)
	}
	for _, b := range blocks {
		m, err := block.ReadMetaFromBucket(ctx, bkt, b.Meta.ULID)
		if err != nil || m.Thanos.Source != block.SourceSidecar || m.Thanos.Labels["replica"] != "a" {
			t.Fatalf("block %s: %v %+v", b.Meta.ULID, err, m)
		}
	}
	// The TSDB block's own meta.json is untouched.
	own, err := block.ReadMeta(blocks[0].Dir)
	if err != nil || len(own.Thanos.Labels) != 0 {
		t.Fatalf("shipper modified the block's meta.json: %+v %v", own.Thanos, err)
	}
	var st state
	b, _ := os.ReadFile(filepath.Join(dir, StateFilename))
	if err := json.Unmarshal(b, &st); err != nil || st.Version != 1 || len(st.Uploaded) != len(blocks) {
		t.Fatalf("state file: %s %v", b, err)
	}
	if n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx); err != nil || n != 0 {
		t.Fatalf("a restarted shipper uploaded %d blocks again: %v", n, err)
	}
	// State lost: the bucket is the truth.
	if err := os.Remove(filepath.Join(dir, StateFilename)); err != nil {
		t.Fatal(err)
	}
	if n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx); err != nil || n != 0 {
		t.Fatalf("with the state file lost %d blocks were uploaded again: %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFilename)); err != nil {
		t.Fatal("state file not rebuilt")
	}
	if v := testutil.ToFloat64(s.uploads); v != float64(len(blocks)) {
		t.Fatalf("uploads metric %v", v)
	}
}

func TestSkipsCompactedBlocksAndNeedsLabels(t *testing.T) {
	ctx := context.Background()
	dir, blocks, bkt := setup(t)
	m, err := block.ReadMeta(blocks[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Compaction.Level = 2
	if err := m.WriteMeta(blocks[0].Dir); err != nil {
		t.Fatal(err)
	}
	n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx)
	if err != nil || n != len(blocks)-1 {
		t.Fatalf("shipped %d, want all but the compacted one: %v", n, err)
	}
	n, err = New(dir, bkt, ext, true, logger, prometheus.NewRegistry()).Sync(ctx)
	if err != nil || n != 1 {
		t.Fatalf("with upload-compacted shipped %d, want the compacted one: %v", n, err)
	}
	_, err = New(t.TempDir(), bkt, labels.EmptyLabels, false, logger, prometheus.NewRegistry()).Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), "external labels") {
		t.Fatalf("want an error about missing external labels, got %v", err)
	}
}
