package block

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

func TestUploadDownloadByteIdentical(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"cluster": "eu", "replica": "a"})
	id := blockID(dir)
	bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
	before := time.Now().UTC()
	if err := Upload(ctx, logger, bkt, dir, WithHashFunc(SHA256), WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	// meta.json last, index before it, chunks before the index.
	want := []string{id.String() + "/chunks/000001", id.String() + "/index", id.String() + "/meta.json"}
	if !slices.Equal(bkt.uploads, want) {
		t.Fatalf("upload order %v, want %v", bkt.uploads, want)
	}

	meta, err := ReadMetaFromBucket(ctx, bkt, id)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Thanos.Labels["cluster"] != "eu" || meta.Thanos.Version != 1 || meta.Thanos.UploadTime.Before(before) {
		t.Fatalf("uploaded meta lacks the thanos section: %+v", meta.Thanos)
	}
	var rels []string
	for _, f := range meta.Thanos.Files {
		rels = append(rels, f.RelPath)
		switch {
		case f.RelPath == MetaFilename && (f.SizeBytes != 0 || f.Hash != nil):
			t.Errorf("meta.json must be listed without size or hash, like Thanos: %+v", f)
		case f.RelPath != MetaFilename:
			info, err := os.Stat(filepath.Join(dir, f.RelPath))
			if err != nil || info.Size() != f.SizeBytes || f.Hash == nil || f.Hash.Func != SHA256 || len(f.Hash.Value) != 64 {
				t.Errorf("file %+v does not describe %s (%v)", f, f.RelPath, err)
			}
		}
	}
	if got := strings.Join(rels, ","); got != "chunks/000001,index,meta.json" {
		t.Fatalf("files = %s", got)
	}
	// The local meta.json is left as it was.
	if local, err := ReadMeta(dir); err != nil || local.Thanos.Files != nil {
		t.Fatalf("upload modified the local meta.json: %v %+v", err, local)
	}

	dst := t.TempDir()
	got, err := Download(ctx, logger, bkt, id, dst, WithConcurrency(3))
	if err != nil {
		t.Fatal(err)
	}
	if got.ULID != id || len(got.Thanos.Files) != 3 {
		t.Fatalf("downloaded meta %+v", got)
	}
	for _, rel := range []string{"chunks/000001", "index"} {
		a, _ := os.ReadFile(filepath.Join(dir, rel))
		b, err := os.ReadFile(filepath.Join(dst, id.String(), rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s not byte-identical after download (err %v)", rel, err)
		}
	}
	r, err := bkt.Get(ctx, id.String()+"/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var inBucket bytes.Buffer
	_, _ = inBucket.ReadFrom(r)
	r.Close()
	if local, _ := os.ReadFile(filepath.Join(dst, id.String(), MetaFilename)); !bytes.Equal(local, inBucket.Bytes()) {
		t.Fatal("downloaded meta.json differs from the bucket's")
	}
	// The downloaded block opens with Prometheus' tsdb.
	b, err := tsdb.OpenBlock(nil, filepath.Join(dst, id.String()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Meta().Stats.NumSeries != 20 || b.Meta().Stats.NumSamples != 20*500 {
		t.Fatalf("stats = %+v", b.Meta().Stats)
	}
}

func TestUploadRefusals(t *testing.T) {
	ctx := context.Background()
	noLabels := newBlock(t, nil)
	err := Upload(ctx, logger, newBucket(t), noLabels)
	if err == nil || !strings.Contains(err.Error(), "empty external labels") || !strings.Contains(err.Error(), blockID(noLabels).String()) {
		t.Fatalf("want empty labels error naming the block, got %v", err)
	}
	renamed := filepath.Join(t.TempDir(), "01ARZ3NDEKTSV4RRFFQ69G5FAV")
	if err := os.Rename(newBlock(t, map[string]string{"a": "b"}), renamed); err != nil {
		t.Fatal(err)
	}
	if err := Upload(ctx, logger, newBucket(t), renamed); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("want dir/ULID mismatch error, got %v", err)
	}
	if err := Upload(ctx, logger, newBucket(t), t.TempDir()); err == nil || !strings.Contains(err.Error(), "meta.json") {
		t.Fatalf("want missing meta.json error, got %v", err)
	}
	if err := Upload(ctx, logger, newBucket(t), newBlock(t, map[string]string{"a": "b"}), WithHashFunc("MD5")); err == nil || !strings.Contains(err.Error(), "MD5") {
		t.Fatalf("want unsupported hash error, got %v", err)
	}
}

// Whatever object fails, no meta.json reaches the bucket: the block is a
// partial upload, which every reader skips.
func TestFailedUploadLeavesPartialBlock(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"a": "b"})
	id := blockID(dir)
	for _, failing := range []string{"chunks/000001", "index", "meta.json"} {
		bkt := &recordingBucket{InstrumentedBucket: newBucket(t), failUpload: failing}
		err := Upload(ctx, logger, bkt, dir, WithConcurrency(2))
		if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), id.String()+"/"+failing) {
			t.Errorf("%s failing: got %v, want the error naming block and object", failing, err)
		}
		if ok, err := bkt.Exists(ctx, id.String()+"/meta.json"); ok || err != nil {
			t.Errorf("%s failing: meta.json uploaded anyway (%v)", failing, err)
		}
		res, err := NewLister(bkt, 2).List(ctx)
		if err != nil || res.Metas[id] != nil {
			t.Errorf("%s failing: block listed as complete: %v %+v", failing, err, res)
		}
		// Once anything reached the bucket, the block is a partial one.
		if failing != "chunks/000001" && !res.Partial[id] {
			t.Errorf("%s failing: block not listed as partial: %+v", failing, res)
		}
	}
}

