package querier

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/tsdbstore"
)

var logger = slog.New(slog.DiscardHandler)

// haPair writes 6h of an HA pair with blockgen and returns each replica's
// data directory. skipBlock, if >= 0, leaves that block of replica a out
// (replica a was down then).
func haPair(t *testing.T, end time.Time, skipBlock int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := blockgen.Config{
		Seed: 3, Targets: 4, MinTime: end.Add(-6 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(),
		Replicas: 2, NativeHistograms: true,
	}
	blocks, err := blockgen.WriteDir(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	if skipBlock >= 0 {
		if err := os.RemoveAll(blocks[skipBlock].Dir); err != nil {
			t.Fatal(err)
		}
	}
	// An empty WAL, as a Prometheus data dir has: the read-only DB reads it
	// for queries reaching the head's time range.
	for _, r := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, r, "wal"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "a"), filepath.Join(dir, "b")
}

func openDB(t *testing.T, dir string) *tsdb.DBReadOnly {
	t.Helper()
	db, err := tsdb.OpenDBReadOnly(dir, t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serveStore serves a replica's data over the StoreAPI on 127.0.0.1.
func serveStore(t *testing.T, dir string, ext labels.Labels) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Stop waits for running handlers, so the DB is not closed under one.
	srv := grpc.NewServer(grpc.WaitForHandlers(true))
	tsdbstore.New(openDB(t, dir), ext, math.MinInt64, math.MaxInt64).Register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String(), srv.Stop
}

// startQuerier runs a querier over the endpoints and returns its API client
// and HTTP URL.
func startQuerier(t *testing.T, endpoints ...string) (promv1.API, string) {
	api, url, _ := startQuerierGRPC(t, endpoints...)
	return api, url
}

// startQuerierGRPC also returns the querier's gRPC address.
func startQuerierGRPC(t *testing.T, endpoints ...string) (promv1.API, string, string) {
	t.Helper()
	api, url, grpcAddr, _ := runQuerier(t, endpoints...)
	return api, url, grpcAddr
}

// runQuerier also returns the Querier itself, for tests that use its engine
// and queryable directly.
func runQuerier(t *testing.T, endpoints ...string) (promv1.API, string, string, *Querier) {
	t.Helper()
	app, flags := component.NewApp("querier", "", true)
	if _, err := app.Parse([]string{"--http-address=127.0.0.1:0", "--grpc-address=127.0.0.1:0", "--log.level=error"}); err != nil {
		t.Fatal(err)
	}
	rt, err := component.New(flags)
	if err != nil {
		t.Fatal(err)
	}
	qr, err := New(Config{
		Endpoints: endpoints, EndpointRefresh: time.Second, ReplicaLabels: []string{"replica"},
		Timeout: time.Minute, MaxConcurrent: 4, LookbackDelta: 5 * time.Minute, MaxSamples: 50_000_000,
		PartialResponse: true, DefaultStep: time.Minute,
		VerticalShards: DefaultVerticalShards, ShardConcurrency: DefaultShardConcurrency,
		ShardMinRange: time.Hour,
		DialOptions:   []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + rt.HTTPAddr().String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready, _ := rt.Readiness.Status()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("querier not ready")
		}
		time.Sleep(20 * time.Millisecond) // bounded readiness poll
	}
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c), url, rt.GRPCAddr().String(), qr
}

// localEngine evaluates PromQL over one replica's data, as a single
// Prometheus holding it would.
func localEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
}

// normalise renders a result as sorted lines "labels value@t" without the
// given labels, for comparing ours with Prometheus' engine.
func normalise(v model.Value, drop ...string) string {
	var lines []string
	strip := func(m model.Metric) string {
		m = m.Clone()
		for _, d := range drop {
			delete(m, model.LabelName(d))
		}
		return m.String()
	}
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			if s.Histogram != nil {
				lines = append(lines, fmt.Sprintf("%s %s@%d", strip(s.Metric), s.Histogram, s.Timestamp))
			} else {
				lines = append(lines, fmt.Sprintf("%s %s@%d", strip(s.Metric), s.Value, s.Timestamp))
			}
		}
	case model.Matrix:
		for _, s := range v {
			var b strings.Builder
			for _, p := range s.Values {
				fmt.Fprintf(&b, " %s@%d", p.Value, p.Timestamp)
			}
			for _, p := range s.Histograms {
				fmt.Fprintf(&b, " %s@%d", p.Histogram, p.Timestamp)
			}
			lines = append(lines, strip(s.Metric)+b.String())
		}
	case *model.Scalar:
		lines = append(lines, v.String())
	default:
		lines = append(lines, fmt.Sprint(v))
	}
	sortStrings(lines)
	return strings.Join(lines, "\n")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// promqlToModel runs q on the engine and converts the result through JSON
// shapes the client library understands, via the querier-independent path.
func localQuery(t *testing.T, e *promql.Engine, db *tsdb.DBReadOnly, q string, start, end time.Time, step time.Duration) string {
	t.Helper()
	var (
		qry promql.Query
		err error
	)
	if step == 0 {
		qry, err = e.NewInstantQuery(context.Background(), db, nil, q, start)
	} else {
		qry, err = e.NewRangeQuery(context.Background(), db, nil, q, start, end, step)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("local %s: %v", q, res.Err)
	}
	return normalise(toModel(t, res.Value))
}

