package downsample

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// The algorithms below reproduce Thanos' choices exactly (window ends,
// batch sizes, the extra raw samples of the counter aggregate), because
// readers and later downsampling passes depend on them and because equal
// input must give byte-equal blocks whichever of the two wrote them.

// sample is one float sample.
type sample struct {
	t int64
	v float64
}

// windowEnd returns the last timestamp of the resolution window t falls in.
// Windows are [k*res, (k+1)*res); the aggregate's timestamp is the window's
// last millisecond so that it stays inside the block's [min, max) range.
func windowEnd(t, res int64) int64 { return t - t%res + res - 1 }

// chunkCount is how many output chunks a series of count samples over
// [mint, maxt] at input resolution inRes should become at outRes, so that
// each holds at most about 140 aggregates.
func chunkCount(mint, maxt, inRes, outRes int64, count int) int {
	fullness := float64(count) / (float64(maxt-mint) / float64(inRes))
	fullness = min(fullness, 1)
	expected := int(float64((maxt-mint)/outRes)*fullness) + 1
	n := 1
	for expected/n > 140 {
		n++
	}
	return n
}

// aggregator accumulates one window of samples plus the running counter.
type aggregator struct {
	total         int
	count         int
	sum, min, max float64
	counter, last float64
}

func (a *aggregator) reset() {
	a.count, a.sum, a.min, a.max = 0, 0, math.MaxFloat64, -math.MaxFloat64
}

func (a *aggregator) add(v float64) {
	switch {
	case a.total == 0:
		a.counter = v
	case v < a.last:
		// A counter reset: the new value is what accrued since.
		a.counter += v
	default:
		a.counter += v - a.last
	}
	a.last = v
	a.sum += v
	a.count++
	a.total++
	a.min = min(a.min, v)
	a.max = max(a.max, v)
}

// aggregate calls emit with the aggregator at the end of each window of
// data; the last window ends at the last sample at the latest, so that a
// batch never reaches into the next one's time range. It returns the
// timestamp of the last emitted window.
func aggregate(data []sample, res int64, a *aggregator, emit func(t int64, a *aggregator)) int64 {
	next, last := int64(-1), data[len(data)-1].t
	for _, s := range data {
		if s.t > next {
			if next != -1 {
				emit(next, a)
			}
			a.reset()
			next = min(windowEnd(s.t, res), last)
		}
		a.add(s.v)
	}
	if a.total > 0 {
		emit(next, a)
	}
	return next
}

// chunkBuilder appends to one XOR sub-chunk per aggregate.
type chunkBuilder struct {
	mint, maxt int64
	chunks     [5]chunkenc.Chunk
	apps       [5]chunkenc.Appender
}

func newChunkBuilder(aggrs ...AggrType) *chunkBuilder {
	b := &chunkBuilder{mint: math.MaxInt64, maxt: math.MinInt64}
	for _, t := range aggrs {
		b.open(t)
	}
	return b
}

func (b *chunkBuilder) open(t AggrType) {
	c := chunkenc.NewXORChunk()
	app, _ := c.Appender() // a new XOR chunk always has an appender
	b.chunks[t], b.apps[t] = c, app
}

func (b *chunkBuilder) span(t int64) {
	b.mint, b.maxt = min(b.mint, t), max(b.maxt, t)
}

func (b *chunkBuilder) meta() chunks.Meta {
	c := EncodeAggrChunk(b.chunks)
	return chunks.Meta{MinTime: b.mint, MaxTime: b.maxt, Chunk: &c}
}

// rawBatch downsamples one batch of raw samples into one AggrChunk.
func rawBatch(batch []sample, res int64) chunks.Meta {
	b := newChunkBuilder(AggrCount, AggrSum, AggrMin, AggrMax, AggrCounter)
	// The counter starts with the first raw sample and ends with the last
	// raw value repeated at the last window's timestamp: readers use them
	// to see counter resets between chunks.
	b.apps[AggrCounter].Append(0, batch[0].t, batch[0].v)
	var a aggregator
	last := aggregate(batch, res, &a, func(t int64, a *aggregator) {
		b.span(t)
		b.apps[AggrCount].Append(0, t, float64(a.count))
		b.apps[AggrSum].Append(0, t, a.sum)
		b.apps[AggrMin].Append(0, t, a.min)
		b.apps[AggrMax].Append(0, t, a.max)
		b.apps[AggrCounter].Append(0, t, a.counter)
	})
	b.apps[AggrCounter].Append(0, last, batch[len(batch)-1].v)
	return b.meta()
}

