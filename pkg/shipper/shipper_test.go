package shipper

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

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

// faultBucket counts meta.json uploads per block and injects faults.
type faultBucket struct {
	objstore.Bucket
	mu          sync.Mutex
	metaUploads map[string]int
	existsErr   func(name string) error
	onUpload    func(name string)
	hideOnce    map[string]bool // the first Exists of these names says no
}

func (f *faultBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if f.onUpload != nil {
		f.onUpload(name)
	}
	if id, ok := strings.CutSuffix(name, "/"+block.MetaFilename); ok {
		f.mu.Lock()
		f.metaUploads[id]++
		f.mu.Unlock()
	}
	return f.Bucket.Upload(ctx, name, r, opts...)
}

func (f *faultBucket) Exists(ctx context.Context, name string) (bool, error) {
	if f.existsErr != nil {
		if err := f.existsErr(name); err != nil {
			return false, err
		}
	}
	f.mu.Lock()
	hide := f.hideOnce[name]
	delete(f.hideOnce, name)
	f.mu.Unlock()
	if hide {
		return false, nil
	}
	return f.Bucket.Exists(ctx, name)
}

func (f *faultBucket) uploadedOnce(t *testing.T, blocks []blockgen.BlockInfo) {
	t.Helper()
	for _, b := range blocks {
		if n := f.metaUploads[b.Meta.ULID.String()]; n != 1 {
			t.Fatalf("block %s uploaded %d times, want once", b.Meta.ULID, n)
		}
	}
}

