package block

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

func TestListerClassifiesBlocks(t *testing.T) {
	ctx := context.Background()
	bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
	upload := func() ulid.ULID {
		dir := newBlock(t, map[string]string{"a": "b"})
		if err := Upload(ctx, logger, bkt, dir); err != nil {
			t.Fatal(err)
		}
		return blockID(dir)
	}
	put := func(name, content string) {
		if err := bkt.Upload(ctx, name, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	complete, marked, partial, corrupt, wrongID, badMark, unreadable := upload(), upload(), upload(), upload(), upload(), upload(), upload()
	if err := bkt.Delete(ctx, partial.String()+"/meta.json"); err != nil {
		t.Fatal(err)
	}
	put(corrupt.String()+"/meta.json", "{not json")
	r, err := bkt.Get(ctx, complete.String()+"/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMeta(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	var other strings.Builder
	if err := m.Encode(&other); err != nil {
		t.Fatal(err)
	}
	put(wrongID.String()+"/meta.json", other.String())
	if _, err := ReadMetaFromBucket(ctx, bkt, wrongID); err == nil || !strings.Contains(err.Error(), "names block "+complete.String()) {
		t.Fatalf("ReadMetaFromBucket accepted a meta.json of another block: %v", err)
	}
	if _, err := MarkForDeletion(ctx, logger, bkt, marked, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForNoCompaction(ctx, logger, bkt, complete, ManualNoCompactReason, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForNoDownsample(ctx, logger, bkt, complete, ManualNoDownsampleReason, ""); err != nil {
		t.Fatal(err)
	}
	put(badMark.String()+"/deletion-mark.json", `{"id":"`) // cut off
	put("debug/notes.txt", "x")                            // not a block
	put("01ARZ3NDEKTSV4RRFFQ69G5FAV.json", "{}")           // not a block directory
	bkt.failIter = unreadable.String()

	l := NewLister(bkt, 3)
	for i := 0; i < 2; i++ { // the second listing uses cached metas
		res, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Metas) != 3 || res.Metas[complete] == nil || res.Metas[marked] == nil || res.Metas[badMark] == nil {
			t.Fatalf("complete blocks: %v", res.Metas)
		}
		if res.Metas[complete].Thanos.Labels["a"] != "b" {
			t.Fatalf("meta not parsed: %+v", res.Metas[complete])
		}
		if len(res.Partial) != 1 || !res.Partial[partial] {
			t.Fatalf("partial: %v", res.Partial)
		}
		if len(res.Corrupt) != 2 || !strings.Contains(res.Corrupt[corrupt].Error(), corrupt.String()) ||
			!strings.Contains(res.Corrupt[wrongID].Error(), "names block "+complete.String()) {
			t.Fatalf("corrupt: %v", res.Corrupt)
		}
		if len(res.Failed) != 1 || !errors.Is(res.Failed[unreadable], errInjected) {
			t.Fatalf("failed: %v", res.Failed)
		}
		if len(res.DeletionMarks) != 1 || res.DeletionMarks[marked] == nil || res.DeletionMarks[marked].DeletionTime == 0 || res.DeletionMarks[marked].Details != "old" {
			t.Fatalf("deletion marks: %v", res.DeletionMarks)
		}
		if len(res.NoCompactMarks) != 1 || res.NoCompactMarks[complete] == nil {
			t.Fatalf("no-compact marks: %v", res.NoCompactMarks)
		}
		if len(res.NoDownsampleMarks) != 1 || res.NoDownsampleMarks[complete] == nil {
			t.Fatalf("no-downsample marks: %v", res.NoDownsampleMarks)
		}
		// A cut-off mark has no time: treating it as marked would make the
		// block deletable at once, so it is reported and otherwise ignored.
		if len(res.BadMarks) != 1 || !errors.Is(res.BadMarks[badMark], ErrUnmarshalMarker) {
			t.Fatalf("bad marks: %v", res.BadMarks)
		}
	}

	// A bucket failure while reading meta.json is not corruption.
	bkt.failIter = ""
	bkt.failGet = unreadable.String() + "/meta.json"
	res, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Failed[unreadable], errInjected) || res.Corrupt[unreadable] != nil {
		t.Fatalf("GET failure: failed %v, corrupt %v", res.Failed, res.Corrupt)
	}
	bkt.failGet = ""

	if err := Delete(ctx, logger, bkt, complete); err != nil {
		t.Fatal(err)
	}
	res, err = l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Metas[complete]; ok {
		t.Fatal("deleted block still listed")
	}
	if res.Metas[unreadable] == nil || len(res.Failed) != 0 {
		t.Fatalf("block readable again not listed: %+v", res)
	}
}

func TestListerErrors(t *testing.T) {
	ctx := context.Background()
	bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
	res, err := NewLister(bkt, 1).List(ctx)
	if err != nil || len(res.Metas)+len(res.Partial)+len(res.Corrupt)+len(res.Failed) != 0 {
		t.Fatalf("empty bucket: %v %+v", err, res)
	}
	bkt.failTopIter = true
	if _, err := NewLister(bkt, 1).List(ctx); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "list bucket") {
		t.Fatalf("want the bucket listing error, got %v", err)
	}
}

// TestListerMetaCache: a lister with a meta cache dir needs no meta.json
// GET after a restart, ignores a corrupt cache entry and forgets blocks that
// left the bucket.
func TestListerMetaCache(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	var ids []ulid.ULID
	for range 2 {
		dir := newBlock(t, map[string]string{"a": "b"})
		if err := Upload(ctx, logger, bkt, dir); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, blockID(dir))
	}
	cache := t.TempDir()
	if l, err := NewLister(bkt, 2).WithMetaCache(cache).List(ctx); err != nil || len(l.Metas) != 2 {
		t.Fatalf("first listing: %v %v", l, err)
	}
	// Restarted, with every meta.json GET failing: the cache answers.
	noGet := &recordingBucket{InstrumentedBucket: bkt, failGet: MetaFilename}
	l, err := NewLister(noGet, 2).WithMetaCache(cache).List(ctx)
	if err != nil || len(l.Metas) != 2 || len(l.Failed) != 0 {
		t.Fatalf("restarted listing: metas %d failed %v err %v", len(l.Metas), l.Failed, err)
	}
	// A corrupt cache entry is not trusted: the GET is tried (and fails here).
	if err := os.WriteFile(filepath.Join(cache, ids[0].String()+".json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err = NewLister(noGet, 2).WithMetaCache(cache).List(ctx); err != nil || l.Failed[ids[0]] == nil || l.Metas[ids[1]] == nil {
		t.Fatalf("corrupt cache entry: metas %v failed %v err %v", l.Metas, l.Failed, err)
	}
	// A deleted block's entry goes.
	if err := Delete(ctx, logger, bkt, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLister(bkt, 2).WithMetaCache(cache).List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cache, ids[1].String()+".json")); !os.IsNotExist(err) {
		t.Fatalf("cache entry of a deleted block still there: %v", err)
	}
}
