// Package sidecar_test runs the sidecar against a real Prometheus and a real
// MinIO.
package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/shipper"
	"github.com/strata-metrics/strata/pkg/storeapi"
	"github.com/strata-metrics/strata/test/e2e"
)

func TestSidecarShipsAndServes(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	data := t.TempDir()
	blocks, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 9, Targets: 3, MinTime: end.Add(-6 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(), NativeHistograms: true}, data)
	if err != nil {
		t.Fatal(err)
	}
	prom := e2e.StartPrometheus(t, e2e.PrometheusOptions{DataDir: data, BlockDuration: 2 * time.Hour,
		ExternalLabels: map[string]string{"cluster": "e2e", "replica": "a"}})
	minio := e2e.StartMinIO(t)
	bkt := minio.NewBucket(t)
	cfgFile := filepath.Join(t.TempDir(), "objstore.yml")
	if err := os.WriteFile(cfgFile, []byte(minio.ObjstoreConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--prometheus.url=" + prom.URL, "--tsdb.path=" + data, "--objstore.config-file=" + cfgFile, "--sync-interval=1s"}
	sc := e2e.StartStrata(t, "sidecar", true, "", args...)

	// Every generated block arrives, chunks and index byte-identical, with
	// the thanos section.
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		for _, b := range blocks {
			if ok, err := bkt.Exists(ctx, b.Meta.ULID.String()+"/meta.json"); err != nil || !ok {
				return fmt.Errorf("block %s not shipped yet (%v)", b.Meta.ULID, err)
			}
		}
		return nil
	})
	dl := t.TempDir()
	uploadTimes := map[string]time.Time{}
	for _, b := range blocks {
		m, err := block.Download(ctx, logger, bkt, b.Meta.ULID, dl)
		if err != nil {
			t.Fatal(err)
		}
		if m.Thanos.Source != block.SourceSidecar || m.Thanos.Labels["cluster"] != "e2e" || m.Thanos.Labels["replica"] != "a" || m.Thanos.Downsample.Resolution != 0 {
			t.Fatalf("block %s meta: %+v", m.ULID, m.Thanos)
		}
		uploadTimes[m.ULID.String()] = m.Thanos.UploadTime
		for _, rel := range []string{"index", "chunks/000001"} {
			want, _ := os.ReadFile(filepath.Join(b.Dir, rel))
			got, err := os.ReadFile(filepath.Join(dl, m.ULID.String(), rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("block %s %s differs in the bucket", m.ULID, rel)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, shipper.StateFilename)); err != nil {
		t.Fatalf("no shipper state file: %v", err)
	}

	// Killed and restarted, the sidecar uploads nothing twice.
	sc.Kill()
	sc.Restart()
	e2e.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		resp, err := httpGet("http://" + sc.HTTPAddr + "/metrics")
		if err != nil {
			return err
		}
		if !bytes.Contains(resp, []byte("strata_shipper_upload_failures_total 0")) {
			return fmt.Errorf("shipper metrics not there yet")
		}
		return nil
	})
	// The sidecar leaves Prometheus the cores: one unless GOMAXPROCS
	// says otherwise (the test's environment sets none).
	if m, err := httpGet("http://" + sc.HTTPAddr + "/metrics"); err != nil || !bytes.Contains(m, []byte("\ngo_sched_gomaxprocs_threads 1\n")) {
		t.Fatalf("the sidecar does not run on one core (%v)", err)
	}
	for id, ut := range uploadTimes {
		m, err := block.ReadMetaFromBucket(ctx, bkt, mustULID(t, id))
		if err != nil || !m.Thanos.UploadTime.Equal(ut) {
			t.Fatalf("block %s uploaded again after restart (%v)", id, err)
		}
	}

	// The StoreAPI answers what Prometheus answers.
	conn, err := grpc.NewClient(sc.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := infopb.NewInfoClient(conn).Info(ctx, &infopb.InfoRequest{})
	if err != nil || info.Store == nil || info.Store.MinTime > blocks[0].Meta.MinTime || info.ComponentType != "sidecar" {
		t.Fatalf("Info: %v %v", info, err)
	}
	mint, maxt := end.Add(-6*time.Hour).UnixMilli(), end.UnixMilli()
	store := storepb.NewStoreClient(conn)
	// One series per message, and batches of series built by hand (the
	// querier's way of asking).
	for _, c := range []struct {
		metric string
		batch  int64
	}{{"node_load1", 0}, {"http_request_duration_native_seconds", 0}, {"node_load1", 64}, {"http_request_duration_native_seconds", 64}} {
		metric := c.metric
		got := seriesSamples(t, store, metric, mint, maxt, c.batch)
		v, _, _, err := prom.API(t).Query(e2e.QueryContext(t), fmt.Sprintf("%s[%ds]", metric, (maxt-mint)/1000), end)
		if err != nil {
			t.Fatal(err)
		}
		want := v.(model.Matrix)
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("%s: Prometheus has %d series, the sidecar %d", metric, len(want), len(got))
		}
		for _, s := range want {
			s.Metric["cluster"], s.Metric["replica"] = "e2e", "a"
			g, ok := got[s.Metric.String()]
			if !ok {
				t.Fatalf("%s: the sidecar has no series %s", metric, s.Metric)
			}
			// Prometheus' range selector excludes the left edge.
			if len(g.floats) > 0 && g.floats[0].Timestamp == model.Time(mint) {
				g.floats = g.floats[1:]
			}
			if len(g.hists) > 0 && g.hists[0].Timestamp == model.Time(mint) {
				g.hists = g.hists[1:]
			}
			if len(g.floats) != len(s.Values) || len(g.hists) != len(s.Histograms) {
				t.Fatalf("%s: sidecar %d floats and %d histograms, Prometheus %d and %d", s.Metric, len(g.floats), len(g.hists), len(s.Values), len(s.Histograms))
			}
			for i := range g.floats {
				if g.floats[i] != s.Values[i] {
					t.Fatalf("%s sample %d: sidecar %v, Prometheus %v", s.Metric, i, g.floats[i], s.Values[i])
				}
			}
			for i := range g.hists {
				if !g.hists[i].Equal(&s.Histograms[i]) {
					t.Fatalf("%s histogram %d: sidecar %v, Prometheus %v", s.Metric, i, g.hists[i], s.Histograms[i])
				}
			}
		}
		if metric == "http_request_duration_native_seconds" {
			n := 0
			for _, g := range got {
				n += len(g.hists)
			}
			if n == 0 {
				t.Fatalf("%s: no native histogram samples came through", metric)
			}
		}
	}

	// limit stops the stream after that many series, batched or not,
	// while Prometheus is still sending: the sidecar stops reading and
	// serves the next request (it crashed when its reader outlived the
	// request).
	for i, batch := range []int64{0, 64, 64, 64, 64, 64, 0} {
		stream, err := store.Series(context.Background(), &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, ResponseBatchSize: batch, Limit: 2,
			Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n += len(r.GetBatch().GetSeries())
			if r.GetSeries() != nil {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("limit 2, batch %d (request %d): %d series", batch, i, n)
		}
	}
	// Shards: the sidecar reads everything from Prometheus and keeps one
	// shard's series, on both its paths (batched frames built by hand,
	// or messages). The shards partition the series.
	all := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}
	whole := seriesLabels(t, store, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, Matchers: all})
	for _, batch := range []int64{0, 64} {
		seen := map[string]bool{}
		for i := range int64(3) {
			shard := &storepb.ShardInfo{ShardIndex: i, TotalShards: 3, Labels: []string{"__name__", "replica"}}
			m, _ := storeapi.NewShardMatcher(shard)
			got := seriesLabels(t, store, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, Matchers: all, ResponseBatchSize: batch, ShardInfo: shard})
			if len(got) == 0 {
				t.Fatalf("batch %d: shard %d is empty: the case proves nothing", batch, i)
			}
			for _, l := range got {
				if !m.Matches(l) || seen[l.String()] {
					t.Fatalf("batch %d: shard %d sent %s: not in the shard, or in another one too", batch, i, l)
				}
				seen[l.String()] = true
			}
		}
		if len(seen) != len(whole) {
			t.Fatalf("batch %d: the shards hold %d series, the whole request %d", batch, len(seen), len(whole))
		}
	}
}