// TestNeverUploadsTwice: a block missing from the state file (lost, written
// before a failure, or the block unreadable for a while) is looked up in the
// bucket, not uploaded again; a state file that cannot be written does not
// stop the other blocks.
func TestNeverUploadsTwice(t *testing.T) {
	ctx := context.Background()
	t.Run("flaky bucket after the state file is lost", func(t *testing.T) {
		dir, blocks, raw := setup(t)
		bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
		if n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx); err != nil || n != len(blocks) {
			t.Fatal(n, err)
		}
		if err := os.Remove(filepath.Join(dir, StateFilename)); err != nil {
			t.Fatal(err)
		}
		victim := blocks[0].Meta.ULID.String()
		bkt.existsErr = func(name string) error {
			if strings.HasPrefix(name, victim) {
				return errors.New("503 slow down")
			}
			return nil
		}
		s := New(dir, bkt, ext, false, logger, prometheus.NewRegistry())
		if _, err := s.Sync(ctx); err == nil || !strings.Contains(err.Error(), victim) {
			t.Fatalf("a failed bucket lookup must be an error naming the block, got %v", err)
		}
		bkt.existsErr = nil
		if n, err := s.Sync(ctx); err != nil || n != 0 {
			t.Fatalf("next sync uploaded %d: %v", n, err)
		}
		bkt.uploadedOnce(t, blocks)
	})
	t.Run("meta.json unreadable for a while", func(t *testing.T) {
		dir, blocks, raw := setup(t)
		bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
		reg := prometheus.NewRegistry()
		s := New(dir, bkt, ext, false, logger, reg)
		if _, err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		metaPath := filepath.Join(blocks[0].Dir, block.MetaFilename)
		good, err := os.ReadFile(metaPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(metaPath, []byte("{garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Another block ships meanwhile: the state is rewritten.
		next := addBlock(t, dir, blocks[len(blocks)-1].Meta.MaxTime)
		if n, err := s.Sync(ctx); err != nil || n != 1 {
			t.Fatalf("shipped %d, want the new block: %v", n, err)
		}
		if v := testutil.ToFloat64(s.unreadable); v != 1 {
			t.Fatalf("strata_shipper_unreadable_blocks = %v, want 1", v)
		}
		if err := os.WriteFile(metaPath, good, 0o644); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Sync(ctx); err != nil || n != 0 {
			t.Fatalf("after the meta.json is readable again %d blocks were uploaded: %v", n, err)
		}
		bkt.uploadedOnce(t, blocks)
		if bkt.metaUploads[next.ULID.String()] != 1 {
			t.Fatal("the new block was not shipped once")
		}
	})
	t.Run("state file cannot be written", func(t *testing.T) {
		dir, blocks, raw := setup(t)
		bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
		// The temporary file cannot be created (as on a read-only
		// mount or a full disk).
		if err := os.Mkdir(filepath.Join(dir, StateFilename+".tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		s := New(dir, bkt, ext, false, logger, prometheus.NewRegistry())
		for i := range 3 {
			n, err := s.Sync(ctx)
			if err == nil || !strings.Contains(err.Error(), StateFilename) {
				t.Fatalf("sync %d: want an error about %s, got %v", i, StateFilename, err)
			}
			if want := map[bool]int{true: len(blocks), false: 0}[i == 0]; n != want {
				t.Fatalf("sync %d uploaded %d blocks, want %d", i, n, want)
			}
		}
		bkt.uploadedOnce(t, blocks)
		if v := testutil.ToFloat64(s.stateFailures); v != 3 {
			t.Fatalf("strata_shipper_state_write_failures_total = %v, want 3", v)
		}
	})
	t.Run("Prometheus deletes a block complete in the bucket", func(t *testing.T) {
		dir, blocks, raw := setup(t)
		bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
		if _, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx); err != nil {
			t.Fatal(err)
		}
		// The bucket has the oldest block, the state does not (a
		// stop between its upload and the state write), and a lookup
		// misses it (a lagging bucket); retention deletes it while the
		// shipper uploads it again.
		a := blocks[0]
		var rest []string
		for _, b := range blocks[1:] {
			rest = append(rest, `"`+b.Meta.ULID.String()+`"`)
		}
		if err := os.WriteFile(filepath.Join(dir, StateFilename), []byte(`{"version":1,"uploaded":[`+strings.Join(rest, ",")+`]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		bkt.hideOnce = map[string]bool{a.Meta.ULID.String() + "/" + block.MetaFilename: true}
		bkt.onUpload = func(name string) {
			if strings.HasPrefix(name, a.Meta.ULID.String()+"/chunks/") {
				if err := os.RemoveAll(a.Dir); err != nil {
					t.Error(err)
				}
			}
		}
		if n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx); err != nil || n != 0 {
			t.Fatalf("shipped %d: %v", n, err)
		}
		if ok, _ := raw.Exists(ctx, a.Meta.ULID.String()+"/"+block.MetaFilename); !ok {
			t.Fatalf("block %s, complete in the bucket, was removed from it", a.Meta.ULID)
		}
	})
	t.Run("Prometheus deletes a block during its upload", func(t *testing.T) {
		dir, blocks, raw := setup(t)
		bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
		a := blocks[0]
		bkt.onUpload = func(name string) {
			if strings.HasPrefix(name, a.Meta.ULID.String()+"/chunks/") {
				if err := os.RemoveAll(a.Dir); err != nil {
					t.Error(err)
				}
			}
		}
		n, err := New(dir, bkt, ext, false, logger, prometheus.NewRegistry()).Sync(ctx)
		if err != nil || n != len(blocks)-1 {
			t.Fatalf("shipped %d, want all but the deleted one: %v", n, err)
		}
		var left []string
		if err := raw.Iter(ctx, a.Meta.ULID.String()+"/", func(name string) error { left = append(left, name); return nil }, objstore.WithRecursiveIter()); err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Fatalf("the partial upload of the deleted block is left in the bucket: %v", left)
		}
	})
}

// TestCompactedBlocks: without --shipper.upload-compacted a block
// Prometheus compacted itself is reported, not shipped; with it, a block
// compacted from blocks already shipped is not uploaded over them, and one
// that would duplicate part of the bucket's data is refused.
func TestCompactedBlocks(t *testing.T) {
	ctx := context.Background()
	dir, blocks, raw := setup(t)
	bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
	if _, err := New(dir, bkt, ext, true, logger, prometheus.NewRegistry()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	compact := func(from []blockgen.BlockInfo) ulid.ULID {
		t.Helper()
		// Prometheus' compaction as far as the shipper sees it: a new
		// level-2 block over the sources' range.
		id := ulid.MustNew(ulid.Now(), crand.Reader)
		dst := filepath.Join(dir, id.String())
		if err := os.CopyFS(dst, os.DirFS(from[0].Dir)); err != nil {
			t.Fatal(err)
		}
		m, err := block.ReadMeta(dst)
		if err != nil {
			t.Fatal(err)
		}
		m.ULID, m.MinTime, m.MaxTime = id, from[0].Meta.MinTime, from[len(from)-1].Meta.MaxTime
		m.Compaction.Level, m.Compaction.Sources = 2, nil
		for _, b := range from {
			m.Compaction.Sources = append(m.Compaction.Sources, b.Meta.ULID)
		}
		if err := m.WriteMeta(dst); err != nil {
			t.Fatal(err)
		}
		return id
	}
	covered := compact(blocks)
	reg := prometheus.NewRegistry()
	off := New(dir, bkt, ext, false, logger, reg)
	if n, err := off.Sync(ctx); err != nil || n != 0 {
		t.Fatalf("without upload-compacted: shipped %d, %v", n, err)
	}
	if v := testutil.ToFloat64(off.skippedCompacted); v != 1 {
		t.Fatalf("strata_shipper_skipped_compacted_blocks = %v, want 1", v)
	}
	if n, err := New(dir, bkt, ext, true, logger, prometheus.NewRegistry()).Sync(ctx); err != nil || n != 0 || bkt.metaUploads[covered.String()] != 0 {
		t.Fatalf("a block compacted from shipped blocks was uploaded over them (%d uploads, %v)", bkt.metaUploads[covered.String()], err)
	}
	if err := os.RemoveAll(filepath.Join(dir, covered.String())); err != nil {
		t.Fatal(err)
	}
	// Sources partly unknown to the bucket: a block of its own, never
	// shipped, compacted with one that was.
	extra := addBlock(t, t.TempDir(), blocks[len(blocks)-1].Meta.MaxTime)
	mixed := compact(append(blocks[len(blocks)-1:], blockgen.BlockInfo{Meta: extra}))
	_, err := New(dir, bkt, ext, true, logger, prometheus.NewRegistry()).Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), mixed.String()) || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("want an error naming the overlapping compacted block %s, got %v", mixed, err)
	}
	if bkt.metaUploads[mixed.String()] != 0 {
		t.Fatal("the overlapping compacted block was uploaded")
	}
}

// addBlock writes one more 2h block starting at start into dir.
func addBlock(t *testing.T, dir string, start int64) *block.Meta {
	t.Helper()
	stage := t.TempDir()
	bs, err := blockgen.WriteDir(context.Background(), blockgen.Config{Seed: 7, Targets: 1, MinTime: start, MaxTime: start + 2*3600_000}, stage)
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d blocks, %v", len(bs), err)
	}
	if err := os.Rename(bs[0].Dir, filepath.Join(dir, bs[0].Meta.ULID.String())); err != nil {
		t.Fatal(err)
	}
	return bs[0].Meta
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		base     time.Duration
		failures int
		want     time.Duration
	}{
		{30 * time.Second, 1, 30 * time.Second},
		{30 * time.Second, 2, time.Minute},
		{30 * time.Second, 4, 4 * time.Minute},
		{30 * time.Second, 5, maxRetryDelay},
		{30 * time.Second, 1000, maxRetryDelay},
		{time.Second, 3, 4 * time.Second},
		// A base longer than the cap is never shortened.
		{10 * time.Minute, 3, 10 * time.Minute},
	} {
		if got := retryDelay(tc.base, tc.failures); got != tc.want {
			t.Errorf("retryDelay(%s, %d) = %s, want %s", tc.base, tc.failures, got, tc.want)
		}
	}
}

// TestFailingBlockBacksOffAlone: a block that keeps failing is tried again
// only after its backoff, and does not hold up the blocks after it.
func TestFailingBlockBacksOffAlone(t *testing.T) {
	ctx := context.Background()
	dir, blocks, raw := setup(t)
	bkt := &faultBucket{Bucket: raw, metaUploads: map[string]int{}}
	broken := blocks[0].Meta.ULID.String()
	attempts := 0
	bkt.existsErr = func(name string) error {
		if strings.HasPrefix(name, broken) {
			attempts++
			return errors.New("403 Forbidden")
		}
		return nil
	}
	s := New(dir, bkt, ext, false, logger, prometheus.NewRegistry())
	s.RetryBase = time.Hour
	if n, err := s.Sync(ctx); err == nil || n != len(blocks)-1 {
		t.Fatalf("first sync: %d shipped, %v; want all but the broken one and its error", n, err)
	}
	next := addBlock(t, dir, blocks[len(blocks)-1].Meta.MaxTime)
	for i := range 3 {
		n, err := s.Sync(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v (the broken block is backing off)", i, err)
		}
		if i == 0 && n != 1 {
			t.Fatalf("a new block waited for the broken one: %d shipped", n)
		}
	}
	if attempts != 1 || bkt.metaUploads[next.ULID.String()] != 1 {
		t.Fatalf("the broken block was tried %d times within its backoff; the new one uploaded %d times", attempts, bkt.metaUploads[next.ULID.String()])
	}
	s.RetryBase = time.Nanosecond
	s.retries[blocks[0].Meta.ULID].next = time.Now()
	bkt.existsErr = nil
	if n, err := s.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("after its backoff the broken block ships: %d, %v", n, err)
	}
}
