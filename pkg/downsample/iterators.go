package downsample

import (
	"errors"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// CounterIterator iterates a sequence of counter chunks (counter aggregates
// of downsampled chunks, or raw chunks of a counter) as one monotonic
// counter: resets, within a chunk and between chunks, are added up instead
// of dropping the value, so rate() and increase() over windows that span
// aggregates see the true increase. Each counter aggregate ends with its
// last raw value repeated at the last timestamp; that sample is not
// returned, it tells the next chunk whether the counter was reset in
// between. NaN samples are skipped; samples that go back in time (chunks
// overlapping) are dropped.
//
// Because resets are folded into the value, resets() over its output is 0.
type CounterIterator struct {
	its    []chunkenc.Iterator
	i      int
	seen   bool
	vt     chunkenc.ValueType
	lastT  int64
	lastV  float64 // last raw value seen, to detect resets
	totalV float64 // value with resets added up
}

// NewCounterIterator returns a CounterIterator over its, in time order.
func NewCounterIterator(its ...chunkenc.Iterator) *CounterIterator {
	return &CounterIterator{its: its, lastT: math.MinInt64}
}

func (c *CounterIterator) Next() chunkenc.ValueType {
	for c.i < len(c.its) {
		it := c.its[c.i]
		vt := it.Next()
		if vt == chunkenc.ValNone {
			if it.Err() != nil {
				return chunkenc.ValNone
			}
			c.i++
			continue
		}
		if vt != chunkenc.ValFloat {
			// Histogram counters carry their own reset hints.
			if t := it.AtT(); t > c.lastT {
				c.lastT, c.vt = t, vt
				return vt
			}
			continue
		}
		t, v := it.At()
		if math.IsNaN(v) {
			continue
		}
		switch {
		case !c.seen:
			c.seen = true
			c.lastT, c.lastV, c.totalV = t, v, v
		case t > c.lastT:
			if v >= c.lastV {
				c.totalV += v - c.lastV
			} else {
				c.totalV += v
			}
			c.lastT, c.lastV = t, v
		case t == c.lastT:
			// The true last raw value of the chunk just read.
			c.lastV = v
			continue
		default:
			continue
		}
		c.vt = chunkenc.ValFloat
		return c.vt
	}
	c.vt = chunkenc.ValNone
	return c.vt
}

// Seek moves forward sample by sample: skipping a chunk with the chunk's
// own Seek would miss the resets in it.
func (c *CounterIterator) Seek(t int64) chunkenc.ValueType {
	if c.seen && c.vt != chunkenc.ValNone && c.lastT >= t {
		return c.vt
	}
	for {
		vt := c.Next()
		if vt == chunkenc.ValNone || c.lastT >= t {
			return vt
		}
	}
}

func (c *CounterIterator) At() (int64, float64) { return c.lastT, c.totalV }
func (c *CounterIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return c.its[c.i].AtHistogram(h)
}
func (c *CounterIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return c.its[c.i].AtFloatHistogram(fh)
}
func (c *CounterIterator) AtT() int64  { return c.lastT }
func (c *CounterIterator) AtST() int64 { return 0 }
func (c *CounterIterator) Err() error {
	if c.i < len(c.its) {
		return c.its[c.i].Err()
	}
	return nil
}

// AverageIterator yields sum/count of aligned sum and count aggregates.
type AverageIterator struct {
	count, sum chunkenc.Iterator
	t          int64
	v          float64
	fh         *histogram.FloatHistogram
	vt         chunkenc.ValueType
	err        error
}

// NewAverageIterator returns an iterator of sum/count.
func NewAverageIterator(count, sum chunkenc.Iterator) *AverageIterator {
	return &AverageIterator{count: count, sum: sum}
}

var errMisaligned = errors.New("sum and count aggregates are not aligned")

func (a *AverageIterator) Next() chunkenc.ValueType {
	if a.err != nil {
		return chunkenc.ValNone
	}
	ct, st := a.count.Next(), a.sum.Next()
	if ct == chunkenc.ValNone || st == chunkenc.ValNone {
		if ct != st {
			a.err = errMisaligned
		}
		a.vt = chunkenc.ValNone
		return a.vt
	}
	t, n := a.count.At()
	if a.sum.AtT() != t {
		a.err = errMisaligned
		return chunkenc.ValNone
	}
	a.t = t
	if st == chunkenc.ValFloatHistogram || st == chunkenc.ValHistogram {
		_, fh := a.sum.AtFloatHistogram(nil)
		a.fh = fh.Div(n)
		a.vt = chunkenc.ValFloatHistogram
		return a.vt
	}
	_, s := a.sum.At()
	a.v, a.vt = s/n, chunkenc.ValFloat
	return a.vt
}

func (a *AverageIterator) Seek(t int64) chunkenc.ValueType {
	if a.vt != chunkenc.ValNone && a.t >= t {
		return a.vt
	}
	for {
		vt := a.Next()
		if vt == chunkenc.ValNone || a.t >= t {
			return vt
		}
	}
}

func (a *AverageIterator) At() (int64, float64) { return a.t, a.v }
func (a *AverageIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("average of histograms is a float histogram")
}
func (a *AverageIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return a.t, a.fh
}
func (a *AverageIterator) AtT() int64  { return a.t }
func (a *AverageIterator) AtST() int64 { return 0 }
func (a *AverageIterator) Err() error {
	if a.err != nil {
		return a.err
	}
	if err := a.count.Err(); err != nil {
		return err
	}
	return a.sum.Err()
}
