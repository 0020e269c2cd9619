package dedup

import (
	"math"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// initialPenalty (ms) stands in for the scrape interval until two samples
// have been seen. Thanos uses the same value.
const initialPenalty = 5000

// MergeFunc returns a storage.VerticalSeriesMergeFunc that deduplicates
// series with equal labels. counter turns on the counter adjustment; the
// querier sets it for rate, increase, irate and resets, whose results a fake
// counter drop would distort.
func MergeFunc(counter bool) storage.VerticalSeriesMergeFunc {
	return func(series ...storage.Series) storage.Series {
		if len(series) == 1 {
			return series[0]
		}
		// Order the replicas so the same one is preferred for every series
		// of a query: then an aggregation over many series equals the same
		// aggregation over that one replica.
		sort.SliceStable(series, func(i, j int) bool { return rankOf(series[i]) < rankOf(series[j]) })
		return &dedupSeries{lset: series[0].Labels(), replicas: series, counter: counter}
	}
}

// Ranked is a series that knows which replica it comes from (the values of
// its replica labels, which it no longer carries). Replicas are preferred in
// rank order.
type Ranked interface {
	ReplicaRank() string
}

func rankOf(s storage.Series) string {
	if r, ok := s.(Ranked); ok {
		return r.ReplicaRank()
	}
	return ""
}

type dedupSeries struct {
	lset     labels.Labels
	replicas []storage.Series
	counter  bool
}

func (s *dedupSeries) Labels() labels.Labels { return s.lset }

func (s *dedupSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	d, ok := it.(*Iterator)
	if !ok || len(d.reps) != len(s.replicas) {
		d = &Iterator{reps: make([]replica, len(s.replicas))}
	}
	its := make([]chunkenc.Iterator, len(s.replicas))
	for i, r := range s.replicas {
		its[i] = r.Iterator(d.reps[i].it)
	}
	d.reset(its, s.counter)
	return d
}

// replica is the state of one replica's iterator.
type replica struct {
	it      chunkenc.Iterator
	vt      chunkenc.ValueType // type of the current sample; ValNone when exhausted
	t       int64
	f       float64 // current float value
	stale   bool    // the current sample is a staleness marker
	prevF   float64 // the float value before the current one
	hasPrev bool
	started bool
}

func (r *replica) next() {
	switch {
	case r.stale:
		// A staleness marker is no value: the one before it stays the
		// previous value, so a reset across it is still seen.
	case r.vt == chunkenc.ValFloat:
		r.prevF, r.hasPrev = r.f, true
	default:
		r.hasPrev = false
	}
	r.vt = r.it.Next()
	r.started = true
	r.load()
}

func (r *replica) load() {
	switch r.vt {
	case chunkenc.ValNone:
		r.stale = false
	case chunkenc.ValFloat:
		r.t, r.f = r.it.At()
		r.stale = value.IsStaleNaN(r.f)
	default:
		r.t, r.stale = r.it.AtT(), false
	}
}

// advanceTo moves r to its first sample at or after minT.
func (r *replica) advanceTo(minT int64) {
	if !r.started {
		r.next()
	}
	for r.vt != chunkenc.ValNone && r.t < minT {
		r.next()
	}
}

// seekTo moves r to its first sample at or after minT. A replica far
// behind is first moved with Seek, which skips whole chunks, to lookBehind
// before minT, and then sample by sample, so the sample before minT is known
// for counter reset detection.
func (r *replica) seekTo(minT, lookBehind int64) {
	if !r.started || (r.vt != chunkenc.ValNone && r.t < minT-lookBehind) {
		r.vt = r.it.Seek(minT - lookBehind)
		r.started = true
		r.hasPrev = false
		r.load()
	}
	for r.vt != chunkenc.ValNone && r.t < minT {
		r.next()
	}
}

// Iterator is the penalty-based merge of replica iterators.
type Iterator struct {
	reps    []replica
	cur     int // replica of the current sample, -1 before the first
	lastT   int64
	step    int64 // time between the last two output samples
	counter bool
	// offset is added to float values of the current replica so that a
	// switch to a replica whose counter is a little behind does not look
	// like a counter reset.
	offset   float64
	lastOut  float64
	hasOut   bool
	switched bool // the current sample is the first after a switch
	done     bool
	// noFastPath lets tests check the inlined float path against the
	// general one.
	noFastPath bool
	noST       bool // no replica has start timestamps
}

// NewIterator merges the given replica iterators.
func NewIterator(counter bool, its ...chunkenc.Iterator) *Iterator {
	d := &Iterator{reps: make([]replica, len(its))}
	d.reset(its, counter)
	return d
}

func (d *Iterator) reset(its []chunkenc.Iterator, counter bool) {
	d.noST = true
	for i := range d.reps {
		d.reps[i] = replica{it: its[i]}
		if _, ok := its[i].(NoStartTimestamps); !ok {
			d.noST = false
		}
	}
	d.cur, d.lastT, d.step, d.counter = -1, math.MinInt64, 0, counter
	d.offset, d.lastOut, d.hasOut, d.switched, d.done = 0, 0, false, false, false
}

// Next moves to the next deduplicated sample.
//
// The current replica is kept while its next sample comes within the
// penalty (twice the last step) of the last one. Otherwise the earliest
// sample of any replica is taken, skipping samples of the other replicas
// within half a step of the last output: those are the same scrape seen by
// another replica a few milliseconds later. Unlike Thanos, which skips a
// whole penalty on the other replicas, this fills a gap from the first
// scrape the other replica has after it.
func (d *Iterator) Next() chunkenc.ValueType {
	if d.done {
		return chunkenc.ValNone
	}
	half, penalty := int64(initialPenalty), int64(initialPenalty)
	if d.step > 0 {
		half, penalty = d.step/2, 2*d.step
	}
	// Fast path: the current replica has the next scrape. The other
	// replicas are not touched, so only one replica is decoded while it
	// has no gaps; they catch up with chunk-skipping seeks at a gap.
	if c := d.cur; c >= 0 && !d.noFastPath && d.reps[c].vt != chunkenc.ValNone && d.reps[c].t == d.lastT {
		// The common case with next, load and emit inlined: this runs
		// once per sample of every deduplicated series.
		r := &d.reps[c]
		switch {
		case r.stale:
		case r.vt == chunkenc.ValFloat:
			r.prevF, r.hasPrev = r.f, true
		default:
			r.hasPrev = false
		}
		switch r.vt = r.it.Next(); r.vt {
		case chunkenc.ValNone:
			r.stale = false
		case chunkenc.ValFloat:
			r.t, r.f = r.it.At()
			r.stale = value.IsStaleNaN(r.f)
		default:
			r.t, r.stale = r.it.AtT(), false
		}
		if r.vt != chunkenc.ValNone && r.t > d.lastT && r.t <= d.lastT+penalty {
			d.switched = false
			switch {
			case r.vt != chunkenc.ValFloat:
				d.hasOut = false
			case r.stale:
			default:
				if d.counter && r.hasPrev && r.f < r.prevF {
					// A reset in the replica itself (see adjustCounter).
					d.offset = 0
				}
				d.lastOut, d.hasOut = r.f+d.offset, true
			}
			d.step, d.lastT = r.t-d.lastT, r.t
			return r.vt
		}
	}
	if c := d.cur; c >= 0 {
		r := &d.reps[c]
		r.advanceTo(d.lastT + 1)
		if r.vt != chunkenc.ValNone && r.t <= d.lastT+penalty {
			return d.emit(c)
		}
	}
	pick := -1
	for i := range d.reps {
		r := &d.reps[i]
		switch {
		case d.lastT == math.MinInt64:
			r.advanceTo(math.MinInt64)
		case i == d.cur:
			// Advanced above.
		default:
			r.seekTo(d.lastT+1+half, 2*max(penalty, initialPenalty))
		}
		if r.vt == chunkenc.ValNone {
			continue
		}
		// The earliest sample wins; on a tie stay on the current replica.
		if pick < 0 || r.t < d.reps[pick].t || (r.t == d.reps[pick].t && i == d.cur) {
			pick = i
		}
	}
	if pick < 0 {
		d.done = true
		return chunkenc.ValNone
	}
	if c := d.cur; c >= 0 && d.reps[c].vt != chunkenc.ValNone && d.reps[c].t <= d.reps[pick].t+half {
		// The current replica's next sample is the same scrape as the
		// earliest, seen a little later: stay.
		pick = c
	}
	if d.cur < 0 {
		// Start on the first replica in rank order that has the first
		// scrape: replicas scrape the same targets milliseconds apart.
		first := d.reps[pick].t
		for i := range d.reps {
			if d.reps[i].vt != chunkenc.ValNone && d.reps[i].t <= first+initialPenalty {
				pick = i
				break
			}
		}
	}
	return d.emit(pick)
}

// emit makes replica pick's current sample the iterator's.
func (d *Iterator) emit(pick int) chunkenc.ValueType {
	p := &d.reps[pick]
	d.switched = d.cur >= 0 && pick != d.cur
	stale := p.stale
	if p.vt == chunkenc.ValFloat && d.counter && !stale {
		d.adjustCounter(p)
	}
	if d.lastT != math.MinInt64 {
		d.step = p.t - d.lastT
	}
	d.cur, d.lastT = pick, p.t
	switch {
	case stale:
		// Not a value: the last one stays the level to hold.
	case p.vt == chunkenc.ValFloat:
		d.lastOut, d.hasOut = p.f+d.offset, true
	default:
		d.hasOut = false
	}
	return p.vt
}

// adjustCounter keeps the output counter from dropping at a replica switch
// unless the replica switched to really reset.
func (d *Iterator) adjustCounter(p *replica) {
	realReset := p.hasPrev && p.f < p.prevF
	switch {
	case realReset:
		// A reset in the replica itself: pass it through so rate() counts
		// it exactly as Prometheus over that replica does.
		d.offset = 0
	case d.switched && d.hasOut && p.f+d.offset < d.lastOut:
		// The new replica is a little behind: hold the counter level
		// rather than show a drop PromQL would read as a reset.
		d.offset = d.lastOut - p.f
	case d.switched:
		d.offset = 0
	}
}

// Seek moves to the first sample at or after t. It walks with Next rather
// than seeking the replicas, so that gaps are noticed as they would be by
// iterating.
func (d *Iterator) Seek(t int64) chunkenc.ValueType {
	if d.cur >= 0 && !d.done && d.reps[d.cur].t >= t {
		return d.reps[d.cur].vt
	}
	for {
		vt := d.Next()
		if vt == chunkenc.ValNone || d.reps[d.cur].t >= t {
			return vt
		}
	}
}

// At returns the current float sample. A staleness marker is returned as
// it is: any arithmetic on it, even adding 0, makes it a plain NaN, which
// PromQL would then read as a sample instead of the end of the series.
func (d *Iterator) At() (int64, float64) {
	r := &d.reps[d.cur]
	if d.offset == 0 || r.stale {
		return r.t, r.f
	}
	return r.t, r.f + d.offset
}

// AtHistogram returns the current histogram sample. After a replica switch
// the counter reset hint is cleared: the chunk's hint was about the other
// replica's previous sample.
func (d *Iterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	t, h := d.reps[d.cur].it.AtHistogram(h)
	if d.switched && h.CounterResetHint == histogram.NotCounterReset {
		h.CounterResetHint = histogram.UnknownCounterReset
	}
	return t, h
}

// AtFloatHistogram returns the current sample as a float histogram.
func (d *Iterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	t, fh := d.reps[d.cur].it.AtFloatHistogram(fh)
	if d.switched && fh.CounterResetHint == histogram.NotCounterReset {
		fh.CounterResetHint = histogram.UnknownCounterReset
	}
	return t, fh
}

// AtT returns the current sample's timestamp.
func (d *Iterator) AtT() int64 { return d.reps[d.cur].t }

// AtST returns the current sample's start timestamp. PromQL asks for it
// with every sample: replicas that never have one are not asked.
func (d *Iterator) AtST() int64 {
	if d.noST {
		return 0
	}
	return d.reps[d.cur].it.AtST()
}

// NoStartTimestamps marks iterators whose samples never carry a start
// timestamp (AtST is always 0), such as the querier's over StoreAPI chunks.
type NoStartTimestamps interface {
	NoStartTimestamps()
}

// Err returns the first error of any replica.
func (d *Iterator) Err() error {
	for i := range d.reps {
		if err := d.reps[i].it.Err(); err != nil {
			return err
		}
	}
	return nil
}
