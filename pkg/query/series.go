package query

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// chunkSeries is a series received from a store: labels and chunks, raw or
// (from downsampled blocks) the aggregates aggrs asked for.
type chunkSeries struct {
	lset labels.Labels
	// chunks as received, when some are aggregates; otherwise raw holds
	// them compactly.
	chunks []*storepb.AggrChunk
	raw    *rawChunks
	rank   string
	aggrs  []storepb.Aggr
}

// rawChunks are the raw chunks of one series, their data in the frame that
// brought them (arena, shared by the frame's series). PromQL holds every
// selected series until the query ends; as
// protobuf messages a chunk costs two structs and its own allocation, about
// 200 bytes beside its data, which on wide queries was a quarter of the
// querier's heap.
type rawChunks struct {
	arena []byte
	chks  []rawChunk
}

type rawChunk struct {
	minT, maxT int64
	off, end   uint32
	enc        chunkenc.Encoding
}

// ReplicaRank tells dedup which replica the series comes from.
func (s *chunkSeries) ReplicaRank() string { return s.rank }

func (s *chunkSeries) Labels() labels.Labels { return s.lset }

func (s *chunkSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if slices.Equal(s.aggrs, counterAggr) && !allRaw(s.chunks) {
		// Counter aggregates carry their resets in their values and raw
		// values at their edges: one iterator over all chunks applies the
		// resets so that rate() sees the true increase, also across the
		// boundary between downsampled and raw data.
		its := make([]chunkenc.Iterator, 0, len(s.chunks))
		for _, c := range s.chunks {
			sub, err := chunkIterator(c, s.aggrs)
			if err != nil {
				return errIterator{err}
			}
			its = append(its, sub)
		}
		return downsample.NewCounterIterator(its...)
	}
	ci, ok := it.(*chunksIterator)
	if !ok {
		ci = &chunksIterator{}
	}
	ci.reset(s.chunks, s.raw, s.aggrs)
	return ci
}

func allRaw(chks []*storepb.AggrChunk) bool {
	for _, c := range chks {
		if c.Raw == nil {
			return false
		}
	}
	return true
}

// chunkIterator returns the samples of one chunk: its raw data, or the
// aggregate that stands in for them.
func chunkIterator(c *storepb.AggrChunk, aggrs []storepb.Aggr) (chunkenc.Iterator, error) {
	if c.Raw != nil {
		return decode(c.Raw, nil)
	}
	if len(aggrs) == 2 && aggrs[0] == storepb.Aggr_COUNT && aggrs[1] == storepb.Aggr_SUM {
		cnt, err := decode(c.Count, nil)
		if err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		sum, err := decode(c.Sum, nil)
		if err != nil {
			return nil, fmt.Errorf("sum: %w", err)
		}
		return downsample.NewAverageIterator(cnt, sum), nil
	}
	if len(aggrs) == 1 {
		var sub *storepb.Chunk
		switch aggrs[0] {
		case storepb.Aggr_COUNT:
			sub = c.Count
		case storepb.Aggr_SUM:
			sub = c.Sum
		case storepb.Aggr_MIN:
			sub = c.Min
		case storepb.Aggr_MAX:
			sub = c.Max
		case storepb.Aggr_COUNTER:
			sub = c.Counter
		}
		if sub != nil {
			return decode(sub, nil)
		}
	}
	return nil, fmt.Errorf("store sent chunk [%d, %d] without raw data or the aggregates %v asked for", c.MinTime, c.MaxTime, aggrs)
}

func decode(c *storepb.Chunk, reuse chunkenc.Iterator) (chunkenc.Iterator, error) {
	if c == nil {
		return nil, fmt.Errorf("missing chunk")
	}
	enc, err := storeapi.EncodingFromProto(c.Type)
	if err != nil {
		return nil, err
	}
	chk, err := chunkenc.FromData(enc, c.Data)
	if err != nil {
		return nil, fmt.Errorf("decode chunk: %w", err)
	}
	return chk.Iterator(reuse), nil
}

// errIterator is an iterator that failed before its first sample.
type errIterator struct{ err error }

func (e errIterator) Next() chunkenc.ValueType                                       { return chunkenc.ValNone }
func (e errIterator) Seek(int64) chunkenc.ValueType                                  { return chunkenc.ValNone }
func (e errIterator) At() (int64, float64)                                           { return 0, 0 }
func (e errIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) { return 0, nil }
func (e errIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return 0, nil
}
func (e errIterator) AtT() int64  { return 0 }
func (e errIterator) AtST() int64 { return 0 }
func (e errIterator) Err() error  { return e.err }

// counterAggr is what the querier asks for under rate() and its kin.
var counterAggr = []storepb.Aggr{storepb.Aggr_COUNTER}

