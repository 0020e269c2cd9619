package compactor_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/test/e2e"
)

// fsBucket writes blockgen history into a new filesystem bucket and returns
// it with its objstore config file.
func fsBucket(t *testing.T, cfg blockgen.Config) (objstore.InstrumentedBucket, string) {
	t.Helper()
	dir := t.TempDir()
	fs, err := filesystem.NewBucket(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	bkt := objstore.WrapWithMetrics(fs, nil, "test")
	if _, err := blockgen.WriteBucket(context.Background(), slog.New(slog.DiscardHandler), cfg, bkt); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "objstore.yml")
	if err := os.WriteFile(conf, []byte("type: FILESYSTEM\nconfig:\n  directory: "+filepath.Join(dir, "bucket")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return bkt, conf
}

// liveByResolution returns the live blocks of a bucket by resolution.
func liveByResolution(t *testing.T, bkt objstore.InstrumentedBucket) map[int64][]*block.Meta {
	t.Helper()
	l, err := block.NewLister(bkt, 8).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]*block.Meta{}
	for id, m := range l.Metas {
		if l.DeletionMarks[id] == nil {
			out[m.Thanos.Downsample.Resolution] = append(out[m.Thanos.Downsample.Resolution], m)
		}
	}
	return out
}

type blockSeries struct {
	lset labels.Labels
	chks []chunks.Meta // times only
	enc  []byte
	data [][]byte
}

// readBlock downloads a block and returns its series with chunk bytes.
func readBlock(t *testing.T, bkt objstore.InstrumentedBucket, m *block.Meta) []blockSeries {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := block.Download(ctx, slog.New(slog.DiscardHandler), bkt, m.ULID, dir); err != nil {
		t.Fatal(err)
	}
	b, err := tsdb.OpenBlock(nil, filepath.Join(dir, m.ULID.String()), downsample.NewPool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ir, _ := b.Index()
	cr, _ := b.Chunks()
	defer func() { ir.Close(); cr.Close(); b.Close() }()
	k, v := index.AllPostingsKey()
	p, err := ir.Postings(ctx, k, v)
	if err != nil {
		t.Fatal(err)
	}
	var out []blockSeries
	var sb labels.ScratchBuilder
	for p.Next() {
		var chks []chunks.Meta
		if err := ir.Series(p.At(), &sb, &chks); err != nil {
			t.Fatal(err)
		}
		bs := blockSeries{lset: sb.Labels(), chks: chks}
		for i := range chks {
			c, _, err := cr.ChunkOrIterable(chks[i])
			if err != nil {
				t.Fatal(err)
			}
			// Copy: the reader's bytes go away when it closes.
			bs.enc = append(bs.enc, byte(c.Encoding()))
			bs.data = append(bs.data, bytes.Clone(c.Bytes()))
		}
		out = append(out, bs)
	}
	return out
}

func sameBlocks(a, b []blockSeries) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d series vs %d", len(a), len(b))
	}
	for i := range a {
		if !labels.Equal(a[i].lset, b[i].lset) {
			return fmt.Errorf("series %d: %s vs %s", i, a[i].lset, b[i].lset)
		}
		if len(a[i].chks) != len(b[i].chks) {
			return fmt.Errorf("%s: %d chunks vs %d", a[i].lset, len(a[i].chks), len(b[i].chks))
		}
		for j := range a[i].chks {
			ca, cb := a[i].chks[j], b[i].chks[j]
			if ca.MinTime != cb.MinTime || ca.MaxTime != cb.MaxTime || a[i].enc[j] != b[i].enc[j] || !bytes.Equal(a[i].data[j], b[i].data[j]) {
				return fmt.Errorf("%s chunk %d differs: [%d,%d] enc %d %d bytes vs [%d,%d] enc %d %d bytes",
					a[i].lset, j, ca.MinTime, ca.MaxTime, a[i].enc[j], len(a[i].data[j]), cb.MinTime, cb.MaxTime, b[i].enc[j], len(b[i].data[j]))
			}
		}
	}
	return nil
}

