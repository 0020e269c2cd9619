package blockgen

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// equalSeriesSets fails t unless got and want hold the same series with
// the same samples, bit for bit.
func equalSeriesSets(t *testing.T, got, want storage.SeriesSet) (series, samples int) {
	t.Helper()
	var git, wit chunkenc.Iterator
	for want.Next() {
		if !got.Next() {
			t.Fatalf("series %s missing", want.At().Labels())
		}
		gs, ws := got.At(), want.At()
		if labels.Compare(gs.Labels(), ws.Labels()) != 0 {
			t.Fatalf("got series %s, want %s", gs.Labels(), ws.Labels())
		}
		git, wit = gs.Iterator(git), ws.Iterator(wit)
		for i := 0; ; i++ {
			wvt, gvt := wit.Next(), git.Next()
			if wvt != gvt {
				t.Fatalf("%s sample %d: value type %v, want %v", ws.Labels(), i, gvt, wvt)
			}
			if wvt == chunkenc.ValNone {
				break
			}
			samples++
			if gt, wt := git.AtT(), wit.AtT(); gt != wt {
				t.Fatalf("%s sample %d: t=%d, want %d", ws.Labels(), i, gt, wt)
			}
			switch wvt {
			case chunkenc.ValFloat:
				_, gv := git.At()
				_, wv := wit.At()
				if math.Float64bits(gv) != math.Float64bits(wv) {
					t.Fatalf("%s sample %d: %v, want %v", ws.Labels(), i, gv, wv)
				}
			case chunkenc.ValHistogram:
				_, gh := git.AtHistogram(nil)
				_, wh := wit.AtHistogram(nil)
				if !gh.Equals(wh) {
					t.Fatalf("%s sample %d: %v, want %v", ws.Labels(), i, gh, wh)
				}
			}
		}
		if err := git.Err(); err != nil {
			t.Fatal(err)
		}
		series++
	}
	if got.Next() {
		t.Fatalf("unexpected series %s", got.At().Labels())
	}
	if got.Err() != nil || want.Err() != nil {
		t.Fatalf("errors: got %v, want %v", got.Err(), want.Err())
	}
	return series, samples
}

