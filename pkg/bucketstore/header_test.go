package bucketstore

import (
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/blockgen"
)

// countingBucket counts ranged reads of index objects on a real bucket.
type countingBucket struct {
	objstore.InstrumentedBucket
	indexReads, indexBytes atomic.Int64
}

func (b *countingBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if strings.HasSuffix(name, "/index") {
		b.indexReads.Add(1)
		b.indexBytes.Add(length)
	}
	return b.InstrumentedBucket.GetRange(ctx, name, off, length)
}

func (b *countingBucket) ReaderWithExpectedErrs(objstore.IsOpFailureExpectedFunc) objstore.BucketReader {
	return b
}

// TestIndexHeaderSpeedsUpRestart: a store restarted on the same --data-dir
// opens its blocks' indexes without reading them from the bucket again, and
// never downloads a whole index.
func TestIndexHeaderSpeedsUpRestart(t *testing.T) {
	ctx := context.Background()
	base := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 3, Targets: 200, MinTime: end - 2*3600_000, MaxTime: end, ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, base); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	m := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	req := &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: m, SkipChunks: true}

	first := &countingBucket{InstrumentedBucket: base}
	c1, _, _ := serve(t, first, Config{DataDir: dataDir, IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	if _, _, err := series(t, c1, req); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dataDir)
	copies, states := 0, 0
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".index"):
			copies++
		case strings.HasSuffix(e.Name(), ".index.pages"):
			states++
		}
	}
	if copies != 1 || states != 1 {
		t.Fatalf("want one local index copy and its page list: %v", entries)
	}
	if metas, _ := os.ReadDir(filepath.Join(dataDir, "meta-cache")); len(metas) != 1 {
		t.Fatalf("want one cached meta.json: %v", metas)
	}
	restarted := &countingBucket{InstrumentedBucket: base}
	c2, _, _ := serve(t, restarted, Config{DataDir: dataDir, IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	_, order, err := series(t, c2, req)
	if err != nil || len(order) != 200 {
		t.Fatalf("after restart: %d series, %v", len(order), err)
	}
	var indexSize int64
	if err := base.Iter(ctx, "", func(name string) error {
		if strings.HasSuffix(name, "/index") {
			a, err := base.Attributes(ctx, name)
			indexSize = a.Size
			return err
		}
		return nil
	}, objstore.WithRecursiveIter()); err != nil {
		t.Fatal(err)
	}
	t.Logf("index bytes read: %d of %d", first.indexBytes.Load(), indexSize)
	if first.indexBytes.Load() >= indexSize/2 {
		t.Fatalf("the store read %d bytes of a %d-byte index for one narrow query: it must read the header and what the query needs, not the index", first.indexBytes.Load(), indexSize)
	}
	a, b := first.indexReads.Load(), restarted.indexReads.Load()
	t.Logf("index reads: first start %d, after restart %d", a, b)
	if b >= a {
		t.Fatalf("index reads after restart %d, first start %d: the header saved nothing", b, a)
	}

	// A kept copy whose pages did not reach the disk (zeros where the
	// page list says data) is started over, not trusted.
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".index") {
			f, err := os.OpenFile(filepath.Join(dataDir, e.Name()), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, 4096), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	c3, _, _ := serve(t, base, Config{DataDir: dataDir})
	if _, order, err = series(t, c3, req); err != nil || len(order) != 200 {
		t.Fatalf("after a damaged local index copy: %d series, %v", len(order), err)
	}
}
