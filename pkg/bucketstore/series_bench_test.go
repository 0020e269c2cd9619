package bucketstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// BenchmarkSeries measures Series over a blockgen bucket of an HA pair, 24h
// of 2h blocks (STRATA_BENCH_SERIES series per replica, default 20000), for
// a narrow, a wide and a regex selector on one replica: cold (a store just
// started on an empty --data-dir) and warm (best of 5; local too), against a local
// tsdb chunk querier reading the same replica's blocks from disk, with
// the bucket requests and bytes each query costs. The client is the
// querier's frame decoder; neither side decodes the chunks themselves.
func BenchmarkSeries(b *testing.B) {
	n := 20000
	if v := os.Getenv("STRATA_BENCH_SERIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	dir := b.TempDir()
	fs, err := filesystem.NewBucket(filepath.Join(dir, "bucket"))
	if err != nil {
		b.Fatal(err)
	}
	end := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	per := blockgen.SeriesPerTarget(false)
	cfg := blockgen.Config{Seed: 1, Targets: (n + per - 1) / per, MinTime: end.Add(-24 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(),
		Replicas: 2, ExternalLabels: map[string]string{"cluster": "bench"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, objstore.WrapWithMetrics(fs, nil, "gen")); err != nil {
		b.Fatal(err)
	}
	// The local reference: replica a's blocks on disk (blockgen writes
	// the same data for a given seed).
	local := cfg
	local.Replicas = 1
	localDir := filepath.Join(dir, "local")
	if _, err := blockgen.WriteDir(ctx, local, localDir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(localDir, "wal"), 0o755); err != nil {
		b.Fatal(err)
	}
	db, err := tsdb.OpenDBReadOnly(localDir, b.TempDir(), logger)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()

	selectors := []struct{ name, sel string }{
		{"narrow", `{__name__="node_load1", instance="host-00007:9100"}`},
		{"wide", `{__name__="http_request_duration_seconds_bucket"}`},
		{"regex", `{__name__=~"node_(cpu|memory).*", instance=~"host-000[0-4].*"}`},
	}
	start := func() (*grpc.ClientConn, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		s := New(ctx, Config{DataDir: b.TempDir(), IndexCacheBytes: 250 << 20, ChunkCacheBytes: 64 << 20, MaxTime: cfg.MaxTime * 2, EncodedFrames: true},
			objstore.WrapWithMetrics(fs, reg, "store"), logger, reg)
		if err := s.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		return serveConn(b, s), reg
	}
	fmt.Printf("\nstore Series, %d series x 24h x 2 replicas, one replica selected; local = tsdb chunk querier on the same blocks on disk\n", cfg.SeriesCount())
	fmt.Printf("%-8s %8s %9s %10s %10s %10s %7s %11s %11s %10s %10s\n", "selector", "series", "chunks", "local", "cold", "warm", "ratio",
		"cold GETs", "cold MiB", "warm GETs", "warm MiB")
	for _, s := range selectors {
		ms, err := parseMatchers(s.sel)
		if err != nil {
			b.Fatal(err)
		}
		var want counted
		localT := bestOf(b, 5, func() error {
			c, err := readLocal(ctx, db, ms, cfg.MinTime, cfg.MaxTime)
			want = c
			return err
		})
		pms, err := storeapi.MatchersToProto(append(ms, labels.MustNewMatcher(labels.MatchEqual, "replica", "a")))
		if err != nil {
			b.Fatal(err)
		}
		req := &storepb.SeriesRequest{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime, Matchers: pms, ResponseBatchSize: 64,
			Aggregates: []storepb.Aggr{storepb.Aggr_RAW}}
		client, reg := start()
		check := func(c counted) error {
			if c.series != want.series || c.chunks != want.chunks || c.bytes != want.bytes {
				return fmt.Errorf("%s: the store sent %+v, the local querier read %+v", s.name, c, want)
			}
			return nil
		}
		coldT := bestOf(b, 1, func() error {
			c, err := readStore(ctx, client, req)
			if err != nil {
				return err
			}
			return check(c)
		})
		coldGets, coldBytes := bucketCost(b, reg)
		warmT := bestOf(b, 5, func() error {
			c, err := readStore(ctx, client, req)
			if err != nil {
				return err
			}
			return check(c)
		})
		gets, bytes := bucketCost(b, reg)
		warmGets, warmBytes := (gets-coldGets)/5, (bytes-coldBytes)/5
		fmt.Printf("%-8s %8d %9d %10s %10s %10s %6.2fx %11.0f %11.1f %10.0f %10.1f\n", s.name, want.series, want.chunks,
			localT.Round(time.Microsecond), coldT.Round(time.Microsecond), warmT.Round(time.Microsecond), float64(warmT)/float64(localT),
			coldGets, coldBytes/(1<<20), warmGets, warmBytes/(1<<20))
		b.ReportMetric(float64(warmT)/float64(localT), s.name+"-warm-ratio")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("Go heap in use at the end (stores, caches and the local querier in one process): %d MiB\n", ms.HeapInuse>>20)
}

type counted struct{ series, chunks, bytes int }

func parseMatchers(sel string) ([]*labels.Matcher, error) {
	// The selectors above are simple: name="v" or name=~"v", comma-separated.
	sel = strings.TrimSuffix(strings.TrimPrefix(sel, "{"), "}")
	var out []*labels.Matcher
	for _, part := range strings.Split(sel, ", ") {
		t, sep := labels.MatchEqual, "="
		if strings.Contains(part, "=~") {
			t, sep = labels.MatchRegexp, "=~"
		}
		name, v, _ := strings.Cut(part, sep)
		v, err := strconv.Unquote(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		out = append(out, labels.MustNewMatcher(t, name, v))
	}
	return out, nil
}

func readLocal(ctx context.Context, db *tsdb.DBReadOnly, ms []*labels.Matcher, mint, maxt int64) (counted, error) {
	q, err := db.ChunkQuerier(mint, maxt)
	if err != nil {
		return counted{}, err
	}
	defer q.Close()
	var c counted
	set := q.Select(ctx, true, nil, ms...)
	for set.Next() {
		c.series++
		it := set.At().Iterator(nil)
		for it.Next() {
			c.chunks++
			c.bytes += len(it.At().Chunk.Bytes())
		}
		if err := it.Err(); err != nil {
			return c, err
		}
	}
	return c, set.Err()
}

// readStore reads through the querier's own decoder.
func readStore(ctx context.Context, conn grpc.ClientConnInterface, req *storepb.SeriesRequest) (counted, error) {
	var c counted
	err := query.ReadSeries(ctx, conn, req, func(_ labels.Labels, chunks []chunkenc.Chunk) error {
		c.series++
		for _, chk := range chunks {
			c.chunks++
			c.bytes += len(chk.Bytes())
		}
		return nil
	})
	return c, err
}

func bestOf(b *testing.B, n int, f func() error) time.Duration {
	best := time.Duration(1<<63 - 1)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		best = min(best, time.Since(t0))
	}
	return best
}

// bucketCost is the GET and GetRange requests and the bytes they fetched.
func bucketCost(b *testing.B, reg *prometheus.Registry) (gets, bytes float64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			op := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					op = l.GetValue()
				}
			}
			if op != "get" && op != "get_range" {
				continue
			}
			switch {
			case strings.HasSuffix(mf.GetName(), "objstore_bucket_operations_total"):
				gets += m.GetCounter().GetValue()
			case strings.HasSuffix(mf.GetName(), "objstore_bucket_operation_fetched_bytes_total"):
				bytes += m.GetCounter().GetValue()
			}
		}
	}
	return gets, bytes
}
