package block

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

// newBlock writes a small real TSDB block into a temp dir and returns its
// dir. With ext set, the meta gets those external labels.
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

func blockID(dir string) ulid.ULID { return ulid.MustParse(filepath.Base(dir)) }

func newBucket(t *testing.T) objstore.InstrumentedBucket {
	t.Helper()
	return newBucketAt(t, t.TempDir())
}

// newBucketAt returns a FILESYSTEM bucket rooted at dir.
func newBucketAt(t testing.TB, dir string) objstore.InstrumentedBucket {
	t.Helper()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objstore.WrapWithMetrics(bkt, nil, "test")
}

// recordingBucket records the order of uploads and deletes on a real bucket
// and fails operations on objects whose name has a given suffix.
type recordingBucket struct {
	objstore.InstrumentedBucket
	failUpload  string // suffix
	failGet     string // suffix
	failIter    string // prefix
	failTopIter bool

	mu      sync.Mutex
	uploads []string
	deletes []string
}

var errInjected = errors.New("injected failure")

func (b *recordingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if b.failUpload != "" && strings.HasSuffix(name, b.failUpload) {
		return errInjected
	}
	b.mu.Lock()
	b.uploads = append(b.uploads, name)
	b.mu.Unlock()
	return b.InstrumentedBucket.Upload(ctx, name, r, opts...)
}

func (b *recordingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if b.failGet != "" && strings.HasSuffix(name, b.failGet) {
		return nil, errInjected
	}
	return b.InstrumentedBucket.Get(ctx, name)
}

func (b *recordingBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if (b.failIter != "" && strings.HasPrefix(dir, b.failIter)) || (b.failTopIter && dir == "") {
		return errInjected
	}
	return b.InstrumentedBucket.Iter(ctx, dir, f, opts...)
}

func (b *recordingBucket) Delete(ctx context.Context, name string) error {
	b.mu.Lock()
	b.deletes = append(b.deletes, name)
	b.mu.Unlock()
	return b.InstrumentedBucket.Delete(ctx, name)
}

// ReaderWithExpectedErrs keeps reads going through the recording methods.
func (b *recordingBucket) ReaderWithExpectedErrs(objstore.IsOpFailureExpectedFunc) objstore.BucketReader {
	return b
}

// objects lists every object in bkt.
func objects(t *testing.T, bkt objstore.BucketReader) []string {
	t.Helper()
	var names []string
	if err := bkt.Iter(context.Background(), "", func(n string) error { names = append(names, n); return nil }, objstore.WithRecursiveIter()); err != nil {
		t.Fatal(err)
	}
	return names
}
