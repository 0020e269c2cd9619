package compact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

var logger = slog.New(slog.DiscardHandler)

func newBucket(t testing.TB) objstore.InstrumentedBucket {
	t.Helper()
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return objstore.WrapWithMetrics(fs, nil, "test")
}

func newCompactor(t *testing.T, bkt objstore.InstrumentedBucket, cfg Config) (*Compactor, *prometheus.Registry) {
	t.Helper()
	cfg.DataDir = t.TempDir()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, bkt, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// live lists the blocks not marked for deletion.
func live(t testing.TB, bkt objstore.InstrumentedBucket) []*block.Meta {
	t.Helper()
	l, err := block.NewLister(bkt, 4).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*block.Meta
	for id, m := range l.Metas {
		if l.DeletionMarks[id] == nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MinTime < out[j].MinTime })
	return out
}

type pt struct {
	t int64
	v float64
}

func readSet(t *testing.T, ss storage.SeriesSet) map[string][]pt {
	t.Helper()
	out := map[string][]pt{}
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		it = s.Iterator(it)
		key := s.Labels().String()
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt == chunkenc.ValFloat {
				ts, v := it.At()
				out[key] = append(out[key], pt{ts, v})
			} else {
				out[key] = append(out[key], pt{it.AtT(), -1})
			}
		}
	}
	if ss.Err() != nil {
		t.Fatal(ss.Err())
	}
	return out
}

