package downsample

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Native histograms downsample to three aggregates: count (XOR), sum and
// counter (float histogram chunks). As with floats, every choice follows
// Thanos so that both write the same bytes.

// hsample is one histogram sample, as a float histogram.
type hsample struct {
	t  int64
	fh *histogram.FloatHistogram
}

// appendHistograms appends the samples of a histogram chunk iterator to
// buf, without stale markers and samples that go back in time.
func appendHistograms(it chunkenc.Iterator, buf []hsample) ([]hsample, error) {
	lastT := int64(0)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		var (
			t  int64
			fh *histogram.FloatHistogram
		)
		switch vt {
		case chunkenc.ValHistogram:
			var h *histogram.Histogram
			t, h = it.AtHistogram(nil)
			fh = h.ToFloat(nil)
		case chunkenc.ValFloatHistogram:
			t, fh = it.AtFloatHistogram(nil)
		default:
			return buf, fmt.Errorf("unexpected %s sample in a histogram chunk", vt)
		}
		if value.IsStaleNaN(fh.Sum) || t < lastT {
			continue
		}
		buf = append(buf, hsample{t, fh})
		lastT = t
	}
	return buf, it.Err()
}

// histAggregator accumulates one window of histograms plus the running
// counter, at one schema (the smallest of the batch) so they can be added.
type histAggregator struct {
	schema             int32
	total, count       int
	sum, counter, last *histogram.FloatHistogram
}

func (h *histAggregator) reset() { h.count, h.sum = 0, nil }

func (h *histAggregator) add(s hsample) error {
	orig, fh := s.fh, s.fh
	var err error
	if fh.Schema > h.schema {
		if fh, err = fh.CopyToSchema(h.schema); err != nil {
			return fmt.Errorf("reduce histogram schema: %w", err)
		}
	}
	switch {
	case h.total == 0:
		h.counter = fh.Copy()
	case fh.CounterResetHint != histogram.GaugeType && orig.DetectReset(h.last):
		_, _, _, err = h.counter.Add(fh)
	default:
		var delta *histogram.FloatHistogram
		if delta, _, _, err = fh.Copy().Sub(h.last); err == nil {
			_, _, _, err = h.counter.Add(delta)
		}
	}
	if err != nil {
		return fmt.Errorf("aggregate histograms: %w", err)
	}
	if h.sum == nil {
		h.sum = fh.Copy()
	} else if _, _, _, err = h.sum.Add(fh); err != nil {
		return fmt.Errorf("aggregate histograms: %w", err)
	}
	// A sum of histograms can shrink from window to window: a gauge.
	h.sum.CounterResetHint = histogram.GaugeType
	h.last = fh
	h.count++
	h.total++
	return nil
}

func minSchema(data []hsample) int32 {
	schema := int32(math.MaxInt32)
	for _, s := range data {
		if !value.IsStaleNaN(s.fh.Sum) {
			schema = min(schema, s.fh.Schema)
		}
	}
	return schema
}

// aggregateHist is aggregate for histograms.
func aggregateHist(data []hsample, res int64, a *histAggregator, emit func(t int64, a *histAggregator) error) error {
	next, last := int64(-1), data[len(data)-1].t
	for _, s := range data {
		if s.t > next {
			if next != -1 {
				if err := emit(next, a); err != nil {
					return err
				}
			}
			a.reset()
			next = min(windowEnd(s.t, res), last)
		}
		if err := a.add(s); err != nil {
			return err
		}
	}
	if a.total > 0 {
		return emit(next, a)
	}
	return nil
}

func newHistChunkBuilder() *chunkBuilder {
	b := newChunkBuilder(AggrCount)
	for _, t := range []AggrType{AggrSum, AggrCounter} {
		c := chunkenc.NewFloatHistogramChunk()
		app, _ := c.Appender()
		b.chunks[t], b.apps[t] = c, app
	}
	return b
}

// appendFH appends a float histogram to aggregate t, recoding the chunk when
// the histogram's buckets need it.
func (b *chunkBuilder) appendFH(t AggrType, ts int64, fh *histogram.FloatHistogram) error {
	c, recoded, app, err := b.apps[t].AppendFloatHistogram(b.apps[t], 0, ts, fh, false)
	if err != nil {
		return fmt.Errorf("append %s histogram: %w", t, err)
	}
	if c != nil {
		if !recoded {
			// A new chunk would drop what the old one holds.
			return fmt.Errorf("%s histogram at %d does not fit the aggregate chunk", t, ts)
		}
		b.chunks[t] = c
	}
	b.apps[t] = app
	return nil
}

