package block

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

var logger = slog.New(slog.DiscardHandler)

// newBlock writes a small real TSDB block into a temp dir and returns its dir.
func newBlock(t *testing.T, ext map[string]string) string {
	t.Helper()
	var series []storage.Series
	for i := 0; i < 20; i++ {
		series = append(series, storage.NewListSeries(
			labels.FromStrings("__name__", "m", "i", string(rune('a'+i))),
			chunks.GenerateSamples(0, 500)))
	}
	dir, err := tsdb.CreateBlock(series, t.TempDir(), 0, logger)
	if err != nil {
		t.Fatalf("create block: %v", err)
	}
	if ext != nil {
		m, err := ReadMeta(dir)
		if err != nil {
			t.Fatal(err)
		}
		m.Thanos.Labels = ext
		m.Thanos.Source = SourceTest
		if err := m.WriteMeta(dir); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newBucket(t *testing.T) objstore.InstrumentedBucket {
	t.Helper()
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return objstore.WrapWithMetrics(bkt, nil, "test")
}

func TestUploadDownloadByteIdentical(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"cluster": "eu", "replica": "a"})
	bkt := newBucket(t)
	if err := Upload(ctx, logger, bkt, dir); err != nil {
		t.Fatal(err)
	}
	id := ulid.MustParse(filepath.Base(dir))
	meta, err := ReadMetaFromBucket(ctx, bkt, id)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Thanos.Labels["cluster"] != "eu" || meta.Thanos.UploadTime.IsZero() || meta.Thanos.Version != 1 {
		t.Fatalf("uploaded meta lacks the thanos section: %+v", meta.Thanos)
	}
	var rels []string
	for _, f := range meta.Thanos.Files {
		rels = append(rels, f.RelPath)
		if f.RelPath != MetaFilename && f.SizeBytes == 0 {
			t.Errorf("file %s has no size", f.RelPath)
		}
	}
	if got := strings.Join(rels, ","); got != "chunks/000001,index,meta.json" {
		t.Fatalf("files = %s", got)
	}

	dst := t.TempDir()
	if _, err := Download(ctx, logger, bkt, id, dst); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"chunks/000001", "index"} {
		a, _ := os.ReadFile(filepath.Join(dir, rel))
		b, err := os.ReadFile(filepath.Join(dst, id.String(), rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s not byte-identical after download (err %v)", rel, err)
		}
	}
	// The downloaded block opens with Prometheus' tsdb.
	b, err := tsdb.OpenBlock(nil, filepath.Join(dst, id.String()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Meta().Stats.NumSeries != 20 {
		t.Fatalf("series = %d", b.Meta().Stats.NumSeries)
	}
}

func TestUploadRefusesEmptyLabelsAndMismatchedDir(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, nil)
	err := Upload(ctx, logger, newBucket(t), dir)
	if err == nil || !strings.Contains(err.Error(), "empty external labels") {
		t.Fatalf("want empty labels error, got %v", err)
	}
	dir = newBlock(t, map[string]string{"a": "b"})
	other := filepath.Join(t.TempDir(), "not-a-ulid")
	if err := os.Rename(dir, other); err != nil {
		t.Fatal(err)
	}
	if err := Upload(ctx, logger, newBucket(t), other); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("want dir/ULID mismatch error, got %v", err)
	}
}

