package bucketstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

var logger = slog.New(slog.DiscardHandler)

func newBucket(t testing.TB) objstore.InstrumentedBucket {
	t.Helper()
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return objstore.WrapWithMetrics(fs, nil, "test")
}

// serve starts a store over bkt on 127.0.0.1 and returns a client.
func serve(t testing.TB, bkt objstore.InstrumentedBucket, cfg Config) (storepb.StoreClient, infopb.InfoClient, *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := New(ctx, cfg, bkt, logger, prometheus.NewRegistry())
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sc, ic, _ := serveStore(t, s)
	return sc, ic, s
}

// serveStore serves s on 127.0.0.1 and returns clients.
func serveStore(t testing.TB, s *Store) (storepb.StoreClient, infopb.InfoClient, *Store) {
	t.Helper()
	conn := serveConn(t, s)
	return storepb.NewStoreClient(conn), infopb.NewInfoClient(conn), s
}

// serveConn serves s over gRPC on 127.0.0.1 and returns a connection to it.
// With Config.EncodedFrames the server gets the codec that sends hand-built
// frames, as cmd/store sets it up.
func serveConn(t testing.TB, s *Store) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if s.cfg.EncodedFrames {
		opts = append(opts, grpc.ForceServerCodecV2(storeapi.ServerCodec{}))
	}
	srv := grpc.NewServer(opts...)
	s.Register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type sample struct {
	t int64
	v float64
}

// series runs Series and returns samples within [mint, maxt] by labels.
func series(t testing.TB, c storepb.StoreClient, req *storepb.SeriesRequest) (map[string][]sample, []string, error) {
	t.Helper()
	stream, err := c.Series(context.Background(), req)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]sample{}
	var order []string
	var sb labels.ScratchBuilder
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return out, order, nil
		}
		if err != nil {
			return nil, nil, err
		}
		s := r.GetSeries()
		if s == nil {
			continue
		}
		key := storeapi.LabelsFromProto(&sb, s.Labels).String()
		order = append(order, key)
		for _, c := range s.Chunks {
			enc, _ := storeapi.EncodingFromProto(c.Raw.Type)
			chk, err := chunkenc.FromData(enc, c.Raw.Data)
			if err != nil {
				t.Fatal(err)
			}
			if out[key], err = appendSamples(out[key], chk, req.MinTime, req.MaxTime); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// appendSamples appends chk's samples in [mint, maxt] to out; histogram
// samples count with value -1.
func appendSamples(out []sample, chk chunkenc.Chunk, mint, maxt int64) ([]sample, error) {
	it := chk.Iterator(nil)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		ts := it.AtT()
		v := -1.0
		if vt == chunkenc.ValFloat {
			_, v = it.At()
		}
		if ts >= mint && ts <= maxt {
			out = append(out, sample{ts, v})
		}
	}
	return out, it.Err()
}

func expected(t testing.TB, cfg blockgen.Config, mint, maxt int64, ms []*labels.Matcher) map[string][]sample {
	t.Helper()
	out := map[string][]sample{}
	for r := 0; r < cfg.Replicas; r++ {
		ext := labels.FromStrings("cluster", "c", "replica", cfg.ReplicaValues[r])
		series, ok := storeapi.SplitExternalMatchers(ms, ext)
		if !ok {
			continue
		}
		if len(series) == 0 {
			series = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")}
		}
		ss := blockgen.SeriesSet(cfg, r, mint, maxt, series...)
		var b labels.Builder
		for ss.Next() {
			s := ss.At()
			key := storeapi.AttachExternalLabels(&b, s.Labels(), ext).String()
			it := s.Iterator(nil)
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				v := -1.0
				if vt == chunkenc.ValFloat {
					_, v = it.At()
				}
				if ts := it.AtT(); ts >= mint && ts <= maxt {
					out[key] = append(out[key], sample{ts, v})
				}
			}
		}
		if ss.Err() != nil {
			t.Fatal(ss.Err())
		}
	}
	for k, v := range out {
		if len(v) == 0 {
			delete(out, k)
		}
	}
	return out
}

