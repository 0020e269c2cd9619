package downsample

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/strata-metrics/strata/pkg/block"
)

type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

func TestAggrChunkEncoding(t *testing.T) {
	var subs [5]chunkenc.Chunk
	for _, at := range []AggrType{AggrCount, AggrSum, AggrCounter} {
		c := chunkenc.NewXORChunk()
		app, _ := c.Appender()
		app.Append(0, 1000, float64(at)+0.5)
		subs[at] = c
	}
	ac := EncodeAggrChunk(subs)
	for at := AggrCount; at < numAggr; at++ {
		c, err := ac.Get(at)
		if subs[at] == nil {
			if err != ErrAggrNotExist {
				t.Fatalf("%s: want ErrAggrNotExist, got %v", at, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", at, err)
		}
		it := c.Iterator(nil)
		if it.Next() != chunkenc.ValFloat {
			t.Fatalf("%s: no sample", at)
		}
		if ts, v := it.At(); ts != 1000 || v != float64(at)+0.5 {
			t.Fatalf("%s: got %d %v", at, ts, v)
		}
	}
	if ac.NumSamples() != 1 {
		t.Fatalf("NumSamples %d", ac.NumSamples())
	}
	// Truncated data is an error, not a panic.
	for n := range len(ac) - 1 {
		if _, err := ac[:n].Get(AggrCounter); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

// genSeries returns raw samples: a counter with resets every ~1000
// samples, scraped every step over span.
func counterSamples(rng *rand.Rand, span, step int64) []chunks.Sample {
	var out []chunks.Sample
	v := 0.0
	for ts := int64(0); ts < span; ts += step {
		if rng.IntN(1000) == 0 {
			v = 0
		}
		v += float64(rng.IntN(50))
		out = append(out, fsample{ts, v})
	}
	return out
}

func readSeries(t *testing.T, dir string) map[string][]chunks.Meta {
	t.Helper()
	b, err := tsdb.OpenBlock(promslog.NewNopLogger(), dir, NewPool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ir, _ := b.Index()
	cr, _ := b.Chunks()
	t.Cleanup(func() { ir.Close(); cr.Close(); b.Close() })
	k, v := index.AllPostingsKey()
	p, _ := ir.Postings(context.Background(), k, v)
	out := map[string][]chunks.Meta{}
	var sb labels.ScratchBuilder
	for p.Next() {
		var chks []chunks.Meta
		if err := ir.Series(p.At(), &sb, &chks); err != nil {
			t.Fatal(err)
		}
		for i := range chks {
			c, _, err := cr.ChunkOrIterable(chks[i])
			if err != nil {
				t.Fatal(err)
			}
			chks[i].Chunk = c
		}
		out[sb.Labels().String()] = chks
	}
	return out
}

func expand(t *testing.T, it chunkenc.Iterator) []sample {
	t.Helper()
	var out []sample
	for it.Next() == chunkenc.ValFloat {
		ts, v := it.At()
		out = append(out, sample{ts, v})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func aggrOf(t *testing.T, chks []chunks.Meta, at AggrType) []sample {
	t.Helper()
	var out []sample
	for _, c := range chks {
		sub, err := c.Chunk.(*AggrChunk).Get(at)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, expand(t, sub.Iterator(nil))...)
	}
	return out
}

// TestBlockAggregates downsamples a 2-day raw block to 5m and the result to
// 1h and checks every aggregate against the raw samples: count, sum, min
// and max per window, and the counter's total increase across resets.
func TestBlockAggregates(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const span = 48 * 3600_000
	raw := map[string][]chunks.Sample{}
	var series []storage.Series
	for i, step := range []int64{15_000, 60_000, 10_000} {
		lset := labels.FromStrings("__name__", "c", "i", string(rune('a'+i)))
		ss := counterSamples(rng, span, step)
		raw[lset.String()] = ss
		series = append(series, storage.NewListSeries(lset, ss))
	}
	tmp := t.TempDir()
	dir, err := tsdb.CreateBlock(series, filepath.Join(tmp, "raw"), 10*span, promslog.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	m, err := block.ReadMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Thanos = block.Thanos{Version: 1, Labels: map[string]string{"a": "b"}}

	for _, res := range []int64{block.Resolution5m, block.Resolution1h} {
		src, srcDir := m, dir
		if res == block.Resolution1h {
			// 1h from the 5m block, as the compactor does.
			if src, err = Block(context.Background(), promslog.NewNopLogger(), m, dir, filepath.Join(tmp, "5m"), block.Resolution5m); err != nil {
				t.Fatal(err)
			}
			srcDir = filepath.Join(tmp, "5m", src.ULID.String())
		}
		nm, err := Block(context.Background(), promslog.NewNopLogger(), src, srcDir, filepath.Join(tmp, "out"), res)
		if err != nil {
			t.Fatal(err)
		}
		if nm.Thanos.Downsample.Resolution != res || nm.MinTime != m.MinTime || nm.MaxTime != m.MaxTime || nm.Stats.NumSeries != 3 {
			t.Fatalf("meta of %dms block: %+v", res, nm)
		}
		got := readSeries(t, filepath.Join(tmp, "out", nm.ULID.String()))
		for name, ss := range raw {
			chks := got[name]
			if len(chks) == 0 {
				t.Fatalf("%s missing at %dms", name, res)
			}
			for _, c := range chks {
				if n := c.Chunk.NumSamples(); n > 145 {
					t.Fatalf("%s: chunk with %d aggregates", name, n)
				}
			}
			counts, sums := aggrOf(t, chks, AggrCount), aggrOf(t, chks, AggrSum)
			mins, maxs := aggrOf(t, chks, AggrMin), aggrOf(t, chks, AggrMax)
			// Expected per window from the raw samples.
			type win struct{ count, sum, min, max float64 }
			want := map[int64]*win{}
			var order []int64
			for _, s := range ss {
				end := windowEnd(s.T(), res)
				w := want[end]
				if w == nil {
					w = &win{min: math.Inf(1), max: math.Inf(-1)}
					want[end] = w
					order = append(order, end)
				}
				w.count++
				w.sum += s.F()
				w.min, w.max = min(w.min, s.F()), max(w.max, s.F())
			}
			if len(counts) != len(order) {
				t.Fatalf("%s at %dms: %d windows, want %d", name, res, len(counts), len(order))
			}
			for i, end := range order {
				w := want[end]
				// A chunk's last window is stamped with its last sample's
				// time, so that chunks never overlap.
				if counts[i].t > end || counts[i].t <= end-res {
					t.Fatalf("%s at %dms: window %d at %d, want %d", name, res, i, counts[i].t, end)
				}
				if counts[i].v != w.count || mins[i].v != w.min || maxs[i].v != w.max || math.Abs(sums[i].v-w.sum) > 1e-9*math.Abs(w.sum) {
					t.Fatalf("%s at %dms window %d: count %v sum %v min %v max %v, want %+v", name, res, i, counts[i].v, sums[i].v, mins[i].v, maxs[i].v, *w)
				}
			}
			// The counter over all chunks, resets applied, ends at the
			// raw series' total increase plus its first value.
			var its []chunkenc.Iterator
			for _, c := range chks {
				sub, _ := c.Chunk.(*AggrChunk).Get(AggrCounter)
				its = append(its, sub.Iterator(nil))
			}
			cs := expand(t, NewCounterIterator(its...))
			total, last := ss[0].F(), ss[0].F()
			for _, s := range ss[1:] {
				if s.F() < last {
					total += s.F()
				} else {
					total += s.F() - last
				}
				last = s.F()
			}
			if got := cs[len(cs)-1].v; got != total {
				t.Fatalf("%s at %dms: counter ends at %v, want %v", name, res, got, total)
			}
			for i := 1; i < len(cs); i++ {
				if cs[i].v < cs[i-1].v || cs[i].t <= cs[i-1].t {
					t.Fatalf("%s at %dms: counter not monotonic at %d: %v then %v", name, res, i, cs[i-1], cs[i])
				}
			}
		}
	}
}