// TestThanosInterop runs Thanos' compactor and ours over the same 3 days of
// raw 2h blocks, floats and native histograms: both must write a
// byte-identical 5m block. Then Thanos' store gateway serves the bucket our compactor wrote
// and our querier reads the 5m aggregates through it, with the same
// answers as through our store gateway.
func TestThanosInterop(t *testing.T) {
	thanos := e2e.ToolBinary(t, "thanos")
	end := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 33, Targets: 3, MinTime: end - 72*3600_000, MaxTime: end, Replicas: 1, NativeHistograms: true,
		ExternalLabels: map[string]string{"cluster": "interop"}}
	theirs, theirConf := fsBucket(t, cfg)
	ours, ourConf := fsBucket(t, cfg)

	tc := e2e.StartProcess(t, "thanos-compact", t.TempDir(), nil, thanos, "compact", "--objstore.config-file="+theirConf,
		"--data-dir="+t.TempDir(), "--consistency-delay=0s", "--delete-delay=0s", "--http-address="+e2e.FreeAddr(t), "--log.level=warn")
	oc := e2e.StartStrataNoWait(t, "compactor", false, "", "--objstore.config-file="+ourConf, "--data-dir="+t.TempDir(),
		"--consistency-delay=0s", "--delete-delay=0s")
	e2e.Eventually(t, 5*time.Minute, 200*time.Millisecond, func() error {
		if !tc.Exited() || !oc.Exited() {
			return fmt.Errorf("compactors still running (thanos exited: %v, strata exited: %v)", tc.Exited(), oc.Exited())
		}
		return nil
	})

	tb, ob := liveByResolution(t, theirs), liveByResolution(t, ours)
	if len(tb[block.Resolution5m]) != 1 || len(ob[block.Resolution5m]) != 1 {
		t.Fatalf("5m blocks: thanos %d, strata %d; want one each\nthanos:\n%s", len(tb[block.Resolution5m]), len(ob[block.Resolution5m]), tc.Logs())
	}
	t5, o5 := tb[block.Resolution5m][0], ob[block.Resolution5m][0]
	if t5.MinTime != o5.MinTime || t5.MaxTime != o5.MaxTime || fmt.Sprint(t5.Compaction.Sources) != fmt.Sprint(o5.Compaction.Sources) {
		t.Fatalf("5m blocks cover different data: thanos [%d,%d) %v, strata [%d,%d) %v", t5.MinTime, t5.MaxTime, t5.Compaction.Sources, o5.MinTime, o5.MaxTime, o5.Compaction.Sources)
	}
	ourSeries := readBlock(t, ours, o5)
	if err := sameBlocks(readBlock(t, theirs, t5), ourSeries); err != nil {
		t.Fatalf("5m block of Thanos vs ours: %v", err)
	}
	hists := 0
	for _, s := range ourSeries {
		for _, d := range s.data {
			if downsample.AggrChunk(d).IsHistogram() {
				hists++
			}
		}
	}
	if hists == 0 {
		t.Fatal("no native histogram aggregates compared")
	}

	// Thanos' store gateway reads our downsampled block.
	grpcAddr := e2e.FreeAddr(t)
	ts := e2e.StartProcess(t, "thanos-store", t.TempDir(), nil, thanos, "store", "--objstore.config-file="+ourConf,
		"--data-dir="+t.TempDir(), "--grpc-address="+grpcAddr, "--http-address="+e2e.FreeAddr(t), "--log.level=warn")
	_ = ts
	ourStore := e2e.StartStrata(t, "store", true, "", "--objstore.config-file="+ourConf, "--data-dir="+t.TempDir())
	qThanos := e2e.StartStrata(t, "querier", true, "", "--endpoint="+grpcAddr, "--endpoint.refresh-interval=1s")
	qOurs := e2e.StartStrata(t, "querier", true, "", "--endpoint="+ourStore.GRPCAddr, "--endpoint.refresh-interval=1s")
	params := url.Values{"max_source_resolution": {"5m"}}
	viaThanos := e2e.NewAPIWithParams(t, "http://"+qThanos.HTTPAddr, params)
	viaOurs := e2e.NewAPIWithParams(t, "http://"+qOurs.HTTPAddr, params)
	at := time.UnixMilli(o5.MaxTime - 1)
	e2e.Eventually(t, 2*time.Minute, 500*time.Millisecond, func() error {
		v, _, _, err := viaThanos.Query(e2e.QueryContext(t), `count_over_time(node_load1[1h])`, at)
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) != cfg.Targets || vec[0].Value != 12 {
			return fmt.Errorf("count_over_time through Thanos' store = %v, want %d series of 12 5m aggregates", v, cfg.Targets)
		}
		return nil
	})
	for _, q := range []string{
		`max_over_time(node_load1[1h])`,
		`min_over_time(node_load1[3h])`,
		`sum_over_time(node_load1[1h])`,
		`rate(node_cpu_seconds_total[1h])`,
		`avg_over_time(node_memory_MemAvailable_bytes[2h])`,
	} {
		a, _, _, err := viaThanos.Query(e2e.QueryContext(t), q, at)
		if err != nil {
			t.Fatalf("%s through Thanos' store: %v", q, err)
		}
		b, _, _, err := viaOurs.Query(e2e.QueryContext(t), q, at)
		if err != nil {
			t.Fatalf("%s through our store: %v", q, err)
		}
		if a.String() != b.String() || len(a.(model.Vector)) == 0 {
			t.Fatalf("%s: Thanos' store and ours differ:\n%s\n%s", q, a, b)
		}
	}
}
