package dedup

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

type fs struct {
	t int64
	f float64
}

func (s fs) T() int64                      { return s.t }
func (s fs) ST() int64                     { return 0 }
func (s fs) F() float64                    { return s.f }
func (s fs) H() *histogram.Histogram       { return nil }
func (s fs) FH() *histogram.FloatHistogram { return nil }
func (s fs) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fs) Copy() chunks.Sample           { return s }

// scrapes returns samples every 15s from start to end (exclusive) shifted by
// jitter ms, with values from val.
func scrapes(start, end, jitter int64, val func(i int) float64) []fs {
	var out []fs
	for i, t := 0, start; t < end; i, t = i+1, t+15000 {
		out = append(out, fs{t + jitter, val(i)})
	}
	return out
}

func series(samples []fs) storage.Series {
	s := make([]chunks.Sample, len(samples))
	for i := range samples {
		s[i] = samples[i]
	}
	return storage.NewListSeries(labels.FromStrings("__name__", "m"), s)
}

func drain(t *testing.T, it chunkenc.Iterator) []fs {
	t.Helper()
	var out []fs
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			t.Fatalf("unexpected value type %v", vt)
		}
		ts, v := it.At()
		out = append(out, fs{ts, v})
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	return out
}

func merged(counter bool, reps ...[]fs) storage.Series {
	ss := make([]storage.Series, len(reps))
	for i, r := range reps {
		ss[i] = series(r)
	}
	return MergeFunc(counter)(ss...)
}

func equal(a, b []fs) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func without(s []fs, from, to int64) []fs {
	var out []fs
	for _, x := range s {
		if x.t < from || x.t >= to {
			out = append(out, x)
		}
	}
	return out
}

func TestDedup(t *testing.T) {
	count := func(i int) float64 { return float64(10 * i) }
	a := scrapes(0, 600_000, 0, count)
	b := scrapes(0, 600_000, 3, func(i int) float64 { return float64(10*i) - 1 }) // 3ms later, a bit behind
	gapA := without(a, 150_000, 300_000)

	for _, tc := range []struct {
		name    string
		counter bool
		reps    [][]fs
		check   func(t *testing.T, out []fs)
	}{
		{"identical replicas give one replica", false, [][]fs{a, a}, func(t *testing.T, out []fs) {
			if !equal(out, a) {
				t.Fatalf("got %v", out)
			}
		}},
		{"jittered replica: stay on the first", false, [][]fs{a, b}, func(t *testing.T, out []fs) {
			if !equal(out, a) {
				t.Fatalf("got %v", out)
			}
		}},
		{"the first replica is preferred when both have the first scrape", false, [][]fs{b, a}, func(t *testing.T, out []fs) {
			if !equal(out, b) {
				t.Fatalf("got %v", out)
			}
		}},
		{"gap in a filled from b, then stay on b", false, [][]fs{gapA, b}, func(t *testing.T, out []fs) {
			// Until the gap: a. From the gap on: b, exactly.
			want := append(without(a, 150_000, 1<<62), without(b, 0, 150_000)...)
			if !equal(out, want) {
				t.Fatalf("got  %v\nwant %v", out, want)
			}
		}},
		{"counter: switch to a replica behind shows no drop", true, [][]fs{gapA, b}, func(t *testing.T, out []fs) {
			for i := 1; i < len(out); i++ {
				if out[i].f < out[i-1].f {
					t.Fatalf("counter dropped at %d: %v -> %v", out[i].t, out[i-1].f, out[i].f)
				}
			}
			if len(out) != 10+30 {
				t.Fatalf("%d samples", len(out))
			}
		}},
		{"counter: a real reset in the replica passes through", true, [][]fs{
			without(a, 150_000, 1<<62),
			scrapes(0, 600_000, 3, func(i int) float64 {
				if i >= 20 {
					return float64(i - 20) // reset at 300s
				}
				return float64(10*i) - 1
			}),
		}, func(t *testing.T, out []fs) {
			drops := 0
			for i := 1; i < len(out); i++ {
				if out[i].f < out[i-1].f {
					drops++
					if out[i].t != 300_003 || out[i].f != 0 {
						t.Fatalf("unexpected drop at %d to %v", out[i].t, out[i].f)
					}
				}
			}
			if drops != 1 {
				t.Fatalf("want the one real reset, got %d drops: %v", drops, out)
			}
		}},
		{"three replicas, two with gaps", false, [][]fs{gapA, without(b, 100_000, 400_000), scrapes(0, 600_000, 5, count)}, func(t *testing.T, out []fs) {
			for i := 1; i < len(out); i++ {
				if d := out[i].t - out[i-1].t; d > 30_000 {
					t.Fatalf("gap of %dms left at %d", d, out[i].t)
				}
			}
			if out[len(out)-1].t < 585_000 {
				t.Fatalf("ends early at %d", out[len(out)-1].t)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, drain(t, merged(tc.counter, tc.reps...).Iterator(nil)))
		})
	}
}

