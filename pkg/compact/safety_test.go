package compact

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
)

// listFailBucket fails the listing of the blocks in fail, as an S3 503
// would for a while.
type listFailBucket struct {
	objstore.InstrumentedBucket
	mu   sync.Mutex
	fail map[string]bool
}

func (b *listFailBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	b.mu.Lock()
	bad := b.fail[strings.TrimSuffix(dir, "/")]
	b.mu.Unlock()
	if bad {
		return errors.New("503 SlowDown")
	}
	return b.InstrumentedBucket.Iter(ctx, dir, f, opts...)
}

func (b *listFailBucket) failing(ids ...ulid.ULID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = map[string]bool{}
	for _, id := range ids {
		b.fail[id.String()] = true
	}
}

func countRes(bs []*block.Meta, res int64) int {
	n := 0
	for _, b := range bs {
		if b.Thanos.Downsample.Resolution == res {
			n++
		}
	}
	return n
}

// TestUnreadableBlockStopsCompaction: a block the bucket fails to list is
// not gone. Compacting around it would overlap it once it is readable again
// (a halt), downsampling again what a 5m block holds would duplicate it.
func TestUnreadableBlockStopsCompaction(t *testing.T) {
	ctx := context.Background()
	t.Run("raw", func(t *testing.T) {
		fb := &listFailBucket{InstrumentedBucket: newBucket(t)}
		base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		ids := writeBlocks(t, fb, map[string]string{"cluster": "c"}, base, [2]int64{0, 2}, [2]int64{2, 4}, [2]int64{4, 6}, [2]int64{6, 8}, [2]int64{8, 10})
		c, _ := newCompactor(t, fb, Config{})
		fb.failing(ids[1])
		err := c.RunOnce(ctx)
		if err == nil || !strings.Contains(err.Error(), "could not be read") || !strings.Contains(err.Error(), ids[1].String()) {
			t.Fatalf("want an error naming the unreadable block %s, got %v", ids[1], err)
		}
		if n := len(live(t, fb.InstrumentedBucket)); n != len(ids) {
			t.Fatalf("%d live blocks after a run with an unreadable block, want the %d untouched", n, len(ids))
		}
		fb.failing()
		if err := c.RunOnce(ctx); err != nil {
			t.Fatalf("the bucket is healthy again: %v", err)
		}
		bs := live(t, fb.InstrumentedBucket)
		var sources []int
		for _, b := range bs {
			sources = append(sources, len(b.Compaction.Sources))
		}
		if len(bs) != 2 || (sources[0] != 4 && sources[1] != 4) {
			t.Fatalf("want the first four blocks compacted into one once they are all readable, got blocks with %v sources", sources)
		}
	})
	t.Run("downsampled", func(t *testing.T) {
		fb := &listFailBucket{InstrumentedBucket: newBucket(t)}
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		writeBlocks(t, fb, map[string]string{"a": "1"}, base, [2]int64{0, 48}, [2]int64{48, 96})
		c, _ := newCompactor(t, fb, Config{Downsampling: true})
		if err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		var fives []ulid.ULID
		for _, b := range live(t, fb.InstrumentedBucket) {
			if b.Thanos.Downsample.Resolution == block.Resolution5m {
				fives = append(fives, b.ULID)
			}
		}
		if len(fives) != 2 {
			t.Fatalf("%d 5m blocks, want 2", len(fives))
		}
		fb.failing(fives[0])
		if err := c.RunOnce(ctx); err == nil {
			t.Fatal("a run with an unreadable block must report it")
		}
		fb.failing()
		for i := range 2 {
			if err := c.RunOnce(ctx); err != nil {
				t.Fatalf("healthy run %d: %v", i, err)
			}
		}
		if n := countRes(live(t, fb.InstrumentedBucket), block.Resolution5m); n != 2 {
			t.Fatalf("%d 5m blocks after the unreadable one came back, want 2", n)
		}
	})
}

// TestNoCompactBlockIsDownsampled: a no-compact mark keeps a block out of
// compaction only; it is still downsampled, as by Thanos, or raw retention
// would delete the only copy of its range.
func TestNoCompactBlockIsDownsampled(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	id := writeBlocks(t, bkt, map[string]string{"a": "1"}, base, [2]int64{0, 48})[0]
	if _, err := block.MarkForNoCompaction(ctx, logger, bkt, id, block.IndexSizeExceedingNoCompactReason, "test"); err != nil {
		t.Fatal(err)
	}
	c, _ := newCompactor(t, bkt, Config{Downsampling: true})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRes(live(t, bkt), block.Resolution5m); n != 1 {
		t.Fatalf("%d 5m blocks from a no-compact-marked 48h block, want 1", n)
	}
}