func isGauge(data []hsample) bool {
	return len(data) > 0 && data[0].fh.CounterResetHint == histogram.GaugeType
}

// histBatch downsamples one batch of raw histograms into one AggrChunk.
func histBatch(batch []hsample, res int64) (chunks.Meta, error) {
	b := newHistChunkBuilder()
	gauge := isGauge(batch)
	a := &histAggregator{schema: minSchema(batch)}
	err := aggregateHist(batch, res, a, func(t int64, a *histAggregator) error {
		b.span(t)
		if gauge {
			a.counter.CounterResetHint = histogram.GaugeType
			a.sum.CounterResetHint = histogram.GaugeType
		}
		if err := b.appendFH(AggrCounter, t, a.counter); err != nil {
			return err
		}
		if err := b.appendFH(AggrSum, t, a.sum); err != nil {
			return err
		}
		b.apps[AggrCount].Append(0, t, float64(a.count))
		return nil
	})
	if err != nil {
		return chunks.Meta{}, err
	}
	return b.meta(), nil
}

// downsampleRawHist is downsampleRaw for histograms.
func downsampleRawHist(data []hsample, res int64, out []chunks.Meta) ([]chunks.Meta, error) {
	if len(data) == 0 {
		return out, nil
	}
	n := chunkCount(data[0].t, data[len(data)-1].t, 60_000, res, len(data))
	batchSize := len(data)/n + 1
	var batch []hsample
	for len(data) > 0 {
		j := min(batchSize, len(data))
		end := windowEnd(data[j-1].t, res)
		for j < len(data) && data[j].t <= end {
			j++
		}
		batch = batch[:0]
		for _, s := range data[:j] {
			if !math.IsNaN(s.fh.Sum) {
				batch = append(batch, s)
			}
		}
		data = data[j:]
		if len(batch) > 0 {
			m, err := histBatch(batch, res)
			if err != nil {
				return out, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// histAggrBatch downsamples AggrChunks of histograms to one AggrChunk at
// res: counter and sum re-aggregated as histograms, counts added up.
func histAggrBatch(chks []*AggrChunk, res int64, fbuf *[]sample) (chunks.Meta, error) {
	b := newHistChunkBuilder()
	expand := func(at AggrType) ([]hsample, error) {
		var buf []hsample
		for _, c := range chks {
			sub, err := c.Get(at)
			if err == ErrAggrNotExist {
				continue
			}
			if err != nil {
				return nil, err
			}
			if buf, err = appendHistograms(sub.Iterator(nil), buf); err != nil {
				return nil, fmt.Errorf("read %s: %w", at, err)
			}
		}
		return buf, nil
	}
	counters, err := expand(AggrCounter)
	if err != nil {
		return chunks.Meta{}, err
	}
	if len(counters) == 0 {
		return chunks.Meta{}, fmt.Errorf("histogram aggregates without counter")
	}
	a := &histAggregator{schema: minSchema(counters)}
	if err := aggregateHist(counters, res, a, func(t int64, a *histAggregator) error {
		b.span(t)
		return b.appendFH(AggrCounter, t, a.counter)
	}); err != nil {
		return chunks.Meta{}, err
	}
	sums, err := expand(AggrSum)
	if err != nil {
		return chunks.Meta{}, err
	}
	if len(sums) > 0 {
		a = &histAggregator{schema: minSchema(sums)}
		if err := aggregateHist(sums, res, a, func(t int64, a *histAggregator) error {
			b.span(t)
			return b.appendFH(AggrSum, t, a.sum)
		}); err != nil {
			return chunks.Meta{}, err
		}
	}
	// Counts add up like float sums.
	*fbuf = (*fbuf)[:0]
	for _, c := range chks {
		sub, err := c.Get(AggrCount)
		if err == ErrAggrNotExist {
			continue
		}
		if err != nil {
			return chunks.Meta{}, err
		}
		if *fbuf, err = appendXOR(sub.Iterator(nil), *fbuf); err != nil {
			return chunks.Meta{}, fmt.Errorf("read count: %w", err)
		}
	}
	if len(*fbuf) > 0 {
		b.open(AggrCount)
		var fa aggregator
		aggregate(*fbuf, res, &fa, func(t int64, a *aggregator) {
			b.span(t)
			b.apps[AggrCount].Append(0, t, a.sum)
		})
	}
	return b.meta(), nil
}