// TestCompactHAPairThreeDays: 3 days of raw 2h blocks of an HA pair become
// fewer, larger, deduplicated blocks whose every series equals one
// replica's, with no sample lost.
func TestCompactHAPairThreeDays(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 5, Targets: 2, MinTime: end - 3*24*3600_000, MaxTime: end, Replicas: 2,
		ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	c, reg := newCompactor(t, bkt, Config{ReplicaLabels: []string{"replica"}})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	blocks := live(t, bkt)
	var lastMax int64 = cfg.MinTime
	for _, b := range blocks {
		if b.Thanos.Labels["replica"] != "" || b.Thanos.Labels["cluster"] != "c" || b.Thanos.Source != block.SourceCompactor {
			t.Fatalf("compacted block %s: labels %v source %s", b.ULID, b.Thanos.Labels, b.Thanos.Source)
		}
		if b.MinTime != lastMax {
			t.Fatalf("blocks do not tile the range: %d after %d", b.MinTime, lastMax)
		}
		lastMax = b.MaxTime
	}
	if lastMax != cfg.MaxTime || len(blocks) > 4 {
		t.Fatalf("%d blocks up to %d, want at most 4 (2d + 8h levels) up to %d", len(blocks), lastMax, cfg.MaxTime)
	}
	if n := testutil.ToFloat64(c.m.compactions); n < 2 {
		t.Fatalf("compactions = %v", n)
	}
	_ = reg

	// Within every compacted block, each series is exactly replica a's
	// samples of that range: nothing lost, nothing doubled, and the replica
	// first in label order preferred, so the deduplicated history equals one
	// Prometheus'.
	dir := t.TempDir()
	all := labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")
	for _, b := range blocks {
		if _, err := block.Download(ctx, logger, bkt, b.ULID, dir); err != nil {
			t.Fatal(err)
		}
		tb, err := tsdb.OpenBlock(nil, filepath.Join(dir, b.ULID.String()), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tsdb.NewBlockQuerier(tb, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		got := readSet(t, q.Select(ctx, true, nil, all))
		q.Close()
		tb.Close()
		ra := readSet(t, blockgen.SeriesSet(cfg, 0, b.MinTime, b.MaxTime-1, all))
		rb := readSet(t, blockgen.SeriesSet(cfg, 1, b.MinTime, b.MaxTime-1, all))
		if len(got) != len(ra) {
			t.Fatalf("block %s: %d series, the replicas have %d", b.ULID, len(got), len(ra))
		}
		for k, pts := range got {
			if !equalPts(pts, ra[k]) {
				t.Fatalf("block %s series %s: %d samples match neither replica (%d, %d): %s", b.ULID, k, len(pts), len(ra[k]), len(rb[k]), firstDiffs(pts, ra[k], rb[k]))
			}
		}
	}

	// A second run with nothing to do changes nothing; with no delete delay
	// it deletes the compacted sources.
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if after := live(t, bkt); len(after) != len(blocks) {
		t.Fatalf("second run changed the live blocks: %d -> %d", len(blocks), len(after))
	}
	l, _ := block.NewLister(bkt, 4).List(ctx)
	if len(l.Metas) != len(blocks) {
		t.Fatalf("sources not deleted after the delete delay: %d blocks in the bucket", len(l.Metas))
	}
}

func equalPts(a, b []pt) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// writeBlocks writes blocks of one stream (labels) at the given [min, max)
// ranges in hours from base.
func writeBlocks(t *testing.T, bkt objstore.Bucket, ext map[string]string, base int64, ranges ...[2]int64) []ulid.ULID {
	t.Helper()
	var ids []ulid.ULID
	for _, r := range ranges {
		var series []storage.Series
		var smp []chunksSample
		for ts := base + r[0]*3600_000; ts < base+r[1]*3600_000; ts += 60_000 {
			smp = append(smp, chunksSample{ts, float64(ts)})
		}
		series = append(series, listSeries(labels.FromStrings("__name__", "m"), smp))
		dir, err := tsdb.CreateBlock(series, t.TempDir(), 0, logger)
		if err != nil {
			t.Fatal(err)
		}
		m, err := block.ReadMeta(dir)
		if err != nil {
			t.Fatal(err)
		}
		m.Thanos = block.Thanos{Version: 1, Labels: ext, Source: block.SourceTest}
		if err := block.UploadWithMeta(context.Background(), logger, bkt, dir, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ULID)
	}
	return ids
}

func TestOverlapHaltsGroup(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	ids := writeBlocks(t, bkt, map[string]string{"cluster": "c"}, base, [2]int64{0, 2}, [2]int64{1, 3})
	c, _ := newCompactor(t, bkt, Config{})
	err := c.RunOnce(ctx)
	var ov *OverlapError
	if !errors.As(err, &ov) {
		t.Fatalf("want an overlap error, got %v", err)
	}
	for _, id := range ids {
		if !strings.Contains(err.Error(), id.String()) {
			t.Fatalf("error does not name block %s: %v", id, err)
		}
	}
	if v := testutil.ToFloat64(c.m.halted.WithLabelValues(ov.Group)); v != 1 {
		t.Fatalf("halted metric = %v", v)
	}
	if len(live(t, bkt)) != 2 {
		t.Fatal("a halted group must be left alone")
	}
	// With vertical compaction the two are merged.
	c2, _ := newCompactor(t, bkt, Config{VerticalCompaction: true})
	if err := c2.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := live(t, bkt); len(got) != 1 || got[0].MinTime != base || got[0].MaxTime != base+3*3600_000-60_000+1 {
		t.Fatalf("vertical compaction: %d blocks %v", len(got), got)
	}
}

func TestNoCompactMarkAndPlanning(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	ids := writeBlocks(t, bkt, map[string]string{"cluster": "c"}, base, [2]int64{0, 2}, [2]int64{2, 4}, [2]int64{4, 6}, [2]int64{6, 8}, [2]int64{8, 10})
	if _, err := block.MarkForNoCompaction(ctx, logger, bkt, ids[1], block.ManualNoCompactReason, "test"); err != nil {
		t.Fatal(err)
	}
	c, _ := newCompactor(t, bkt, Config{})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := live(t, bkt)
	var names []string
	kept := false
	for _, b := range got {
		names = append(names, fmt.Sprintf("[%dh,%dh)", (b.MinTime-base)/3600_000, (b.MaxTime-base+3600_000-1)/3600_000))
		kept = kept || b.ULID == ids[1]
	}
	if !kept {
		t.Fatalf("the no-compact block was compacted: %v", names)
	}
	// The 8h window [0h,8h) holds blocks 0, 2, 3 and the marked block 1:
	// no compaction spans block 1, so only 2 and 3 become one block (were
	// 0 compacted with them, removing the mark would leave an overlap);
	// [8h,10h) is the newest, incomplete window: left.
	if len(got) != 4 {
		t.Fatalf("blocks after compaction: %v", names)
	}
	for _, b := range got {
		if b.ULID != ids[1] && b.MinTime < base+4*3600_000 && b.MaxTime > base+2*3600_000 {
			t.Fatalf("block %s [%d,%d) spans the no-compact block: %v", b.ULID, b.MinTime, b.MaxTime, names)
		}
	}
	// With the mark removed, the blocks plan as usual: no overlap.
	if err := bkt.Delete(ctx, ids[1].String()+"/"+block.NoCompactMarkFilename); err != nil {
		t.Fatal(err)
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatalf("after the no-compact mark is removed: %v", err)
	}
}

func TestRetentionAndDeleteDelay(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	old := time.Now().Add(-10 * 24 * time.Hour).Truncate(2 * time.Hour).UnixMilli()
	recent := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour).UnixMilli()
	oldID := writeBlocks(t, bkt, map[string]string{"cluster": "old"}, old, [2]int64{0, 2})[0]
	recentID := writeBlocks(t, bkt, map[string]string{"cluster": "new"}, recent, [2]int64{0, 2})[0]
	c, _ := newCompactor(t, bkt, Config{Retention: map[int64]time.Duration{0: 5 * 24 * time.Hour}, DeleteDelay: time.Hour})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := block.ReadMarker[block.DeletionMark](ctx, bkt, oldID); err != nil {
		t.Fatalf("block past retention not marked: %v", err)
	}
	if _, err := block.ReadMarker[block.DeletionMark](ctx, bkt, recentID); !errors.Is(err, block.ErrMarkerNotFound) {
		t.Fatalf("recent block marked: %v", err)
	}
	// Within the delete delay the marked block stays.
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bkt.Exists(ctx, oldID.String()+"/meta.json"); !ok {
		t.Fatal("marked block deleted before its delete delay")
	}
	// Past the delay it goes.
	c2, _ := newCompactor(t, bkt, Config{Retention: map[int64]time.Duration{0: 5 * 24 * time.Hour}})
	if err := c2.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bkt.Exists(ctx, oldID.String()+"/meta.json"); ok {
		t.Fatal("marked block not deleted after its delete delay")
	}
	if ok, _ := bkt.Exists(ctx, recentID.String()+"/meta.json"); !ok {
		t.Fatal("recent block deleted")
	}
	_ = os.Remove
}

func firstDiffs(got, a, b []pt) string {
	out := ""
	for name, r := range map[string][]pt{"a": a, "b": b} {
		for i := range got {
			if i >= len(r) || got[i] != r[i] {
				lo := max(0, i-2)
				out += fmt.Sprintf("vs %s at %d: got %v want %v; ", name, i, got[lo:min(i+3, len(got))], r[lo:min(i+3, len(r))])
				break
			}
		}
	}
	return out
}

// TestConcurrentGroups: with --compact.concurrency=3, three streams are
// compacted in the same pass, each into one 8h block.
func TestConcurrentGroups(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i, s := range []string{"x", "y", "z"} {
		// Seeds differ: blockgen's ULIDs derive from the seed.
		cfg := blockgen.Config{Seed: int64(10 + i), Targets: 1, MinTime: base, MaxTime: base + 8*3600_000, Replicas: 1, ExternalLabels: map[string]string{"s": s}}
		if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newCompactor(t, bkt, Config{Concurrency: 3})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, b := range live(t, bkt) {
		if b.MaxTime-b.MinTime != 8*3600_000 {
			t.Fatalf("block %s of %v spans %d ms, want 8h", b.ULID, b.Thanos.Labels, b.MaxTime-b.MinTime)
		}
		per[b.Thanos.Labels["s"]]++
	}
	if len(per) != 3 || per["x"] != 1 || per["y"] != 1 || per["z"] != 1 {
		t.Fatalf("8h blocks per stream: %v", per)
	}
}
