package blockgen

import (
	"fmt"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// sampleGen yields the samples one replica scraped of one series in
// [mint, maxt), in time order. It is the single source of the data: the
// block writer encodes what it yields and SeriesSet hands it to tests, so
// what tests expect is by construction what the blocks hold.
type sampleGen struct {
	seed       uint64
	iv         int64
	replica    int
	d          *seriesDef
	k          int64 // next nominal scrape
	mint, maxt int64
	phase      int64 // the target's scrape phase
	jitterSpan uint64
	outages    []Outage // of this replica, overlapping [mint, maxt)

	// The buckets of a classic histogram are adjacent in label order and
	// share one request counter: the first bucket's counter values are
	// kept and replayed for the rest, which halves the cost of histograms.
	shared       sharedCounter
	sharedFilled bool // shared holds this series' counter values
	n            int  // samples yielded so far

	t int64
	v float64
	h histogram.Histogram
}

// sharedCounter holds the counter values one replica's scrapes of one
// histogram gave in a time range.
type sharedCounter struct {
	key    sharedKey
	values []float64
	ok     bool // values are complete
}

type sharedKey struct {
	noiseSeed  uint64 // identifies the histogram's params
	replica    int
	mint, maxt int64
}

// maxJitterMs bounds how far a replica's scrape lands after the target's
// nominal scrape time.
const maxJitterMs = 4

// scrapePhase is target's offset within the scrape interval and the number
// of jitter values its scrapes can take.
func scrapePhase(seed uint64, iv int64, target int) (phase int64, jitterSpan uint64) {
	phase = int64(splitmix(seed^uint64(target)<<1) % uint64(iv))
	// Less jitter than half an interval keeps timestamps increasing.
	return phase, uint64(min(maxJitterMs, iv/2) + 1)
}

func scrapeJitter(seed, span uint64, target, replica int, k int64) int64 {
	return int64(splitmix(seed^uint64(target)<<20^uint64(replica)<<44^uint64(k)) % span)
}

// reset points g at the start of series d of replica in [mint, maxt).
func (g *sampleGen) reset(cfg *Config, d *seriesDef, replica int, mint, maxt int64) {
	g.seed, g.iv, g.replica, g.d = uint64(cfg.Seed), cfg.ScrapeInterval.Milliseconds(), replica, d
	g.mint, g.maxt = mint, maxt
	g.k = g.firstScrapeAtOrAfter(mint)
	g.phase, g.jitterSpan = scrapePhase(g.seed, g.iv, int(d.target))
	g.outages = g.outages[:0]
	for _, o := range cfg.Outages {
		if o.Replica == replica && o.Start < maxt && o.End > mint {
			g.outages = append(g.outages, o)
		}
	}
	g.n = 0
	g.sharedFilled = false
	if d.kind == kindBucket || d.kind == kindHistCount {
		key := sharedKey{noiseSeed: d.p.noiseSeed, replica: replica, mint: mint, maxt: maxt}
		if g.shared.ok && g.shared.key == key {
			g.sharedFilled = true
		} else {
			g.shared = sharedCounter{key: key, values: g.shared.values[:0]}
		}
	}
}

// firstScrapeAtOrAfter is a nominal scrape at or before the first one whose
// jittered time is at or after t: scrapes land at most one interval plus
// the jitter after their nominal time.
func (g *sampleGen) firstScrapeAtOrAfter(t int64) int64 {
	return floorDiv(t-g.iv-maxJitterMs, g.iv)
}

// next advances to the next sample and reports whether there is one.
func (g *sampleGen) next() bool {
	for {
		k := g.k
		t := k*g.iv + g.phase + scrapeJitter(g.seed, g.jitterSpan, int(g.d.target), g.replica, k)
		if t >= g.maxt {
			if g.d.kind == kindBucket || g.d.kind == kindHistCount {
				g.shared.ok = true
			}
			return false
		}
		g.k++
		if t < g.mint || g.inOutage(t) {
			continue
		}
		g.t = t
		// Values are functions of continuous time, so replicas scraping a
		// few milliseconds apart see slightly different values.
		x := float64(t) / valueStepMs
		switch g.d.kind {
		case kindNative:
			g.d.histogramAt(x, &g.h)
		case kindBucket, kindHistCount:
			var c float64
			if g.sharedFilled {
				c = g.shared.values[g.n]
			} else {
				c = g.d.p.counterAt(x)
				g.shared.values = append(g.shared.values, c)
			}
			g.v = g.d.cumulativeCount(c)
		default:
			g.v = g.d.floatAt(x, k)
		}
		g.n++
		return true
	}
}

func (g *sampleGen) inOutage(t int64) bool {
	for _, o := range g.outages {
		if t >= o.Start && t < o.End {
			return true
		}
	}
	return false
}

// SeriesSet returns what replica's blocks hold for cfg: every generated
// series matching all matchers that has samples in [mint, maxt] (inclusive,
// as storage.Querier takes them), sorted by labels, with exactly the
// generated samples. Tests compare what a querier returns against it.
// Labels are the series labels only; external labels such as the replica
// label live in the blocks' meta, not in the series.
func SeriesSet(cfg Config, replica int, mint, maxt int64, matchers ...*labels.Matcher) storage.SeriesSet {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	if replica < 0 || replica >= cfg.Replicas {
		return storage.ErrSeriesSet(fmt.Errorf("blockgen: replica %d out of range [0, %d)", replica, cfg.Replicas))
	}
	mint, maxt = max(mint, cfg.MinTime), min(maxt, cfg.MaxTime-1)
	defs := catalog(&cfg)
	set := &seriesSet{i: -1}
	for i := range defs {
		if !matchesAll(defs[i].lset, matchers) {
			continue
		}
		s := &series{cfg: &cfg, d: &defs[i], replica: replica, mint: mint, maxt: maxt}
		var g sampleGen
		g.reset(s.cfg, s.d, replica, mint, maxt+1)
		if maxt >= mint && g.next() {
			set.series = append(set.series, s)
		}
	}
	return set
}

func matchesAll(lset labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

type seriesSet struct {
	series []*series
	i      int
}

func (s *seriesSet) Next() bool {
	if s.i+1 >= len(s.series) {
		s.i = len(s.series)
		return false
	}
	s.i++
	return true
}

func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series is one generated series of a replica, iterable any number of times.
type series struct {
	cfg        *Config
	d          *seriesDef
	replica    int
	mint, maxt int64
}

func (s *series) Labels() labels.Labels { return s.d.lset }

// Iterator generates the series' samples afresh: a series of a day at 15s
// is a few thousand samples, small enough for the tests this serves.
func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	var (
		g   sampleGen
		out chunks.SampleSlice
	)
	g.reset(s.cfg, s.d, s.replica, s.mint, s.maxt+1)
	for g.next() {
		smp := sample{t: g.t, f: g.v}
		if s.d.kind == kindNative {
			smp.h = g.h.Copy()
		}
		out = append(out, smp)
	}
	return storage.NewListSeriesIteratorWithCopy(out)
}

// sample is a chunks.Sample of a float or an integer histogram.
type sample struct {
	t int64
	f float64
	h *histogram.Histogram
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return s.h }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Copy() chunks.Sample {
	if s.h != nil {
		s.h = s.h.Copy()
	}
	return s
}

func (s sample) Type() chunkenc.ValueType {
	if s.h != nil {
		return chunkenc.ValHistogram
	}
	return chunkenc.ValFloat
}

// floorDiv divides rounding towards minus infinity, so times before the
// epoch fall into the right scrape and block.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