// DownsampleRaw turns a raw float series (sorted, without stale markers)
// into AggrChunks at resolution res, appending them to out.
func downsampleRaw(data []sample, res int64, out []chunks.Meta) []chunks.Meta {
	if len(data) == 0 {
		return out
	}
	// Raw data is assumed to be scraped every minute for sizing chunks.
	n := chunkCount(data[0].t, data[len(data)-1].t, 60_000, res, len(data))
	batchSize := len(data)/n + 1
	batch := make([]sample, 0, batchSize+int(res/1000))
	for len(data) > 0 {
		j := min(batchSize, len(data))
		// Take the rest of the window the batch ends in, so that no window
		// is split between two chunks.
		end := windowEnd(data[j-1].t, res)
		for j < len(data) && data[j].t <= end {
			j++
		}
		batch = batch[:0]
		for _, s := range data[:j] {
			if !math.IsNaN(s.v) {
				batch = append(batch, s)
			}
		}
		data = data[j:]
		if len(batch) > 0 {
			out = append(out, rawBatch(batch, res))
		}
	}
	return out
}

// appendXOR appends the samples of a float chunk iterator to buf, without
// stale markers and without samples that go back in time.
func appendXOR(it chunkenc.Iterator, buf []sample) ([]sample, error) {
	lastT := int64(0)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			return buf, fmt.Errorf("unexpected %s sample in a float chunk", vt)
		}
		t, v := it.At()
		if value.IsStaleNaN(v) || t < lastT {
			continue
		}
		buf = append(buf, sample{t, v})
		lastT = t
	}
	return buf, it.Err()
}

// downsampleAggr turns the AggrChunks of one series at resolution inRes
// (all of floats or all of histograms) into AggrChunks at outRes. Chunks are
// combined whole, never split: each float chunk's first and last counter
// samples are true raw values that must survive every pass.
func downsampleAggr(chks []*AggrChunk, mint, maxt, inRes, outRes int64, out []chunks.Meta) ([]chunks.Meta, error) {
	samples := 0
	for _, c := range chks {
		samples += c.NumSamples()
	}
	n := chunkCount(mint, maxt, inRes, outRes, samples)
	batchSize := max(len(chks)/n, 1)
	var buf []sample
	for len(chks) > 0 {
		j := min(batchSize, len(chks))
		var (
			m   chunks.Meta
			err error
		)
		if chks[0].IsHistogram() {
			m, err = histAggrBatch(chks[:j], outRes, &buf)
		} else {
			m, err = aggrBatch(chks[:j], outRes, &buf)
		}
		if err != nil {
			return out, err
		}
		if m.MinTime == math.MaxInt64 {
			return out, fmt.Errorf("downsampled chunk has no samples")
		}
		out = append(out, m)
		chks = chks[j:]
	}
	return out, nil
}

func aggrBatch(chks []*AggrChunk, res int64, buf *[]sample) (chunks.Meta, error) {
	b := newChunkBuilder()
	var it chunkenc.Iterator
	// Count and sum add up; min and max stay min and max.
	for _, at := range []AggrType{AggrCount, AggrSum, AggrMin, AggrMax} {
		*buf = (*buf)[:0]
		for _, c := range chks {
			sub, err := c.Get(at)
			if err == ErrAggrNotExist {
				continue
			}
			if err != nil {
				return chunks.Meta{}, err
			}
			it = sub.Iterator(it)
			if *buf, err = appendXOR(it, *buf); err != nil {
				return chunks.Meta{}, fmt.Errorf("read %s: %w", at, err)
			}
		}
		if len(*buf) == 0 {
			continue
		}
		b.open(at)
		var a aggregator
		aggregate(*buf, res, &a, func(t int64, a *aggregator) {
			b.span(t)
			v := a.sum
			switch at {
			case AggrMin:
				v = a.min
			case AggrMax:
				v = a.max
			}
			b.apps[at].Append(0, t, v)
		})
	}

	// The counter: resets applied across the input chunks, then windows of
	// the running total, framed by the first and last raw values.
	its := make([]chunkenc.Iterator, 0, len(chks))
	for _, c := range chks {
		sub, err := c.Get(AggrCounter)
		if err == ErrAggrNotExist {
			continue
		}
		if err != nil {
			return chunks.Meta{}, err
		}
		its = append(its, sub.Iterator(nil))
	}
	cit := NewCounterIterator(its...)
	var err error
	*buf = (*buf)[:0]
	if *buf, err = appendXOR(cit, *buf); err != nil {
		return chunks.Meta{}, fmt.Errorf("read counter: %w", err)
	}
	if len(*buf) == 0 {
		return b.meta(), nil
	}
	b.open(AggrCounter)
	b.apps[AggrCounter].Append(0, (*buf)[0].t, (*buf)[0].v)
	var a aggregator
	last := aggregate(*buf, res, &a, func(t int64, a *aggregator) {
		b.span(t)
		b.apps[AggrCounter].Append(0, t, a.counter)
	})
	b.apps[AggrCounter].Append(0, last, cit.lastV)
	return b.meta(), nil
}