func TestSeriesEqualsBlocks(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 11, Targets: 5, MinTime: end - 6*3600_000, MaxTime: end, Replicas: 2, NativeHistograms: true,
		ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	client, infoc, _ := serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})

	info, err := infoc.Info(ctx, &infopb.InfoRequest{})
	if err != nil || len(info.LabelSets) != 2 || info.Store.MinTime != cfg.MinTime || info.Store.MaxTime != cfg.MaxTime-1 {
		t.Fatalf("Info: %v %v", info, err)
	}

	m := func(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }
	selectors := map[string][]*labels.Matcher{
		"equality":        {m(labels.MatchEqual, "__name__", "node_load1")},
		"regex":           {m(labels.MatchRegexp, "__name__", "http_requests_total|node_load1"), m(labels.MatchRegexp, "instance", "host-0000[13].*")},
		"negative":        {m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchNotEqual, "code", "200")},
		"negative regex":  {m(labels.MatchRegexp, "__name__", "node_cpu.*"), m(labels.MatchNotRegexp, "mode", "idle|user")},
		"empty matching":  {m(labels.MatchRegexp, "__name__", "node_.*"), m(labels.MatchEqual, "mode", "")},
		"external label":  {m(labels.MatchEqual, "replica", "b"), m(labels.MatchEqual, "__name__", "node_load1")},
		"no such replica": {m(labels.MatchEqual, "replica", "z"), m(labels.MatchEqual, "__name__", "node_load1")},
		"native":          {m(labels.MatchEqual, "__name__", "http_request_duration_native_seconds")},
	}
	ranges := map[string][2]int64{
		"inside a block": {end - 5*3600_000, end - 4*3600_000 - 60_000},
		"across blocks":  {end - 5*3600_000, end - 1*3600_000},
		"everything":     {math.MinInt64, math.MaxInt64},
		"outside":        {end + 3600_000, end + 7200_000},
	}
	// A store with no chunk cache to speak of reads every request's chunks
	// through planned windows rather than the page cache.
	windowed, _, _ := serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 0})
	// And one that builds its batch frames by hand, read as the querier
	// reads them, through windows of 16 KiB: many per segment, so that
	// window buffers are reused within a request and between requests.
	windowBytes = 16 << 10
	t.Cleanup(func() { windowBytes = maxWindow })
	encStore := New(ctx, Config{EncodedFrames: true}, bkt, logger, prometheus.NewRegistry())
	if err := encStore.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	encoded := serveConn(t, encStore)
	for sn, ms := range selectors {
		for rn, r := range ranges {
			for _, path := range []string{"pages", "windows", "encoded"} {
				t.Run(sn+"/"+rn+"/"+path, func(t *testing.T) {
					pms, _ := storeapi.MatchersToProto(ms)
					req := &storepb.SeriesRequest{MinTime: r[0], MaxTime: r[1], Matchers: pms}
					var (
						got   map[string][]sample
						order []string
						err   error
					)
					switch path {
					case "pages":
						got, order, err = series(t, client, req)
					case "windows":
						got, order, err = series(t, windowed, req)
					case "encoded":
						req.ResponseBatchSize = 4
						got, order, err = seriesBatched(t, encoded, req)
					}
					if err != nil {
						t.Fatal(err)
					}
					if !sort.StringsAreSorted(order) && !sortedByLabels(order) {
						t.Fatalf("series not sorted: %v", order)
					}
					want := expected(t, cfg, r[0], r[1], ms)
					for k := range got {
						if len(got[k]) == 0 {
							delete(got, k)
						}
					}
					if len(got) != len(want) {
						t.Fatalf("%d series, want %d", len(got), len(want))
					}
					for k, w := range want {
						g := got[k]
						if fmt.Sprint(g) != fmt.Sprint(w) {
							t.Fatalf("%s: %d samples, want %d", k, len(g), len(w))
						}
					}
				})
			}
		}
	}

	// without_replica_labels: replicas' series come out with equal labels,
	// next to each other, sorted as if the label were absent.
	pms, _ := storeapi.MatchersToProto(selectors["equality"])
	_, order, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: pms, WithoutReplicaLabels: []string{"replica"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 10 || strings.Contains(strings.Join(order, ""), "replica") || !sortedByLabels(order) {
		t.Fatalf("without replica labels: %v", order)
	}
	// limit
	_, order, err = series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: pms, Limit: 3})
	if err != nil || len(order) != 3 {
		t.Fatalf("limit 3: %d series, %v", len(order), err)
	}
	// label names and values
	names, err := client.LabelNames(ctx, &storepb.LabelNamesRequest{Start: math.MinInt64, End: math.MaxInt64, WithoutReplicaLabels: []string{"replica"}})
	if err != nil || !containsStr(names.Names, "cluster") || containsStr(names.Names, "replica") || !containsStr(names.Names, "mode") {
		t.Fatalf("label names: %v %v", names, err)
	}
	vals, err := client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "job", Start: math.MinInt64, End: math.MaxInt64})
	if err != nil || strings.Join(vals.Values, ",") != "api,node" {
		t.Fatalf("label values: %v %v", vals, err)
	}
}