// aggregatesFor picks the aggregates of downsampled data that best stand
// in for raw samples under PromQL function fn, as Thanos does: min and max
// functions read min and max, count functions count, sum_over_time sums,
// rate-like functions the counter, and anything else the average.
func aggregatesFor(fn string) []storepb.Aggr {
	switch {
	case fn == "min" || strings.HasPrefix(fn, "min_"):
		return []storepb.Aggr{storepb.Aggr_MIN}
	case fn == "max" || strings.HasPrefix(fn, "max_"):
		return []storepb.Aggr{storepb.Aggr_MAX}
	case fn == "count" || strings.HasPrefix(fn, "count_"):
		return []storepb.Aggr{storepb.Aggr_COUNT}
	case strings.HasPrefix(fn, "sum_"):
		// sum() itself wants the samples: it adds across series.
		return []storepb.Aggr{storepb.Aggr_SUM}
	case counterFuncs[fn]:
		return counterAggr
	}
	return []storepb.Aggr{storepb.Aggr_COUNT, storepb.Aggr_SUM}
}

// chunksIterator iterates the samples of a store series' chunks in order.
// Chunks of one series may overlap (blocks of one stream that overlap, or a
// store that splits chunks at block boundaries): samples at or before the
// last one returned are skipped.
type chunksIterator struct {
	chunks []*storepb.AggrChunk
	raw    *rawChunks // instead of chunks
	aggrs  []storepb.Aggr
	i      int
	cur    chunkenc.Iterator
	lastT  int64
	vt     chunkenc.ValueType
	err    error
}

func (c *chunksIterator) reset(chks []*storepb.AggrChunk, raw *rawChunks, aggrs []storepb.Aggr) {
	c.chunks, c.raw, c.aggrs, c.i, c.lastT, c.vt, c.err = chks, raw, aggrs, -1, math.MinInt64, chunkenc.ValNone, nil
	c.cur = nil
}

func (c *chunksIterator) count() int {
	if c.raw != nil {
		return len(c.raw.chks)
	}
	return len(c.chunks)
}

func (c *chunksIterator) maxTime(i int) int64 {
	if c.raw != nil {
		return c.raw.chks[i].maxT
	}
	return c.chunks[i].MaxTime
}

// openNext opens the next chunk; false when there is none or it fails.
func (c *chunksIterator) openNext() bool {
	c.i++
	if c.i >= c.count() {
		return false
	}
	if c.raw != nil {
		rc := c.raw.chks[c.i]
		chk, err := chunkenc.FromData(rc.enc, c.raw.arena[rc.off:rc.end])
		if err != nil {
			c.err = fmt.Errorf("decode chunk: %w", err)
			return false
		}
		c.cur = chk.Iterator(c.cur)
		return true
	}
	ch := c.chunks[c.i]
	var err error
	if ch.Raw != nil {
		// The common case: reuse the previous chunk's iterator.
		c.cur, err = decode(ch.Raw, c.cur)
	} else {
		c.cur, err = chunkIterator(ch, c.aggrs)
	}
	if err != nil {
		c.err = err
		return false
	}
	return true
}

func (c *chunksIterator) Next() chunkenc.ValueType {
	if c.err != nil {
		return chunkenc.ValNone
	}
	for {
		if c.cur == nil {
			if !c.openNext() {
				c.vt = chunkenc.ValNone
				return c.vt
			}
		}
		vt := c.cur.Next()
		if vt == chunkenc.ValNone {
			if err := c.cur.Err(); err != nil {
				c.err = err
				return chunkenc.ValNone
			}
			if !c.openNext() {
				c.vt = chunkenc.ValNone
				return c.vt
			}
			continue
		}
		t := c.cur.AtT()
		if t <= c.lastT {
			continue
		}
		c.lastT, c.vt = t, vt
		return vt
	}
}

func (c *chunksIterator) Seek(t int64) chunkenc.ValueType {
	if c.vt != chunkenc.ValNone && c.lastT >= t {
		return c.vt
	}
	// Skip whole chunks that end before t.
	for c.i+1 < c.count() && c.maxTime(c.i+1) < t && (c.cur == nil || c.i < 0 || c.maxTime(c.i) < t) {
		c.i++
		c.cur = nil
	}
	for {
		vt := c.Next()
		if vt == chunkenc.ValNone || c.lastT >= t {
			return vt
		}
	}
}

func (c *chunksIterator) At() (int64, float64) { return c.cur.At() }
func (c *chunksIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return c.cur.AtHistogram(h)
}
func (c *chunksIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return c.cur.AtFloatHistogram(fh)
}
func (c *chunksIterator) AtT() int64 { return c.cur.AtT() }

// AtST is always 0: the chunk encodings the StoreAPI carries (XOR and the
// two histogram ones) hold no start timestamps, and asking the chunk's
// iterator costs an interface call per sample for nothing.
func (c *chunksIterator) AtST() int64 { return 0 }

// NoStartTimestamps tells dedup not to ask AtST (see dedup.NoStartTimestamps).
func (c *chunksIterator) NoStartTimestamps() {}
func (c *chunksIterator) Err() error         { return c.err }
