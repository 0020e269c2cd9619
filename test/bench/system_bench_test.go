package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/bucketstore"
	"github.com/strata-metrics/strata/pkg/compact"
	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/pkg/querier"
	"github.com/strata-metrics/strata/pkg/shipper"
	"github.com/strata-metrics/strata/pkg/storeapi"
	"github.com/strata-metrics/strata/test/e2e"
)

var logger = slog.New(slog.DiscardHandler)

var queries = []string{
	`sum by (job) (rate(http_requests_total[5m]))`,
	`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))`,
	`node_load1{instance="host-00007:9100"}`,
	`topk(5, max_over_time(node_load1[1h]))`,
	`count({__name__=~".+"})`,
}

// BenchmarkSystem prints the system table. Sized by STRATA_BENCH_SERIES
// (default 20000) over 24h of an HA pair.
func BenchmarkSystem(b *testing.B) {
	series := 20000
	if s := os.Getenv("STRATA_BENCH_SERIES"); s != "" {
		fmt.Sscan(s, &series)
	}
	began := time.Now()
	ctx := context.Background()
	// The GOGC of a Prometheus (since 2.53) and of our querier process,
	// for the local engine and ours alike.
	defer debug.SetGCPercent(debug.SetGCPercent(querier.DefaultGCPercent))
	dir := b.TempDir()
	fs, err := filesystem.NewBucket(filepath.Join(dir, "bucket"))
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	bkt := objstore.WrapWithMetrics(fs, reg, "bench")
	end := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	cfg := blockgen.Config{Seed: 1, Targets: (series + blockgen.SeriesPerTarget(false) - 1) / blockgen.SeriesPerTarget(false),
		MinTime: end.Add(-24 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(), Replicas: 2, ExternalLabels: map[string]string{"cluster": "bench"}}
	t0 := time.Now()
	blocks, err := blockgen.WriteBucket(ctx, logger, cfg, bkt)
	if err != nil {
		b.Fatal(err)
	}
	genTook := time.Since(t0)
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

	// Store gateway and querier, in process but over gRPC and HTTP.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	store := bucketstore.New(sctx, bucketstore.Config{IndexCacheBytes: 250 << 20, ChunkCacheBytes: 64 << 20, EncodedFrames: true}, bkt, logger, nil)
	if err := store.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer(grpc.MaxSendMsgSize(math.MaxInt32), grpc.ForceServerCodecV2(storeapi.ServerCodec{}))
	store.Register(srv)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	app, flags := component.NewApp("querier", "", true)
	if _, err := app.Parse([]string{"--http-address=127.0.0.1:0", "--grpc-address=127.0.0.1:0", "--log.level=error"}); err != nil {
		b.Fatal(err)
	}
	rt, err := component.New(flags)
	if err != nil {
		b.Fatal(err)
	}
	qr, err := querier.New(querier.Config{Endpoints: []string{l.Addr().String()}, EndpointRefresh: time.Second, ReplicaLabels: []string{"replica"},
		Timeout: 5 * time.Minute, MaxConcurrent: 4, LookbackDelta: 5 * time.Minute, MaxSamples: 500_000_000, PartialResponse: false, DefaultStep: time.Minute,
		VerticalShards: querier.DefaultVerticalShards, ShardConcurrency: querier.DefaultShardConcurrency, ShardMinRange: querier.DefaultShardMinRange,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32))}}, rt)
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = rt.Run(sctx) }()
	for ready, _ := rt.Readiness.Status(); !ready; ready, _ = rt.Readiness.Status() {
		time.Sleep(10 * time.Millisecond) // readiness poll, bounded by the first endpoint refresh
	}
	engine := promql.NewEngine(promql.EngineOpts{Logger: logger, MaxSamples: 500_000_000, Timeout: 5 * time.Minute, LookbackDelta: 5 * time.Minute})

	run := func(e promql.QueryEngine, q storageQueryable, qs string) (time.Duration, error) {
		start := time.Now()
		qry, err := e.NewRangeQuery(ctx, q, nil, qs, end.Add(-24*time.Hour), end, time.Minute)
		if err != nil {
			return 0, err
		}
		defer qry.Close()
		if res := qry.Exec(ctx); res.Err != nil {
			return 0, res.Err
		}
		return time.Since(start), nil
	}
	var rows []string
	rows = append(rows, fmt.Sprintf("%-90s %10s %10s %10s %7s %9s", "query (24h, step 60s)", "local", "cold", "warm", "ratio", "GETs"))
	var localPeak uint64
	for _, qs := range queries {
		localT := best(3, func() (time.Duration, error) { return run(engine, db, qs) })
		localPeak = max(localPeak, peakHeapGrowth(func() { _, _ = run(engine, db, qs) }))
		before := bucketGets(reg)
		cold := best(1, func() (time.Duration, error) { return run(qr.Engine, qr.Queryable, qs) })
		gets := bucketGets(reg) - before
		warm := best(3, func() (time.Duration, error) { return run(qr.Engine, qr.Queryable, qs) })
		rows = append(rows, fmt.Sprintf("%-90s %10s %10s %10s %6.2fx %9.0f", qs, localT.Round(time.Millisecond), cold.Round(time.Millisecond),
			warm.Round(time.Millisecond), float64(warm)/float64(localT), gets))
	}
	// The metadata calls Grafana makes for variables and the query
	// builder: /api/v1/labels, /api/v1/label/<name>/values and
	// /api/v1/series over the same 24h, through the same storage calls.
	mint, maxt := end.Add(-24*time.Hour).UnixMilli(), end.UnixMilli()
	metaCalls := []struct {
		name string
		call func(storage.Querier) (int, error)
	}{
		{"labels (24h)", func(q storage.Querier) (int, error) {
			names, _, err := q.LabelNames(ctx, nil)
			// The bucket's blocks add their external label.
			return len(slices.DeleteFunc(names, func(n string) bool { return n == "cluster" })), err
		}},
		{"label values of instance (24h)", func(q storage.Querier) (int, error) {
			vals, _, err := q.LabelValues(ctx, "instance", nil)
			return len(vals), err
		}},
		{`series {__name__="node_load1"} (24h)`, func(q storage.Querier) (int, error) {
			set := q.Select(ctx, true, &storage.SelectHints{Start: mint, End: maxt, Func: "series"}, labels.MustNewMatcher(labels.MatchEqual, "__name__", "node_load1"))
			n := 0
			for set.Next() {
				n++
			}
			return n, set.Err()
		}},
	}
	for _, mc := range metaCalls {
		var localN, ourN int
		call := func(qa storage.Queryable, n *int) func() (time.Duration, error) {
			return func() (time.Duration, error) {
				t0 := time.Now()
				q, err := qa.Querier(mint, maxt)
				if err != nil {
					return 0, err
				}
				defer q.Close()
				*n, err = mc.call(q)
				return time.Since(t0), err
			}
		}
		localT := best(3, call(db, &localN))
		before := bucketGets(reg)
		cold := best(1, call(qr.Queryable, &ourN))
		gets := bucketGets(reg) - before
		warm := best(3, call(qr.Queryable, &ourN))
		if localN != ourN || localN == 0 {
			b.Fatalf("%s: %d locally, %d through store and querier", mc.name, localN, ourN)
		}
		rows = append(rows, fmt.Sprintf("%-90s %10s %10s %10s %6.2fx %9.0f", mc.name, localT.Round(time.Microsecond), cold.Round(time.Microsecond),
			warm.Round(time.Microsecond), float64(warm)/float64(localT), gets))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	// The same queries through a store gateway and a querier running as
	// processes, over HTTP as Grafana would, for their peak RSS.
	conf := filepath.Join(dir, "objstore.yml")
	if err := os.WriteFile(conf, []byte("type: FILESYSTEM\nconfig:\n  directory: "+filepath.Join(dir, "bucket")+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	storeProc := e2e.StartStrata(b, "store", true, "", "--objstore.config-file="+conf, "--data-dir="+filepath.Join(dir, "store-data"))
	querierProc := e2e.StartStrata(b, "querier", true, "", "--endpoint="+storeProc.GRPCAddr, "--query.replica-label=replica",
		"--endpoint.refresh-interval=1s", "--query.max-samples=500000000")
	api := e2e.NewAPI(b, "http://"+querierProc.HTTPAddr)
	e2e.Eventually(b, time.Minute, 200*time.Millisecond, func() error {
		v, _, _, err := api.Query(ctx, "count(node_load1)", end.Add(-time.Hour))
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) != 1 {
			return fmt.Errorf("querier does not see the store yet: %v", v)
		}
		return nil
	})
	// overHTTP runs the query set once (cold) and returns each query's
	// latency.
	overHTTP := func(api promv1.API, who string) []time.Duration {
		var took []time.Duration
		for _, qs := range queries {
			t0 := time.Now()
			if _, _, _, err := api.QueryRange(ctx, qs, promv1.Range{Start: end.Add(-24 * time.Hour), End: end, Step: time.Minute}); err != nil {
				b.Fatalf("%s over HTTP through %s: %v", qs, who, err)
			}
			took = append(took, time.Since(t0))
		}
		return took
	}
	ours := overHTTP(api, "strata")
	storeRSS, querierRSS := storeProc.PeakRSS(), querierProc.PeakRSS()
	storeProc.Stop()
	querierProc.Stop()

	// Thanos' store gateway and querier (the pinned release, default
	// flags) over the same bucket and queries, for comparison.
	thanos := e2e.ToolBinary(b, "thanos")
	thanosStoreGRPC, thanosQueryHTTP := e2e.FreeAddr(b), e2e.FreeAddr(b)
	thanosStore := e2e.StartProcess(b, "thanos-store", b.TempDir(), nil, thanos, "store", "--objstore.config-file="+conf,
		"--data-dir="+b.TempDir(), "--grpc-address="+thanosStoreGRPC, "--http-address="+e2e.FreeAddr(b), "--log.level=warn")
	thanosQuery := e2e.StartProcess(b, "thanos-query", b.TempDir(), nil, thanos, "query", "--endpoint="+thanosStoreGRPC,
		"--query.replica-label=replica", "--grpc-address="+e2e.FreeAddr(b), "--http-address="+thanosQueryHTTP, "--log.level=warn")
	thanosAPI := e2e.NewAPI(b, "http://"+thanosQueryHTTP)
	e2e.Eventually(b, 2*time.Minute, 200*time.Millisecond, func() error {
		v, _, _, err := thanosAPI.Query(ctx, "count(node_load1)", end.Add(-time.Hour))
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) != 1 {
			return fmt.Errorf("thanos query does not see its store yet: %v", v)
		}
		return nil
	})
	theirs := overHTTP(thanosAPI, "thanos")
	thanosStoreRSS, thanosQueryRSS := thanosStore.PeakRSS(), thanosQuery.PeakRSS()
	thanosStore.Stop()
	thanosQuery.Stop()
	var httpTook, thanosTook time.Duration
	vsThanos := []string{fmt.Sprintf("%-90s %10s %10s %7s", "query, as processes over HTTP, cold", "strata", "thanos", "ratio")}
	for i, qs := range queries {
		httpTook += ours[i]
		thanosTook += theirs[i]
		vsThanos = append(vsThanos, fmt.Sprintf("%-90s %10s %10s %6.2fx", qs, ours[i].Round(time.Millisecond), theirs[i].Round(time.Millisecond), float64(ours[i])/float64(theirs[i])))
	}

	// Compaction throughput over the same bucket.
	samples := blockgen.Samples(blocks)
	c, err := compact.New(compact.Config{DataDir: filepath.Join(dir, "compact"), ReplicaLabels: []string{"replica"}, Downsampling: true}, bkt, logger, nil)
	if err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	if err := c.RunOnce(ctx); err != nil {
		b.Fatal(err)
	}
	compactTook := time.Since(t0)

	// Downsampling throughput: the largest raw block after compaction, to
	// 5m. The compactor only downsamples blocks of 40h or more; the work
	// per sample is the same on a shorter one.
	listing, err := block.NewLister(bkt, 4).List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var biggest *block.Meta
	for _, m := range listing.Metas {
		if m.Thanos.Downsample.Resolution == 0 && (biggest == nil || m.Stats.NumSamples > biggest.Stats.NumSamples) {
			biggest = m
		}
	}
	dsDir := filepath.Join(dir, "downsample")
	if _, err := block.Download(ctx, logger, bkt, biggest.ULID, dsDir); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	if _, err := downsample.Block(ctx, logger, biggest, filepath.Join(dsDir, biggest.ULID.String()), filepath.Join(dsDir, "out"), block.Resolution5m); err != nil {
		b.Fatal(err)
	}
	downsampleTook := time.Since(t0)

	// Shipping throughput: the reference blocks uploaded by the shipper to
	// a real S3 (MinIO on 127.0.0.1).
	minio := e2e.StartMinIO(b)
	shipBkt := minio.NewBucket(b)
	sh := shipper.New(localDir, shipBkt, func() labels.Labels { return labels.FromStrings("replica", "a") }, false, logger, nil)
	t0 = time.Now()
	n, err := sh.Sync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	shipTook := time.Since(t0)
	var shipBytes int64
	if err := shipBkt.Iter(ctx, "", func(name string) error {
		a, err := shipBkt.Attributes(ctx, name)
		shipBytes += a.Size
		return err
	}, objstore.WithRecursiveIter()); err != nil {
		b.Fatal(err)
	}

	fmt.Printf("\nStrata system benchmark: %d series x 24h x 2 replicas, %d samples, %d blocks (blockgen: %s, %.1fM samples/s)\n",
		cfg.SeriesCount(), samples, len(blocks), genTook.Round(time.Millisecond), float64(samples)/genTook.Seconds()/1e6)
	fmt.Println(strings.Join(rows, "\n"))
	fmt.Printf("process heap after the queries (store + querier + local engine in one process): %d MiB\n", ms.HeapInuse>>20)
	fmt.Printf("Prometheus' engine over the local TSDB (one replica, chunks mmapped): largest heap growth during one query %d MiB\n", localPeak>>20)
	fmt.Printf("as processes, the query set over HTTP in %s (cold): store peak RSS %d MiB, querier peak RSS %d MiB\n",
		httpTook.Round(time.Millisecond), storeRSS>>20, querierRSS>>20)
	fmt.Println(strings.Join(vsThanos, "\n"))
	fmt.Printf("Thanos (%s) over the same bucket: the query set in %s (cold), store peak RSS %d MiB, querier peak RSS %d MiB\n",
		thanosVersion(), thanosTook.Round(time.Millisecond), thanosStoreRSS>>20, thanosQueryRSS>>20)
	fmt.Printf("compaction of the 24 2h blocks with offline dedup of the HA pair: %s, %.1fM samples/s\n", compactTook.Round(time.Millisecond), float64(samples)/compactTook.Seconds()/1e6)
	fmt.Printf("downsampling the largest compacted block (%s, %d series, %d samples) to 5m: %s, %.1fM samples/s\n",
		time.Duration(biggest.MaxTime-biggest.MinTime)*time.Millisecond, biggest.Stats.NumSeries, biggest.Stats.NumSamples,
		downsampleTook.Round(time.Millisecond), float64(biggest.Stats.NumSamples)/downsampleTook.Seconds()/1e6)
	fmt.Printf("sidecar shipper: %d blocks, %d MiB in %s, %.0f MiB/s to MinIO (S3) on 127.0.0.1\n", n, shipBytes>>20, shipTook.Round(time.Millisecond), float64(shipBytes)/(1<<20)/shipTook.Seconds())
	fmt.Printf("ran in %s\n", time.Since(began).Round(time.Second))
	b.ReportMetric(float64(samples)/compactTook.Seconds(), "compact-samples/s")
	b.ReportMetric(float64(biggest.Stats.NumSamples)/downsampleTook.Seconds(), "downsample-samples/s")
}

type storageQueryable = storage.Queryable

// peakHeapGrowth runs f and returns how far the live heap grew above what
// it was before, sampled every 2ms.
func peakHeapGrowth(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

func best(n int, f func() (time.Duration, error)) time.Duration {
	var out []time.Duration
	for i := 0; i < n; i++ {
		d, err := f()
		if err != nil {
			panic(err)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out[0]
}

func bucketGets(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	var n float64
	for _, mf := range mfs {
		if !strings.HasSuffix(mf.GetName(), "bucket_operations_total") {
			continue
		}
		for _, m := range mf.Metric {
			if op := label(m, "operation"); op == "get" || op == "get_range" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// thanosVersion is the Thanos release make bench passes on; the binary,
// built from the module cache, carries no version of its own.
func thanosVersion() string {
	if v := os.Getenv("STRATA_THANOS_VERSION"); v != "" {
		return v
	}
	return "the release pinned in the Makefile"
}