func queryBlock(t *testing.T, dir string, mint, maxt int64, ms ...*labels.Matcher) storage.SeriesSet {
	t.Helper()
	b, err := tsdb.OpenBlock(nil, dir, nil, nil)
	if err != nil {
		t.Fatalf("open block %s: %v", dir, err)
	}
	t.Cleanup(func() { b.Close() })
	q, err := tsdb.NewBlockQuerier(b, mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if len(ms) == 0 {
		ms = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")}
	}
	return q.Select(context.Background(), true, nil, ms...)
}

// TestBlocksHoldExactlyTheGeneratedSamples reads every block back through
// a tsdb querier and compares it, sample for sample, with SeriesSet.
func TestBlocksHoldExactlyTheGeneratedSamples(t *testing.T) {
	cfg := testConfig()
	blocks, err := WriteDir(context.Background(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, bi := range blocks {
		m := bi.Meta
		series, samples := equalSeriesSets(t,
			queryBlock(t, bi.Dir, m.MinTime, m.MaxTime-1),
			SeriesSet(cfg, bi.Replica, m.MinTime, m.MaxTime-1))
		if uint64(series) != m.Stats.NumSeries || uint64(samples) != m.Stats.NumSamples {
			t.Fatalf("block %s: read %d series and %d samples, meta says %d and %d", m.ULID, series, samples, m.Stats.NumSeries, m.Stats.NumSamples)
		}
		total += m.Stats.NumSamples
	}
	if total != Samples(blocks) || total == 0 {
		t.Fatalf("samples: %d, Samples says %d", total, Samples(blocks))
	}

	// Matchers and a time range inside one block select the same subset.
	bi := blocks[len(blocks)-1]
	mint, maxt := bi.Meta.MinTime+10*time.Minute.Milliseconds(), bi.Meta.MinTime+20*time.Minute.Milliseconds()
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_request_duration_seconds_bucket"),
		labels.MustNewMatcher(labels.MatchEqual, "instance", "host-00001:8080"),
	}
	series, samples := equalSeriesSets(t, queryBlock(t, bi.Dir, mint, maxt, ms...), SeriesSet(cfg, bi.Replica, mint, maxt, ms...))
	if series != 2*(len(bucketBounds)+1) || samples < series*39 || samples > series*41 {
		t.Fatalf("10m of one target's buckets: %d series, %d samples", series, samples)
	}
}

func TestSeriesSetSeek(t *testing.T) {
	cfg := testConfig()
	ss := SeriesSet(cfg, 1, cfg.MinTime, cfg.MaxTime, labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_request_duration_native_seconds"))
	if !ss.Next() {
		t.Fatalf("no native histogram series: %v", ss.Err())
	}
	it := ss.At().Iterator(nil)
	target := cfg.MinTime + time.Hour.Milliseconds()
	if vt := it.Seek(target); vt != chunkenc.ValHistogram {
		t.Fatalf("seek returned %v", vt)
	}
	ts, h := it.AtHistogram(nil)
	if ts < target || ts >= target+15000+maxJitterMs {
		t.Fatalf("seek to %d landed at %d", target, ts)
	}
	if err := h.Validate(); err != nil || h.Count == 0 {
		t.Fatalf("histogram %v: %v", h, err)
	}
	var sum uint64
	for it := h.CumulativeBucketIterator(); it.Next(); {
		sum = it.At().Count
	}
	if sum != h.Count {
		t.Fatalf("buckets add up to %d, count is %d", sum, h.Count)
	}
}

// TestParallelEncodingWritesSameBytes checks the multi-worker path (one
// block, several batches of series) against the single-worker one.
func TestParallelEncodingWritesSameBytes(t *testing.T) {
	cfg := testConfig()
	cfg.Targets = 30 // ~1500 series: several batches
	cfg.Replicas, cfg.Outages = 1, nil
	cfg.MinTime = cfg.MaxTime - time.Hour.Milliseconds()
	var files [2]map[string][]byte
	for i, conc := range []int{1, 3} {
		cfg.Concurrency = conc
		dir := t.TempDir()
		blocks, err := WriteDir(context.Background(), cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != 1 {
			t.Fatalf("%d blocks", len(blocks))
		}
		files[i] = map[string][]byte{}
		for _, rel := range []string{"index", "chunks/000001", "meta.json"} {
			b, err := os.ReadFile(filepath.Join(blocks[0].Dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			files[i][rel] = b
		}
	}
	for rel, b := range files[0] {
		if string(b) != string(files[1][rel]) {
			t.Errorf("%s differs between 1 and 3 workers", rel)
		}
	}
	if n := len(files[0]["index"]); n < 1000 {
		t.Fatalf("index of %d bytes", n)
	}
}

// TestCPUModesAddUpToOneCore: like /proc/stat, a cpu's modes add up to one
// second per second, whatever the scrape interval.
func TestCPUModesAddUpToOneCore(t *testing.T) {
	for _, iv := range []time.Duration{15 * time.Second, time.Minute} {
		cfg := testConfig()
		cfg.ScrapeInterval = iv
		cfg.MinTime = cfg.MaxTime - time.Hour.Milliseconds()
		ss := SeriesSet(cfg, 0, cfg.MinTime, cfg.MaxTime,
			labels.MustNewMatcher(labels.MatchEqual, "__name__", "node_cpu_seconds_total"),
			labels.MustNewMatcher(labels.MatchEqual, "instance", "host-00002:9100"))
		// Per cpu: the modes' increases between the first and last scrape.
		type span struct {
			t0, t1 int64
			inc    float64
			modes  int
			reset  bool
		}
		cpus := map[string]*span{}
		for ss.Next() {
			s := ss.At()
			c := cpus[s.Labels().Get("cpu")]
			if c == nil {
				c = &span{}
				cpus[s.Labels().Get("cpu")] = c
			}
			it := s.Iterator(nil)
			var first, last, prev float64
			n := 0
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if n == 0 {
					first, c.t0 = v, ts
				} else if v < prev {
					c.reset = true
				}
				last, prev, c.t1 = v, v, ts
				n++
			}
			c.inc += last - first
			c.modes++
		}
		if len(cpus) != 2 {
			t.Fatalf("%v: %d cpus", iv, len(cpus))
		}
		for cpu, c := range cpus {
			if c.reset || c.modes != 4 {
				t.Fatalf("%v cpu %s: %d modes, reset %v", iv, cpu, c.modes, c.reset)
			}
			if perSec := c.inc / (float64(c.t1-c.t0) / 1000); math.Abs(perSec-1) > 0.005 {
				t.Errorf("%v cpu %s: modes add up to %.4f s/s, want 1", iv, cpu, perSec)
			}
		}
	}
}

func TestSeriesSetErrors(t *testing.T) {
	cfg := testConfig()
	for _, tc := range []struct {
		name    string
		replica int
		change  func(*Config)
	}{
		{name: "replica out of range", replica: 2, change: func(*Config) {}},
		{name: "invalid config", change: func(c *Config) { c.Targets = 0 }},
	} {
		c := cfg
		tc.change(&c)
		ss := SeriesSet(c, tc.replica, c.MinTime, c.MaxTime)
		if ss.Next() || ss.Err() == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	// A range outside the data selects nothing.
	if ss := SeriesSet(cfg, 0, cfg.MaxTime, cfg.MaxTime+3600_000); ss.Next() || ss.Err() != nil {
		t.Fatalf("series after MaxTime: err %v", ss.Err())
	}
}
