package bucketstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

// TestCorruptChunksDoNotCrash: a chunk length or offset that a corrupt
// segment or index makes absurd is an error for the request, not a panic
// that takes the store down.
func TestCorruptChunksDoNotCrash(t *testing.T) {
	ctx := context.Background()
	buf := make([]byte, 64)
	binary.PutUvarint(buf, math.MaxInt64-2)
	if _, _, _, err := parseChunk(buf); err == nil {
		t.Fatal("a chunk length past any buffer must be an error")
	}

	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocks, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 5, MinTime: end - 2*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt)
	if err != nil {
		t.Fatal(err)
	}
	id := blocks[0].Meta.ULID.String()

	// An offset past the end of its segment, read through a window.
	b := newBucketBlock(ctx, blocks[0].Meta, bkt, newPageCache("test", 1<<20, nil), t.TempDir())
	seg, err := b.segment(0)
	if err != nil {
		t.Fatal(err)
	}
	ref := chunks.ChunkRef(uint64(seg.size) + 100)
	if _, _, err := newChunkWindows([]matched{{chks: []blockChunk{{b: b, ref: ref}}}}).chunk(b, ref); err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("a chunk past the end of its segment: want an error naming the block, got %v", err)
	}

	// The first chunk's length overwritten with a huge one; a request wide
	// enough to read through windows.
	name := id + "/chunks/000001"
	rc, err := bkt.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	binary.PutUvarint(data[8:], math.MaxInt64-2) // after the segment header
	if err := bkt.Upload(ctx, name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	client, _, _ := serve(t, bkt, Config{ChunkCacheBytes: pageSize})
	all := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}
	if _, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all}); err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("a corrupt chunk length: want an error naming the block, got %v", err)
	}
}

// TestLabelsWithSeriesMatchers: label names and values restricted by series
// matchers (Grafana's label_values(metric, label)) answer for the matching
// series only.
func TestLabelsWithSeriesMatchers(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	if _, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 2, MinTime: end - 2*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt); err != nil {
		t.Fatal(err)
	}
	client, _, _ := serve(t, bkt, Config{ChunkCacheBytes: 1 << 20})
	load := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	names, err := client.LabelNames(ctx, &storepb.LabelNamesRequest{Start: math.MinInt64, End: math.MaxInt64, Matchers: load})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names.Names, "instance") || !slices.Contains(names.Names, "cluster") || slices.Contains(names.Names, "le") {
		t.Fatalf("label names of node_load1: %v", names.Names)
	}
	vals, err := client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "job", Start: math.MinInt64, End: math.MaxInt64, Matchers: load})
	if err != nil {
		t.Fatal(err)
	}
	all, err := client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "job", Start: math.MinInt64, End: math.MaxInt64})
	if err != nil {
		t.Fatal(err)
	}
	if len(vals.Values) != 1 || len(all.Values) < 2 || !slices.Contains(all.Values, vals.Values[0]) {
		t.Fatalf("job of node_load1: %v, of every series: %v", vals.Values, all.Values)
	}
	inst, err := client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "instance", Start: math.MinInt64, End: math.MaxInt64, Matchers: load})
	if err != nil || len(inst.Values) != 2 {
		t.Fatalf("instances of node_load1: %v, %v; want the 2 targets", inst.GetValues(), err)
	}
}

// listFailBucket fails listing one block once, as a transient S3 error.
type listFailBucket struct {
	objstore.InstrumentedBucket
	prefix string
	fail   atomic.Bool
}

func (b *listFailBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if dir == b.prefix && b.fail.CompareAndSwap(true, false) {
		return errors.New("503 SlowDown")
	}
	return b.InstrumentedBucket.Iter(ctx, dir, f, opts...)
}

func (b *listFailBucket) ReaderWithExpectedErrs(objstore.IsOpFailureExpectedFunc) objstore.BucketReader {
	return b
}

// TestUnreadableBlockStaysServed: a block the bucket fails to list once is
// not gone: it stays served, with its local index copy.
func TestUnreadableBlockStaysServed(t *testing.T) {
	ctx := context.Background()
	base := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocks, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 4*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, base)
	if err != nil {
		t.Fatal(err)
	}
	fb := &listFailBucket{InstrumentedBucket: base, prefix: blocks[0].Meta.ULID.String() + "/"}
	dir := t.TempDir()
	client, _, s := serve(t, fb, Config{DataDir: dir, ChunkCacheBytes: 1 << 20})
	load := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	want, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: load})
	if err != nil {
		t.Fatal(err)
	}
	before := len(s.snapshot())
	fb.fail.Store(true)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(s.snapshot()); after != before {
		t.Fatalf("after a transient listing error: %d blocks served, %d before", after, before)
	}
	if _, err := os.Stat(indexPath(dir, blocks[0].Meta.ULID.String())); err != nil {
		t.Fatalf("the block's local index copy went: %v", err)
	}
	got, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: load})
	if err != nil || len(got) != len(want) {
		t.Fatalf("%d series after the fault, %d before: %v", len(got), len(want), err)
	}
	for k, v := range want {
		if len(got[k]) != len(v) {
			t.Fatalf("%s: %d samples after the fault, %d before", k, len(got[k]), len(v))
		}
	}
}