// TestRedundantNeedsSourcesAndStream: a block that names no sources is never
// taken for data another block holds, least of all one of another stream.
func TestRedundantNeedsSourcesAndStream(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var smp []chunksSample
	for ts := base; ts < base+2*3600_000; ts += 60_000 {
		smp = append(smp, chunksSample{ts, 1})
	}
	dir, err := tsdb.CreateBlock([]storage.Series{listSeries(labels.FromStrings("__name__", "m"), smp)}, t.TempDir(), 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	m, err := block.ReadMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Compaction.Sources = nil
	m.Thanos = block.Thanos{Version: 1, Labels: map[string]string{"cluster": "b"}, Source: block.SourceBucketUpload}
	if err := block.UploadWithMeta(ctx, logger, bkt, dir, m); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, bkt, map[string]string{"cluster": "a"}, base+100*3600_000, [2]int64{0, 2})
	c, _ := newCompactor(t, bkt, Config{})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if mk, err := block.ReadMarker[block.DeletionMark](ctx, bkt, m.ULID); err == nil {
		t.Fatalf("block %s without sources marked for deletion: %q", m.ULID, mk.Details)
	}
}

// TestVerticalCompactionWithReplicaLabels: --compact.enable-vertical-compaction
// also merges overlapping blocks of one replica when replica labels are
// given, as Thanos' docs have both flags used together.
func TestVerticalCompactionWithReplicaLabels(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	writeBlocks(t, bkt, map[string]string{"cluster": "c", "replica": "a"}, base, [2]int64{0, 2}, [2]int64{1, 3})
	c, _ := newCompactor(t, bkt, Config{VerticalCompaction: true, ReplicaLabels: []string{"replica"}})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatalf("overlapping blocks of one replica with vertical compaction on: %v", err)
	}
	if bs := live(t, bkt); len(bs) != 1 {
		t.Fatalf("%d blocks, want the two overlapping ones merged", len(bs))
	}
}

// chunkFailBucket fails reading the chunks of some blocks.
type chunkFailBucket struct {
	objstore.InstrumentedBucket
	bad map[string]bool
}

func (b *chunkFailBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if b.bad[strings.SplitN(name, "/", 2)[0]] && strings.Contains(name, "/chunks/") {
		return nil, errors.New("read failed")
	}
	return b.InstrumentedBucket.Get(ctx, name)
}

// TestEveryGroupErrorReported: groups that halt on overlaps and groups whose
// compaction fails, at once and concurrently, are all in the run's error.
func TestEveryGroupErrorReported(t *testing.T) {
	ctx := context.Background()
	cb := &chunkFailBucket{InstrumentedBucket: newBucket(t), bad: map[string]bool{}}
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	// Each failing group is named by its unreadable block, each halted
	// one by its labels.
	var want []string
	for i := range 4 {
		ids := writeBlocks(t, cb, map[string]string{"cluster": fmt.Sprint("bad", i)}, base, [2]int64{0, 2}, [2]int64{2, 4}, [2]int64{4, 6}, [2]int64{6, 8}, [2]int64{8, 10})
		cb.bad[ids[0].String()] = true
		writeBlocks(t, cb, map[string]string{"cluster": fmt.Sprint("ov", i)}, base, [2]int64{0, 2}, [2]int64{1, 3})
		want = append(want, ids[0].String(), fmt.Sprint("cluster:ov", i))
	}
	c, _ := newCompactor(t, cb, Config{Concurrency: 2})
	err := c.RunOnce(ctx)
	if err == nil {
		t.Fatal("want the run to fail")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s missing from the run's error:\n%v", w, err)
		}
	}
}

// TestLeftoversOfACrashAreRemoved: work directories a crashed run left in
// --data-dir go at the next run; the meta cache stays.
func TestLeftoversOfACrashAreRemoved(t *testing.T) {
	bkt := newBucket(t)
	c, _ := newCompactor(t, bkt, Config{})
	stale := []string{filepath.Join(c.cfg.DataDir, "compact", "0-deadbeef", "01ABC", "chunks"), filepath.Join(c.cfg.DataDir, "downsample", "01ABC")}
	for _, d := range stale {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range stale {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left after a run: %v", d, err)
		}
	}
}

// deleteFailBucket fails deleting the objects of some blocks.
type deleteFailBucket struct {
	objstore.InstrumentedBucket
	bad map[string]bool
}

func (b *deleteFailBucket) Delete(ctx context.Context, name string) error {
	if b.bad[strings.SplitN(name, "/", 2)[0]] {
		return errors.New("access denied")
	}
	return b.InstrumentedBucket.Delete(ctx, name)
}