// A Thanos-written meta.json, with fields this version does not know, must
// read correctly and survive a read-modify-write.
func TestMetaThanosFormatAndUnknownFields(t *testing.T) {
	const golden = `{
	"ulid": "01DRBP4RNVZ94135ZA6B10EMRR",
	"minTime": 1570766415000,
	"maxTime": 1570939215001,
	"stats": {"numSamples": 10, "numSeries": 2, "numChunks": 2},
	"compaction": {"level": 2, "sources": ["01DRBP4RNVZ94135ZA6B10EMRR"]},
	"version": 1,
	"future_top": {"x": [1, 2]},
	"thanos": {
		"labels": {"cluster": "one", "dataset": "continuous"},
		"downsample": {"resolution": 300000},
		"source": "compactor",
		"files": [{"rel_path": "chunks/000001", "size_bytes": 12}, {"rel_path": "index", "size_bytes": 34}, {"rel_path": "meta.json"}],
		"index_stats": {"series_max_size": 100, "chunk_max_size": 200},
		"rewrites": [{"sources": ["01DRBP4RNVZ94135ZA6B10EMRR"]}],
		"extensions": {"parquet_migrated": true},
		"future_thanos": "kept"
	}
}`
	m, err := DecodeMeta(strings.NewReader(golden))
	if err != nil {
		t.Fatal(err)
	}
	if m.ULID.String() != "01DRBP4RNVZ94135ZA6B10EMRR" || m.MaxTime != 1570939215001 || m.Compaction.Level != 2 ||
		m.Thanos.Downsample.Resolution != Resolution5m || m.Thanos.Source != SourceCompactor || m.Thanos.Version != 1 ||
		m.Thanos.IndexStats.ChunkMaxSize != 200 || len(m.Thanos.Files) != 3 || m.Thanos.Labels["dataset"] != "continuous" {
		t.Fatalf("decoded meta wrong: %+v", m)
	}
	if want := fmt.Sprintf("300000@%d", labels.FromStrings("cluster", "one", "dataset", "continuous").Hash()); m.GroupKey() != want {
		t.Fatalf("group key %s, want Thanos' %s", m.GroupKey(), want)
	}
	m.Thanos.Labels["new"] = "label"
	dir := filepath.Join(t.TempDir(), m.ULID.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteMeta(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, MetaFilename))
	if !bytes.Contains(raw, []byte("\n\t\"ulid\"")) {
		t.Errorf("meta.json is not tab-indented:\n%s", raw)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if generic["future_top"] == nil || generic["thanos"].(map[string]any)["future_thanos"] != "kept" ||
		generic["thanos"].(map[string]any)["extensions"] == nil || generic["thanos"].(map[string]any)["rewrites"] == nil {
		t.Fatalf("unknown fields were lost: %s", raw)
	}
	back, err := ReadMeta(dir)
	if err != nil || back.Thanos.Labels["new"] != "label" {
		t.Fatalf("re-read: %v %+v", err, back)
	}

	for _, bad := range []string{
		strings.Replace(golden, `"version": 1,`, `"version": 2,`, 1),
		strings.Replace(golden, `"labels"`, `"version": 3, "labels"`, 1),
		`{"ulid": `,
	} {
		if _, err := DecodeMeta(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted invalid meta: %.60s", bad)
		}
	}
	if m, err := DecodeMeta(strings.NewReader(`{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"thanos":{}}`)); err != nil || m.Thanos.Labels == nil || m.Thanos.Version != 1 {
		t.Errorf("nil labels must become an empty map and version 0 read as 1: %v", err)
	}
}

func TestMarkers(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	id := ulid.MustNew(1, nil)
	if _, err := ReadMarker[DeletionMark](ctx, bkt, id); !errors.Is(err, ErrMarkerNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
	if ok, err := MarkForDeletion(ctx, logger, bkt, id, "compacted"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	first, err := ReadMarker[DeletionMark](ctx, bkt, id)
	if err != nil || first.ID != id || first.Version != 1 || first.Details != "compacted" || first.DeletionTime == 0 {
		t.Fatalf("%+v %v", first, err)
	}
	if ok, err := MarkForDeletion(ctx, logger, bkt, id, "again"); err != nil || ok {
		t.Fatalf("second mark must not overwrite: %v %v", ok, err)
	}
	if ok, err := MarkForNoCompaction(ctx, logger, bkt, id, ManualNoCompactReason, "by hand"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	nc, err := ReadMarker[NoCompactMark](ctx, bkt, id)
	if err != nil || nc.Reason != ManualNoCompactReason {
		t.Fatalf("%+v %v", nc, err)
	}
	raw := map[string]any{}
	r, _ := bkt.Get(ctx, id.String()+"/"+NoCompactMarkFilename)
	_ = json.NewDecoder(r).Decode(&raw)
	r.Close()
	for _, k := range []string{"id", "version", "details", "no_compact_time", "reason"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no-compact-mark.json lacks %q", k)
		}
	}
	if err := bkt.Upload(ctx, id.String()+"/"+DeletionMarkFilename, strings.NewReader(`{"id": "01`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMarker[DeletionMark](ctx, bkt, id); !errors.Is(err, ErrUnmarshalMarker) {
		t.Fatalf("want ErrUnmarshalMarker for a cut-off marker, got %v", err)
	}
}

// recordingBucket records the order of deletes on a real bucket.
type recordingBucket struct {
	objstore.InstrumentedBucket
	mu      sync.Mutex
	deletes []string
}

func (b *recordingBucket) Delete(ctx context.Context, name string) error {
	b.mu.Lock()
	b.deletes = append(b.deletes, name)
	b.mu.Unlock()
	return b.InstrumentedBucket.Delete(ctx, name)
}

func TestDeleteOrder(t *testing.T) {
	ctx := context.Background()
	dir := newBlock(t, map[string]string{"a": "b"})
	bkt := &recordingBucket{InstrumentedBucket: newBucket(t)}
	if err := Upload(ctx, logger, bkt, dir); err != nil {
		t.Fatal(err)
	}
	id := ulid.MustParse(filepath.Base(dir))
	if _, err := MarkForDeletion(ctx, logger, bkt, id, ""); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, logger, bkt, id); err != nil {
		t.Fatal(err)
	}
	if n := len(bkt.deletes); n != 4 || bkt.deletes[0] != id.String()+"/meta.json" || bkt.deletes[n-1] != id.String()+"/deletion-mark.json" {
		t.Fatalf("delete order: %v", bkt.deletes)
	}
	var left []string
	_ = bkt.Iter(ctx, "", func(n string) error { left = append(left, n); return nil }, objstore.WithRecursiveIter())
	if len(left) != 0 {
		t.Fatalf("objects left after delete: %v", left)
	}
}

func TestListerClassifiesBlocks(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	upload := func() ulid.ULID {
		dir := newBlock(t, map[string]string{"a": "b"})
		if err := Upload(ctx, logger, bkt, dir); err != nil {
			t.Fatal(err)
		}
		return ulid.MustParse(filepath.Base(dir))
	}
	complete, marked, partial, corrupt := upload(), upload(), upload(), upload()
	if err := bkt.Delete(ctx, partial.String()+"/meta.json"); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Upload(ctx, corrupt.String()+"/meta.json", strings.NewReader("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForDeletion(ctx, logger, bkt, marked, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkForNoCompaction(ctx, logger, bkt, complete, ManualNoCompactReason, ""); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Upload(ctx, "debug/notes.txt", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}

	l := NewLister(bkt, 4)
	for i := 0; i < 2; i++ { // the second listing uses cached metas
		res, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Metas) != 2 || res.Metas[complete] == nil || res.Metas[marked] == nil {
			t.Fatalf("complete blocks: %v", res.Metas)
		}
		if len(res.Partial) != 1 || !res.Partial[partial] {
			t.Fatalf("partial: %v", res.Partial)
		}
		if len(res.Corrupt) != 1 || res.Corrupt[corrupt] == nil || !strings.Contains(res.Corrupt[corrupt].Error(), corrupt.String()) {
			t.Fatalf("corrupt: %v", res.Corrupt)
		}
		if len(res.DeletionMarks) != 1 || res.DeletionMarks[marked] == nil {
			t.Fatalf("deletion marks: %v", res.DeletionMarks)
		}
		if len(res.NoCompactMarks) != 1 || res.NoCompactMarks[complete] == nil {
			t.Fatalf("no-compact marks: %v", res.NoCompactMarks)
		}
	}
	if err := Delete(ctx, logger, bkt, complete); err != nil {
		t.Fatal(err)
	}
	res, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Metas[complete]; ok {
		t.Fatal("deleted block still listed")
	}
}