// seriesLabels reads the label sets of a Series request's answer.
func seriesLabels(t *testing.T, store storepb.StoreClient, req *storepb.SeriesRequest) []labels.Labels {
	t.Helper()
	var (
		out []labels.Labels
		sb  labels.ScratchBuilder
	)
	eachSeries(t, store, req, func(s *storepb.Series) { out = append(out, storeapi.LabelsFromProto(&sb, s.Labels)) })
	return out
}

// eachSeries calls fn with every series of a Series request's answer,
// batched or not.
func eachSeries(t *testing.T, store storepb.StoreClient, req *storepb.SeriesRequest, fn func(*storepb.Series)) {
	t.Helper()
	stream, err := store.Series(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		batch := r.GetBatch().GetSeries()
		if s := r.GetSeries(); s != nil {
			batch = append(batch, s)
		}
		for _, s := range batch {
			fn(s)
		}
	}
}

// samples of one series as read from the StoreAPI.
type samples struct {
	floats []model.SamplePair
	hists  []model.SampleHistogramPair
}

// seriesSamples reads every series of metric in [mint, maxt] from the
// StoreAPI, decoding float and native histogram chunks alike.
func seriesSamples(t *testing.T, store storepb.StoreClient, metric string, mint, maxt, batch int64) map[string]*samples {
	t.Helper()
	got := map[string]*samples{}
	eachSeries(t, store, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, ResponseBatchSize: batch,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: metric}}},
		func(s *storepb.Series) { addSeries(t, got, s, mint, maxt) })
	return got
}