// TestUndeletableBlockHoldsUpNothing: a marked block that cannot be deleted
// is reported and tried again, while the other due deletions and the
// compaction go on.
func TestUndeletableBlockHoldsUpNothing(t *testing.T) {
	ctx := context.Background()
	db := &deleteFailBucket{InstrumentedBucket: newBucket(t), bad: map[string]bool{}}
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	marked := writeBlocks(t, db, map[string]string{"cluster": "old"}, base-100*3600_000, [2]int64{0, 2}, [2]int64{2, 4})
	for _, id := range marked {
		if _, err := block.MarkForDeletion(ctx, logger, db, id, "test"); err != nil {
			t.Fatal(err)
		}
	}
	db.bad[marked[0].String()] = true
	writeBlocks(t, db, map[string]string{"cluster": "c"}, base, [2]int64{0, 2}, [2]int64{2, 4}, [2]int64{4, 6}, [2]int64{6, 8}, [2]int64{8, 10})
	c, _ := newCompactor(t, db, Config{DeleteDelay: time.Nanosecond})
	err := c.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), marked[0].String()) {
		t.Fatalf("want an error naming the undeletable block %s, got %v", marked[0], err)
	}
	if ok, _ := db.Exists(ctx, marked[1].String()+"/"+block.MetaFilename); ok {
		t.Fatalf("the other due block %s was not deleted", marked[1])
	}
	var compacted bool
	for _, m := range live(t, db.InstrumentedBucket) {
		compacted = compacted || len(m.Compaction.Sources) == 4
	}
	if !compacted {
		t.Fatal("compaction did not run past a failed deletion")
	}
}

// TestPartialUploadAge: a partial upload goes once its ULID and its newest
// object are both older than the partial upload age; one whose ULID is old
// but that is being written now (a sidecar shipping an old block) stays.
func TestPartialUploadAge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	bkt := objstore.WrapWithMetrics(fs, nil, "test")
	old := ulid.MustNew(ulid.Timestamp(time.Now().Add(-72*time.Hour)), crand.Reader)
	for _, name := range []string{"chunks/000001", "index"} {
		if err := bkt.Upload(ctx, old.String()+"/"+name, strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newCompactor(t, bkt, Config{})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bkt.Exists(ctx, old.String()+"/index"); !ok {
		t.Fatal("an upload written just now was removed for its old ULID")
	}
	then := time.Now().Add(-72 * time.Hour)
	for _, name := range []string{"chunks/000001", "index"} {
		if err := os.Chtimes(filepath.Join(dir, old.String(), filepath.FromSlash(name)), then, then); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bkt.Exists(ctx, old.String()+"/index"); ok {
		t.Fatal("an abandoned partial upload was not removed")
	}
}

// TestOwnBlocksSkipConsistencyDelay: the consistency delay holds back
// blocks others upload, not the compactor's own: a run compacts its new
// blocks on to the next level at once, as Thanos does.
func TestOwnBlocksSkipConsistencyDelay(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	ids := writeBlocks(t, bkt, map[string]string{"cluster": "c"}, base, [2]int64{0, 2}, [2]int64{2, 4}, [2]int64{4, 6}, [2]int64{6, 8}, [2]int64{8, 10})
	// Uploaded two hours ago: past the delay. (Same data, older ULIDs.)
	for _, id := range ids {
		m, err := block.ReadMetaFromBucket(ctx, bkt, id)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "b")
		if _, err := block.Download(ctx, logger, bkt, id, dir); err != nil {
			t.Fatal(err)
		}
		if err := block.Delete(ctx, logger, bkt, id); err != nil {
			t.Fatal(err)
		}
		m.ULID = ulid.MustNew(ulid.Timestamp(time.Now().Add(-2*time.Hour)), crand.Reader)
		m.Compaction.Sources = []ulid.ULID{m.ULID}
		if err := os.Rename(filepath.Join(dir, id.String()), filepath.Join(dir, m.ULID.String())); err != nil {
			t.Fatal(err)
		}
		if err := block.UploadWithMeta(ctx, logger, bkt, filepath.Join(dir, m.ULID.String()), m); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newCompactor(t, bkt, Config{ConsistencyDelay: time.Hour, Ranges: []int64{2 * 3600_000, 4 * 3600_000, 8 * 3600_000}})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var sources []int
	for _, m := range live(t, bkt) {
		sources = append(sources, len(m.Compaction.Sources))
	}
	slices.Sort(sources)
	if !slices.Equal(sources, []int{1, 4}) {
		t.Fatalf("blocks with %v sources after one run, want the 4h blocks compacted on to 8h (4 sources) and the newest left", sources)
	}
}