func sortedByLabels(keys []string) bool {
	ls := make([]labels.Labels, len(keys))
	for i, k := range keys {
		l, err := parseMetric(k)
		if err != nil {
			return false
		}
		ls[i] = l
	}
	for i := 1; i < len(ls); i++ {
		if labels.Compare(ls[i-1], ls[i]) > 0 {
			return false
		}
	}
	return true
}

func containsStr(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 1, Targets: 3, MinTime: end - 2*3600_000, MaxTime: end, ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	all := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}
	client, _, _ := serve(t, bkt, Config{LimitSeries: 10, IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	_, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--store.limits.request-series") {
		t.Fatalf("want ResourceExhausted naming the series limit, got %v", err)
	}
	client, _, _ = serve(t, bkt, Config{LimitSamples: 1000, IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	_, _, err = series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--store.limits.request-samples") {
		t.Fatalf("want ResourceExhausted naming the samples limit, got %v", err)
	}
}

// TestBadBucket: a partial block, a deletion-marked one, one whose chunks
// vanished and one with a corrupt index: the store starts, serves the good
// blocks and names the bad ones.
func TestBadBucket(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 2, Targets: 2, MinTime: end - 10*3600_000, MaxTime: end, ExternalLabels: map[string]string{"cluster": "c"}}
	blocks, err := blockgen.WriteBucket(ctx, logger, cfg, bkt)
	if err != nil || len(blocks) != 5 {
		t.Fatalf("%d blocks, %v", len(blocks), err)
	}
	partial, marked, noChunks, badIndex := blocks[0].Meta.ULID, blocks[1].Meta.ULID, blocks[2].Meta.ULID, blocks[3].Meta.ULID
	if err := bkt.Delete(ctx, partial.String()+"/meta.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := block.MarkForDeletion(ctx, logger, bkt, marked, "test"); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Delete(ctx, noChunks.String()+"/chunks/000001"); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Upload(ctx, badIndex.String()+"/index", strings.NewReader(strings.Repeat("garbage!", 100))); err != nil {
		t.Fatal(err)
	}
	client, _, s := serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	if n := len(s.snapshot()); n != 3 {
		t.Fatalf("serving %d blocks, want 3 (all but the partial and the marked one)", n)
	}
	m := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}
	// The good block answers.
	good := blocks[4].Meta
	got, _, err := series(t, client, &storepb.SeriesRequest{MinTime: good.MinTime, MaxTime: good.MaxTime - 1, Matchers: m})
	if err != nil || len(got) != 2 {
		t.Fatalf("good block: %d series, %v", len(got), err)
	}
	// The broken ones fail with errors naming block and object (without
	// partial response; with it, TestCorruptIndexLeftOutWithWarning).
	for id, what := range map[string]string{noChunks.String(): "chunks/000001", badIndex.String(): "index"} {
		var mt, xt int64
		for _, b := range blocks {
			if b.Meta.ULID.String() == id {
				mt, xt = b.Meta.MinTime, b.Meta.MaxTime-1
			}
		}
		_, _, err := series(t, client, &storepb.SeriesRequest{MinTime: mt, MaxTime: xt, Matchers: m, PartialResponseDisabled: true})
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Fatalf("query of block %s (%s broken): want an error naming it, got %v", id, what, err)
		}
	}
	// And the store still serves the good one afterwards.
	if _, _, err := series(t, client, &storepb.SeriesRequest{MinTime: good.MinTime, MaxTime: good.MaxTime - 1, Matchers: m}); err != nil {
		t.Fatal(err)
	}
}

// seriesBatched is series for batched requests, read with the querier's
// frame decoder.
func seriesBatched(t testing.TB, conn *grpc.ClientConn, req *storepb.SeriesRequest) (map[string][]sample, []string, error) {
	t.Helper()
	out := map[string][]sample{}
	var order []string
	err := query.ReadSeries(context.Background(), conn, req, func(lset labels.Labels, chks []chunkenc.Chunk) error {
		key := lset.String()
		order = append(order, key)
		for _, chk := range chks {
			var err error
			if out[key], err = appendSamples(out[key], chk, req.MinTime, req.MaxTime); err != nil {
				return err
			}
		}
		return nil
	})
	return out, order, err
}