func toModel(t *testing.T, v any) model.Value {
	t.Helper()
	conv := func(m labels.Labels) model.Metric {
		out := model.Metric{}
		m.Range(func(l labels.Label) { out[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
		return out
	}
	switch v := v.(type) {
	case promql.Vector:
		out := model.Vector{}
		for _, s := range v {
			ms := &model.Sample{Metric: conv(s.Metric), Timestamp: model.Time(s.T)}
			if s.H != nil {
				ms.Histogram = histToModel(s.H)
			} else {
				ms.Value = model.SampleValue(s.F)
			}
			out = append(out, ms)
		}
		return out
	case promql.Matrix:
		out := model.Matrix{}
		for _, s := range v {
			ss := &model.SampleStream{Metric: conv(s.Metric)}
			for _, p := range s.Floats {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.Time(p.T), Value: model.SampleValue(p.F)})
			}
			for _, p := range s.Histograms {
				ss.Histograms = append(ss.Histograms, model.SampleHistogramPair{Timestamp: model.Time(p.T), Histogram: histToModel(p.H)})
			}
			out = append(out, ss)
		}
		return out
	case promql.Scalar:
		return &model.Scalar{Value: model.SampleValue(v.V), Timestamp: model.Time(v.T)}
	}
	t.Fatalf("unhandled result type %T", v)
	return nil
}

func histToModel(fh *histogram.FloatHistogram) *model.SampleHistogram {
	out := &model.SampleHistogram{Count: model.FloatString(fh.Count), Sum: model.FloatString(fh.Sum)}
	it := fh.AllBucketIterator()
	for it.Next() {
		b := it.At()
		if b.Count == 0 {
			continue
		}
		bound := int32(2)
		if b.LowerInclusive {
			if b.UpperInclusive {
				bound = 3
			} else {
				bound = 1
			}
		} else if b.UpperInclusive {
			bound = 0
		}
		out.Buckets = append(out.Buckets, &model.HistogramBucket{Boundaries: bound,
			Lower: model.FloatString(b.Lower), Upper: model.FloatString(b.Upper), Count: model.FloatString(b.Count)})
	}
	return out
}

// TestResultsOutliveFrameReuse: the buffers received frames are copied into
// are reused by the next query once a query's storage querier is closed.
// Nothing in a result may point into them: a result held while later
// queries overwrite those buffers must not change.
func TestResultsOutliveFrameReuse(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, -1)
	a, _ := serveStore(t, dirA, labels.FromStrings("replica", "a"))
	b, _ := serveStore(t, dirB, labels.FromStrings("replica", "b"))
	_, url, _, qr := runQuerier(t, a, b)
	waitStores(t, url, 2)
	// The options the HTTP API gives a range query at step 5m under
	// auto-downsampling (the default): a fifth of the step, which reads
	// raw blocks only, so frames are pooled as at resolution 0.
	qctx := query.WithOptions(ctx(t), query.Options{Dedup: true, ReplicaLabels: []string{"replica"}, MaxResolution: time.Minute.Milliseconds()})
	run := func(q string, shift time.Duration) *promql.Result {
		t.Helper()
		qry, err := qr.Engine.NewRangeQuery(qctx, qr.Queryable, nil, q, end.Add(-5*time.Hour-shift), end.Add(-time.Minute-shift), 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// Closing the query would return its points to PromQL's pools;
		// the storage querier under it is closed when Exec returns.
		t.Cleanup(qry.Close)
		res := qry.Exec(qctx)
		if res.Err != nil {
			t.Fatalf("%s: %v", q, res.Err)
		}
		return res
	}
	// Every series, floats and native histograms, labels and values.
	first := run(`{__name__=~".+"}`, 0)
	want := first.String()
	if m, ok := first.Value.(promql.Matrix); !ok || len(m) < 100 || m.TotalSamples() == 0 || !strings.Contains(want, "http_request_duration_native_seconds") {
		t.Fatalf("the first query selected too little to prove anything: %T, %d bytes", first.Value, len(want))
	}
	// As much data again, but other chunks, so other bytes land where
	// the first query's frames were; then smaller queries.
	run(`{__name__=~".+"}`, time.Hour)
	for _, q := range []string{`rate(http_requests_total[5m])`, `{__name__=~"node_.+"}`, `http_request_duration_native_seconds`} {
		run(q, 0)
	}
	if got := first.String(); got != want {
		t.Fatal("a result changed when later queries reused the frame buffers of its query")
	}
	// What is kept for the next query shows in the querier's metrics.
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^strata_querier_frame_pool_bytes [1-9]`).Match(body) {
		t.Fatalf("strata_querier_frame_pool_bytes is not positive after queries:\n%s", body)
	}
	local := localEngine()
	if want := localQuery(t, local, openDB(t, dirA), `{__name__=~".+"}`, end.Add(-5*time.Hour), end.Add(-time.Minute), 5*time.Minute); normalise(toModel(t, first.Value), "cluster") != want {
		t.Fatal("the held result differs from Prometheus' over one replica")
	}
}