// TestSeekMatchesNext checks that Seek lands where iterating with Next does.
func TestSeekMatchesNext(t *testing.T) {
	a := without(scrapes(0, 600_000, 0, func(i int) float64 { return float64(i) }), 150_000, 300_000)
	b := scrapes(0, 600_000, 3, func(i int) float64 { return float64(i) + 0.5 })
	s := merged(false, a, b)
	all := drain(t, s.Iterator(nil))
	for _, target := range []int64{-5, 0, 1, 15_000, 150_000, 200_000, 299_999, 450_003, 599_000, 700_000} {
		it := s.Iterator(nil)
		vt := it.Seek(target)
		var want *fs
		for i := range all {
			if all[i].t >= target {
				want = &all[i]
				break
			}
		}
		if want == nil {
			if vt != chunkenc.ValNone {
				t.Fatalf("Seek(%d) found a sample past the end", target)
			}
			continue
		}
		ts, v := it.At()
		if vt != chunkenc.ValFloat || ts != want.t || v != want.f {
			t.Fatalf("Seek(%d) = %d %v, want %d %v", target, ts, v, want.t, want.f)
		}
		// Seeking backwards stays put.
		if it.Seek(target-100_000) != chunkenc.ValFloat || it.AtT() != ts {
			t.Fatalf("Seek backwards moved the iterator")
		}
	}
}