// TestSeriesLimitAcrossStreams: the streams of a request (here the two
// replicas of an HA pair) are resolved concurrently; the series limit holds
// for their sum, not for each.
func TestSeriesLimitAcrossStreams(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 1, Targets: 3, MinTime: end - 4*3600_000, MaxTime: end, Replicas: 2, ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	perReplica := int64(cfg.SeriesCount())
	client, _, _ := serve(t, bkt, Config{LimitSeries: perReplica + perReplica/2, IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	all := &storepb.LabelMatcher{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}
	_, got, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64,
		Matchers: []*storepb.LabelMatcher{all, {Type: storepb.LabelMatcher_EQ, Name: "replica", Value: "b"}}})
	if err != nil || int64(len(got)) != perReplica {
		t.Fatalf("one replica: %d series, %v; want %d", len(got), err, perReplica)
	}
	_, _, err = series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{all}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--store.limits.request-series") {
		t.Fatalf("both replicas (%d series, limit %d): want ResourceExhausted naming the series limit, got %v", 2*perReplica, perReplica+perReplica/2, err)
	}
	// Without a limit, both streams arrive whole, sorted, replicas of a
	// series next to each other.
	client, _, _ = serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	_, got, err = series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{all},
		WithoutReplicaLabels: []string{"replica"}})
	if err != nil || int64(len(got)) != 2*perReplica {
		t.Fatalf("both replicas: %d series, %v; want %d", len(got), err, 2*perReplica)
	}
	for i := 1; i < len(got); i += 2 {
		if got[i-1] != got[i] || strings.Contains(got[i], "replica") || (i > 1 && got[i-2] == got[i-1]) {
			t.Fatalf("series %d and %d: %s, %s; want each series twice, in order", i-1, i, got[i-1], got[i])
		}
	}
}

// TestSeriesShards: the shards of a request partition its series (with
// their chunks): each series in exactly one shard, the one the shard
// matcher gives it, on both reading paths; replicas, whose labels are
// equal without the replica label, land in the same shard.
func TestSeriesShards(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 5, Targets: 4, MinTime: end - 4*3600_000, MaxTime: end, Replicas: 2, ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	client, info, _ := serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})
	if resp, err := info.Info(ctx, &infopb.InfoRequest{}); err != nil || !resp.Store.SupportsSharding {
		t.Fatalf("Info must advertise sharding: %v %v", resp, err)
	}
	encStore := New(ctx, Config{EncodedFrames: true}, bkt, logger, prometheus.NewRegistry())
	if err := encStore.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	encoded := serveConn(t, encStore)
	all := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}
	whole, _, err := series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all, WithoutReplicaLabels: []string{"replica"}})
	if err != nil {
		t.Fatal(err)
	}
	const total = 5
	keys := []struct {
		by     bool
		labels []string
	}{
		{false, []string{"__name__", "replica"}}, // every series read, hashed
		{true, []string{"instance"}},             // by one label: picked from the postings
		{true, []string{"le"}},                   // most series lack it
		{true, []string{"cluster"}},              // an external label: the whole stream
		{true, []string{"instance", "le"}},
	}
	for _, key := range keys {
		for _, path := range []string{"messages", "encoded"} {
			seen := map[string]int{}
			nonEmpty := 0
			for i := range int64(total) {
				shard := &storepb.ShardInfo{ShardIndex: i, TotalShards: total, By: key.by, Labels: key.labels}
				req := &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all, WithoutReplicaLabels: []string{"replica"},
					ShardInfo: shard}
				var (
					got   map[string][]sample
					order []string
					err   error
				)
				if path == "messages" {
					got, order, err = series(t, client, req)
				} else {
					req.ResponseBatchSize = 16
					got, order, err = seriesBatched(t, encoded, req)
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(order) > 0 {
					nonEmpty++
				}
				m, _ := storeapi.NewShardMatcher(shard)
				for j, k := range order {
					lset, err := parser.NewParser(parser.Options{}).ParseMetric(k)
					if err != nil {
						t.Fatal(err)
					}
					if !m.Matches(lset) {
						t.Fatalf("%v %s: shard %d sent %s, which is not in it", key, path, i, k)
					}
					// Both replicas (the same labels here) or neither.
					if j%2 == 1 && order[j-1] != k {
						t.Fatalf("%v %s: shard %d has one replica of %s", key, path, i, order[j-1])
					}
					seen[k]++
					if !slices.Equal(got[k], whole[k]) {
						t.Fatalf("%v %s: shard %d: samples of %s differ from the whole request's", key, path, i, k)
					}
				}
			}
			if len(seen) != len(whole) {
				t.Fatalf("%v %s: the shards hold %d series, the whole request %d", key, path, len(seen), len(whole))
			}
			if key.labels[0] != "cluster" && nonEmpty < 2 {
				t.Fatalf("%v %s: %d shards with series: the case proves nothing", key, path, nonEmpty)
			}
		}
	}
	_, _, err = series(t, client, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: all,
		ShardInfo: &storepb.ShardInfo{ShardIndex: 5, TotalShards: 5}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("shard 5 of 5: want InvalidArgument, got %v", err)
	}
}
