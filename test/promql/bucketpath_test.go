package promql_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/bucketstore"
)

// bucketData writes the data of each eval's storage as a TSDB block with
// Thanos meta (external label replica="r1") into a fresh bucket, which the
// store gateway serves. The same data is written once.
type bucketData struct {
	dir      string
	bkt      objstore.InstrumentedBucket
	store    *bucketstore.Store
	lastHash uint64
	logger   *slog.Logger
	// querierURL is set once the querier runs.
	querierURL string
}

func newBucketData(t *testing.T) *bucketData {
	t.Helper()
	dir := t.TempDir()
	fs, err := filesystem.NewBucket(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	bkt := objstore.WrapWithMetrics(fs, nil, "promql")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := slog.New(slog.DiscardHandler)
	return &bucketData{dir: dir, bkt: bkt, logger: logger,
		store: bucketstore.New(ctx, bucketstore.Config{IndexCacheBytes: 64 << 20, ChunkCacheBytes: 64 << 20}, bkt, logger, prometheus.NewRegistry())}
}

// export replaces the bucket's block with q's data if it changed.
func (d *bucketData) export(q storage.Queryable) error {
	ctx := context.Background()
	series, hash, err := readAll(ctx, q)
	if err != nil {
		return err
	}
	if hash == d.lastHash {
		return nil
	}
	var ids []string
	if err := d.bkt.Iter(ctx, "", func(name string) error { ids = append(ids, strings.TrimSuffix(name, "/")); return nil }); err != nil {
		return err
	}
	for _, id := range ids {
		if err := d.bkt.Delete(ctx, id); err != nil {
			// The filesystem bucket deletes directories recursively.
			return fmt.Errorf("clear bucket: %w", err)
		}
	}
	if len(series) > 0 {
		tmp := filepath.Join(d.dir, "tmp")
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		// One block over the whole range of the data.
		bdir, err := tsdb.CreateBlock(series, tmp, math.MaxInt64/4, d.logger)
		if err != nil {
			return fmt.Errorf("write block: %w", err)
		}
		m, err := block.ReadMeta(bdir)
		if err != nil {
			return err
		}
		m.Thanos = block.Thanos{Version: 1, Labels: map[string]string{"replica": "r1"}, Source: block.SourceTest}
		if err := block.UploadWithMeta(ctx, d.logger, d.bkt, bdir, m); err != nil {
			return err
		}
	}
	if err := d.store.Sync(ctx); err != nil {
		return err
	}
	if err := d.waitQuerier(ctx); err != nil {
		return err
	}
	d.lastHash = hash
	return nil
}

// waitQuerier waits until the querier has seen the store's new time range:
// it only asks stores whose range overlaps the query.
func (d *bucketData) waitQuerier(ctx context.Context) error {
	info, err := d.store.Info(ctx, nil)
	if err != nil {
		return err
	}
	want := fmt.Sprintf(`"min_time":%d,"max_time":%d`, info.Store.MinTime, info.Store.MaxTime)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(d.querierURL + "/api/v1/stores")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("querier did not see the store's range %s within 10s", want)
		}
		time.Sleep(5 * time.Millisecond) // bounded poll for the endpoint refresh
	}
}

// readAll returns every series of q with its samples, and a hash of them.
func readAll(ctx context.Context, q storage.Queryable) ([]storage.Series, uint64, error) {
	qr, err := q.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, 0, err
	}
	defer qr.Close()
	ss := qr.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".*"))
	h := fnv.New64a()
	var out []storage.Series
	var buf [8]byte
	for ss.Next() {
		s := ss.At()
		h.Write([]byte(s.Labels().String()))
		var smp []chunks.Sample
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				t, f := it.At()
				smp = append(smp, fsample{t, f})
				binary.LittleEndian.PutUint64(buf[:], math.Float64bits(f))
				h.Write(buf[:])
			case chunkenc.ValHistogram:
				t, hh := it.AtHistogram(nil)
				smp = append(smp, hsample{t: t, h: hh})
				h.Write([]byte(hh.String()))
			case chunkenc.ValFloatHistogram:
				t, fh := it.AtFloatHistogram(nil)
				smp = append(smp, hsample{t: t, fh: fh})
				h.Write([]byte(fh.String()))
			}
			binary.LittleEndian.PutUint64(buf[:], uint64(it.AtT()))
			h.Write(buf[:])
		}
		if it.Err() != nil {
			return nil, 0, it.Err()
		}
		out = append(out, storage.NewListSeries(s.Labels(), smp))
	}
	return out, h.Sum64(), ss.Err()
}