// addSeries decodes one series' samples into got.
func addSeries(t *testing.T, got map[string]*samples, s *storepb.Series, mint, maxt int64) {
	t.Helper()
	m := model.Metric{}
	for _, l := range s.Labels {
		m[model.LabelName(l.Name)] = model.LabelValue(l.Value)
	}
	out := &samples{}
	got[m.String()] = out
	for _, c := range s.Chunks {
		enc := map[storepb.Chunk_Encoding]chunkenc.Encoding{storepb.Chunk_XOR: chunkenc.EncXOR,
			storepb.Chunk_HISTOGRAM: chunkenc.EncHistogram, storepb.Chunk_FLOAT_HISTOGRAM: chunkenc.EncFloatHistogram}[c.Raw.Type]
		chk, err := chunkenc.FromData(enc, c.Raw.Data)
		if err != nil {
			t.Fatalf("%s: chunk of type %v: %v", m, c.Raw.Type, err)
		}
		it := chk.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			ts := it.AtT()
			if ts < mint || ts > maxt {
				continue
			}
			switch vt {
			case chunkenc.ValFloat:
				_, v := it.At()
				out.floats = append(out.floats, model.SamplePair{Timestamp: model.Time(ts), Value: model.SampleValue(v)})
			case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
				_, fh := it.AtFloatHistogram(nil)
				out.hists = append(out.hists, model.SampleHistogramPair{Timestamp: model.Time(ts), Histogram: modelHistogram(fh)})
			}
		}
	}
}

// modelHistogram is h as Prometheus' JSON API writes it: every non-empty
// bucket with its boundaries rule.
func modelHistogram(h *histogram.FloatHistogram) *model.SampleHistogram {
	out := &model.SampleHistogram{Count: model.FloatString(h.Count), Sum: model.FloatString(h.Sum)}
	it := h.AllBucketIterator()
	for it.Next() {
		b := it.At()
		if b.Count == 0 {
			continue
		}
		// 0: (lower, upper], 1: [lower, upper), 2: (lower, upper), 3: [lower, upper].
		var boundaries int32 = 2
		switch {
		case b.LowerInclusive && b.UpperInclusive:
			boundaries = 3
		case b.LowerInclusive:
			boundaries = 1
		case b.UpperInclusive:
			boundaries = 0
		}
		out.Buckets = append(out.Buckets, &model.HistogramBucket{Boundaries: boundaries,
			Lower: model.FloatString(b.Lower), Upper: model.FloatString(b.Upper), Count: model.FloatString(b.Count)})
	}
	return out
}