// TestOrphanedLocalCopiesRemoved: local index copies of blocks the store
// does not serve (deleted while it was down) go at the next sync; those of
// served blocks and other files stay.
func TestOrphanedLocalCopiesRemoved(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocks, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 2*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gone := "01J00000000000000000000000"
	keep := []string{"notes.txt", blocks[0].Meta.ULID.String() + ".index"}
	orphans := []string{gone + ".index", gone + ".index.pages", gone + ".index.pages.tmp", gone + ".index-header"}
	for _, f := range append(slices.Clone(keep), orphans...) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	serve(t, bkt, Config{DataDir: dir, ChunkCacheBytes: 1 << 20})
	for _, f := range orphans {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s of a block not served is still there: %v", f, err)
		}
	}
	for _, f := range keep {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("%s went: %v", f, err)
		}
	}
}

// TestTimeShardClamped: a store serving a time shard advertises and serves
// only the shard's range, also of blocks that reach out of it.
func TestTimeShardClamped(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	if _, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 4*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt); err != nil {
		t.Fatal(err)
	}
	// Inside the first and the second block, on chunk boundaries (120
	// samples at 15s): chunks are sent whole, as by Thanos.
	shardMin, shardMax := end-3*3600_000, end-3600_000-1
	client, info, _ := serve(t, bkt, Config{MinTime: shardMin, MaxTime: shardMax, ChunkCacheBytes: 1 << 20})
	resp, err := info.Info(ctx, &infopb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Store.MinTime < shardMin || resp.Store.MaxTime > shardMax {
		t.Fatalf("Info advertises [%d, %d], beyond the shard [%d, %d]", resp.Store.MinTime, resp.Store.MaxTime, shardMin, shardMax)
	}
	load := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	got, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: load})
	if err != nil || len(got) == 0 {
		t.Fatalf("%d series: %v", len(got), err)
	}
	for k, ss := range got {
		if len(ss) == 0 || ss[0].t < shardMin || ss[len(ss)-1].t > shardMax {
			t.Fatalf("%s: samples [%d, %d] outside the shard [%d, %d]", k, ss[0].t, ss[len(ss)-1].t, shardMin, shardMax)
		}
	}
}

// TestCorruptIndexLeftOutWithWarning: a block whose index cannot be read
// is left out of a request under partial response, with a warning naming
// it, and the other blocks answer; without partial response the request
// fails naming it. Its header is not fetched again by every request.
func TestCorruptIndexLeftOutWithWarning(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocks, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 4*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt)
	if err != nil || len(blocks) != 2 {
		t.Fatalf("%d blocks, %v", len(blocks), err)
	}
	bad := blocks[0].Meta.ULID.String()
	if err := bkt.Upload(ctx, bad+"/index", strings.NewReader(strings.Repeat("garbage!", 1000))); err != nil {
		t.Fatal(err)
	}
	client, _, s := serve(t, bkt, Config{ChunkCacheBytes: 1 << 20})
	load := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	read := func(disabled bool) (series int, warnings []string, err error) {
		stream, err := client.Series(ctx, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: load,
			PartialResponseDisabled: disabled})
		if err != nil {
			return 0, nil, err
		}
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				return series, warnings, nil
			}
			if err != nil {
				return series, warnings, err
			}
			if r.GetSeries() != nil {
				series++
			}
			if w := r.GetWarning(); w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	n, warns, err := read(false)
	if err != nil || n != 1 || len(warns) != 1 || !strings.Contains(warns[0], bad) {
		t.Fatalf("partial response: %d series, warnings %q, %v; want the good block's series and a warning naming %s", n, warns, err, bad)
	}
	if v := testutil.ToFloat64(s.badBlocks); v < 1 {
		t.Fatalf("strata_store_bad_blocks_total = %v", v)
	}
	if _, _, err := read(true); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("without partial response: want an error naming %s, got %v", bad, err)
	}
	s.mu.RLock()
	b := s.blocks[blocks[0].Meta.ULID]
	s.mu.RUnlock()
	b.mu.Lock()
	at := b.openErrAt
	b.mu.Unlock()
	if _, _, err := read(false); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	again := b.openErrAt
	b.mu.Unlock()
	if at.IsZero() || !again.Equal(at) {
		t.Fatalf("the corrupt index was opened again within %s (%v, then %v)", indexRetry, at, again)
	}
}

// TestRelativeTimeShard: a shard given as durations before now
// (--min-time=-3h) clamps to now minus them when asked.
func TestRelativeTimeShard(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Now().Truncate(2 * time.Hour).UnixMilli()
	if _, err := blockgen.WriteBucket(ctx, logger, blockgen.Config{Seed: 1, Targets: 1, MinTime: end - 6*3600_000, MaxTime: end,
		ExternalLabels: map[string]string{"cluster": "c"}}, bkt); err != nil {
		t.Fatal(err)
	}
	_, info, _ := serve(t, bkt, Config{MinTimeAgo: 5 * time.Hour, MaxTimeAgo: 3 * time.Hour, ChunkCacheBytes: 1 << 20})
	before := time.Now()
	resp, err := info.Info(ctx, &infopb.InfoRequest{})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := before.Add(-5*time.Hour).UnixMilli(), after.Add(-5*time.Hour).UnixMilli(); resp.Store.MinTime < lo || resp.Store.MinTime > hi {
		t.Fatalf("Info MinTime %d, want now-5h (%d..%d)", resp.Store.MinTime, lo, hi)
	}
	if lo, hi := before.Add(-3*time.Hour).UnixMilli(), after.Add(-3*time.Hour).UnixMilli(); resp.Store.MaxTime < lo || resp.Store.MaxTime > hi {
		t.Fatalf("Info MaxTime %d, want now-3h (%d..%d)", resp.Store.MaxTime, lo, hi)
	}
}