func BenchmarkDedupIterator(b *testing.B) {
	const n = 1_000_000
	ra := scrapes(0, n*15000, 0, func(i int) float64 { return float64(i) })
	rb := scrapes(0, n*15000, 3, func(i int) float64 { return float64(i) })
	s := merged(true, ra, rb)
	var it chunkenc.Iterator
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		it = s.Iterator(it)
		c := 0
		for it.Next() != chunkenc.ValNone {
			c++
		}
		if c != n {
			b.Fatalf("%d samples", c)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
}

// TestStaleMarkers: when a scraped process dies, a replica writes a
// staleness marker, and the counter restarts low. The marker comes out of
// dedup bit for bit (PromQL drops it from ranges only if it is exactly
// StaleNaN), and the restart stays a reset for rate() and resets(), with
// and without the counter adjustment.
func TestStaleMarkers(t *testing.T) {
	stale := math.Float64frombits(value.StaleNaN)
	// Replica a: values until the process dies at 60s, then nothing until
	// it scrapes the restarted process at 120s. Replica b, a little later
	// in each scrape, writes the staleness marker at 75s and has the
	// restarted process from 105s.
	a := []fs{{0, 100}, {15000, 110}, {30000, 120}, {45000, 130}, {120000, 8}, {135000, 12}}
	b := []fs{{3, 99}, {15003, 109}, {30003, 119}, {45003, 129}, {75003, stale}, {105003, 5}, {120003, 9}, {135003, 13}}
	for _, counter := range []bool{false, true} {
		out := drain(t, merged(counter, a, b).Iterator(nil))
		sawStale, resets := false, 0
		prev := math.NaN()
		for _, s := range out {
			if math.IsNaN(s.f) {
				if !value.IsStaleNaN(s.f) {
					t.Fatalf("counter=%v: a NaN that is not the staleness marker at %d: %v", counter, s.t, out)
				}
				sawStale = true
				continue
			}
			if !math.IsNaN(prev) && s.f < prev {
				resets++
			}
			prev = s.f
		}
		if !sawStale || resets != 1 {
			t.Fatalf("counter=%v: staleness marker kept %v, %d resets (want 1): %v", counter, sawStale, resets, out)
		}
	}
}

// hs is a histogram sample.
type hs struct {
	t int64
	h *histogram.Histogram
}

func (s hs) T() int64                      { return s.t }
func (s hs) ST() int64                     { return 0 }
func (s hs) F() float64                    { return 0 }
func (s hs) H() *histogram.Histogram       { return s.h }
func (s hs) FH() *histogram.FloatHistogram { return nil }
func (s hs) Type() chunkenc.ValueType      { return chunkenc.ValHistogram }
func (s hs) Copy() chunks.Sample           { return hs{s.t, s.h.Copy()} }

// fhs is a float histogram sample.
type fhs struct {
	t  int64
	fh *histogram.FloatHistogram
}

func (s fhs) T() int64                      { return s.t }
func (s fhs) ST() int64                     { return 0 }
func (s fhs) F() float64                    { return 0 }
func (s fhs) H() *histogram.Histogram       { return nil }
func (s fhs) FH() *histogram.FloatHistogram { return s.fh }
func (s fhs) Type() chunkenc.ValueType      { return chunkenc.ValFloatHistogram }
func (s fhs) Copy() chunks.Sample           { return fhs{s.t, s.fh.Copy()} }

// TestFastPathMatchesGeneral: random replicas with gaps, jitter, counter
// resets, staleness markers and native histograms (also mixed with floats
// in one series) come out bit for bit the same through the inlined path as
// through the general one, counter reset hints included.
func TestFastPathMatchesGeneral(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		reps := make([][]chunks.Sample, 2+rng.IntN(2))
		hists := round%3 == 1
		for i := range reps {
			v := 0.0
			for ts := int64(0); ts < 3_600_000; ts += 15000 {
				if rng.IntN(20) == 0 {
					ts += int64(rng.IntN(12)) * 15000 // a gap
				}
				at := ts + int64(rng.IntN(200))
				switch rng.IntN(40) {
				case 0:
					v = 0 // the process restarted
				case 1:
					reps[i] = append(reps[i], fs{at, math.Float64frombits(value.StaleNaN)})
					continue
				}
				v += rng.Float64() * 10
				if hists && rng.IntN(5) > 0 {
					hint := histogram.CounterResetHint(rng.IntN(4))
					if rng.IntN(2) == 0 {
						reps[i] = append(reps[i], hs{at, &histogram.Histogram{Count: uint64(v), Sum: v, CounterResetHint: hint,
							PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(v)}}})
					} else {
						reps[i] = append(reps[i], fhs{at, &histogram.FloatHistogram{Count: v, Sum: v, CounterResetHint: hint,
							PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []float64{v}}})
					}
					continue
				}
				reps[i] = append(reps[i], fs{at, v})
			}
		}
		for _, counter := range []bool{false, true} {
			// Each iterator gets its own copies: dedup may change a
			// histogram's hint in place.
			ss := func() []storage.Series {
				out := make([]storage.Series, len(reps))
				for i, r := range reps {
					cp := make([]chunks.Sample, len(r))
					for j, x := range r {
						cp[j] = x.Copy()
					}
					out[i] = storage.NewListSeries(labels.FromStrings("__name__", "m"), cp)
				}
				return out
			}
			fast := MergeFunc(counter)(ss()...).Iterator(nil)
			slow := MergeFunc(counter)(ss()...).Iterator(nil).(*Iterator)
			slow.noFastPath = true
			for n := 0; ; n++ {
				fv, sv := fast.Next(), slow.Next()
				if fv != sv {
					t.Fatalf("round %d counter %v sample %d: type %v on the fast path, %v on the general one", round, counter, n, fv, sv)
				}
				switch fv {
				case chunkenc.ValFloat:
					ft, ff := fast.At()
					st, sf := slow.At()
					if ft != st || math.Float64bits(ff) != math.Float64bits(sf) {
						t.Fatalf("round %d counter %v sample %d: %d %v on the fast path, %d %v on the general one", round, counter, n, ft, ff, st, sf)
					}
				case chunkenc.ValHistogram:
					ft, fh := fast.AtHistogram(nil)
					st, sh := slow.AtHistogram(nil)
					if ft != st || fh.String() != sh.String() || fh.CounterResetHint != sh.CounterResetHint {
						t.Fatalf("round %d sample %d: %d %v (hint %v) on the fast path, %d %v (hint %v) on the general one", round, n, ft, fh, fh.CounterResetHint, st, sh, sh.CounterResetHint)
					}
				case chunkenc.ValFloatHistogram:
					ft, fh := fast.AtFloatHistogram(nil)
					st, sh := slow.AtFloatHistogram(nil)
					if ft != st || fh.String() != sh.String() || fh.CounterResetHint != sh.CounterResetHint {
						t.Fatalf("round %d sample %d: %d %v (hint %v) on the fast path, %d %v (hint %v) on the general one", round, n, ft, fh, fh.CounterResetHint, st, sh, sh.CounterResetHint)
					}
				}
				if fv == chunkenc.ValNone {
					break
				}
			}
		}
	}
}