func TestDownloadChecksObjects(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"a": "b"})
	id := blockID(dir)
	for _, tc := range []struct {
		name    string
		hash    HashFunc
		tamper  func(t *testing.T, bkt *recordingBucket)
		wantErr string
	}{
		{"truncated chunk", NoHash, func(t *testing.T, bkt *recordingBucket) {
			if err := bkt.Upload(ctx, id.String()+"/chunks/000001", strings.NewReader("short")); err != nil {
				t.Fatal(err)
			}
		}, "chunks/000001: has 5 bytes"},
		{"same size, other bytes", SHA256, func(t *testing.T, bkt *recordingBucket) {
			b, _ := os.ReadFile(filepath.Join(dir, "index"))
			b[len(b)/2] ^= 0xff
			if err := bkt.Upload(ctx, id.String()+"/index", bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}, "index: SHA256"},
		{"missing index", NoHash, func(t *testing.T, bkt *recordingBucket) {
			if err := bkt.Delete(ctx, id.String()+"/index"); err != nil {
				t.Fatal(err)
			}
		}, "/index listed in meta.json is missing"},
		{"no meta.json", NoHash, func(t *testing.T, bkt *recordingBucket) {
			if err := bkt.Delete(ctx, id.String()+"/meta.json"); err != nil {
				t.Fatal(err)
			}
		}, "get " + id.String() + "/meta.json"},
	} {
		bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
		if err := Upload(ctx, logger, bkt, dir, WithHashFunc(tc.hash)); err != nil {
			t.Fatal(err)
		}
		tc.tamper(t, bkt)
		dst := t.TempDir()
		_, err := Download(ctx, logger, bkt, id, dst)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "download block "+id.String()) {
			t.Errorf("%s: got %v, want error containing %q", tc.name, err, tc.wantErr)
		}
		// A failed download never looks like a complete local block.
		if _, err := os.Stat(filepath.Join(dst, id.String(), MetaFilename)); !os.IsNotExist(err) {
			t.Errorf("%s: meta.json written for a failed download", tc.name)
		}
	}
}

func TestDownloadSkipsMarkers(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"a": "b"})
	id := blockID(dir)
	bkt := newBucket(t)
	if err := Upload(ctx, logger, bkt, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForNoCompaction(ctx, logger, bkt, id, ManualNoCompactReason, ""); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Upload(ctx, id.String()+"/extra/notes.txt", strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := Download(ctx, logger, bkt, id, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, id.String(), NoCompactMarkFilename)); !os.IsNotExist(err) {
		t.Error("marker downloaded")
	}
	if b, err := os.ReadFile(filepath.Join(dst, id.String(), "extra", "notes.txt")); err != nil || string(b) != "kept" {
		t.Errorf("other objects of the block must be downloaded: %q %v", b, err)
	}
}

func TestDeleteOrder(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"a": "b"})
	bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
	if err := Upload(ctx, logger, bkt, dir); err != nil {
		t.Fatal(err)
	}
	id := blockID(dir)
	other := newBlock(t, map[string]string{"a": "b"})
	if err := Upload(ctx, logger, bkt, other); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForDeletion(ctx, logger, bkt, id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForNoCompaction(ctx, logger, bkt, id, ManualNoCompactReason, ""); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, logger, bkt, id); err != nil {
		t.Fatal(err)
	}
	p := id.String() + "/"
	want := []string{p + "meta.json", p + "chunks/000001", p + "index", p + "no-compact-mark.json", p + "deletion-mark.json"}
	if !slices.Equal(bkt.deletes, want) {
		t.Fatalf("delete order %v, want %v", bkt.deletes, want)
	}
	for _, n := range objects(t, bkt) {
		if strings.HasPrefix(n, p) {
			t.Fatalf("object %s left after delete", n)
		}
	}
	if len(objects(t, bkt)) != 3 {
		t.Fatalf("the other block was touched: %v", objects(t, bkt))
	}
	// Deleting again (a resumed delete) is not an error.
	if err := Delete(ctx, logger, bkt, id); err != nil {
		t.Fatal(err)
	}
}
