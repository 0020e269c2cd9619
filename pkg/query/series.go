package query

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// chunkSeries is a series received from a store: labels and raw chunks.
type chunkSeries struct {
	lset   labels.Labels
	chunks []*storepb.AggrChunk
	rank   string
}

// ReplicaRank tells dedup which replica the series comes from.
func (s *chunkSeries) ReplicaRank() string { return s.rank }

func (s *chunkSeries) Labels() labels.Labels { return s.lset }

func (s *chunkSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	ci, ok := it.(*chunksIterator)
	if !ok {
		ci = &chunksIterator{}
	}
	ci.reset(s.chunks)
	return ci
}

// chunksIterator iterates the samples of a store series' chunks in order.
// Chunks of one series may overlap (blocks of one stream that overlap, or a
// store that splits chunks at block boundaries): samples at or before the
// last one returned are skipped.
type chunksIterator struct {
	chunks []*storepb.AggrChunk
	i      int
	cur    chunkenc.Iterator
	lastT  int64
	vt     chunkenc.ValueType
	err    error
}

func (c *chunksIterator) reset(chks []*storepb.AggrChunk) {
	c.chunks, c.i, c.lastT, c.vt, c.err = chks, -1, math.MinInt64, chunkenc.ValNone, nil
	c.cur = nil
}

// openNext opens the next chunk; false when there is none or it fails.
func (c *chunksIterator) openNext() bool {
	for {
		c.i++
		if c.i >= len(c.chunks) {
			return false
		}
		raw := c.chunks[c.i].Raw
		if raw == nil {
			// A downsampled chunk without raw data; the querier asks for
			// raw data only unless it asked for aggregates.
			c.err = fmt.Errorf("store sent a chunk without raw data (aggregates %v)", c.chunks[c.i])
			return false
		}
		enc, err := storeapi.EncodingFromProto(raw.Type)
		if err != nil {
			c.err = err
			return false
		}
		chk, err := chunkenc.FromData(enc, raw.Data)
		if err != nil {
			c.err = fmt.Errorf("decode chunk: %w", err)
			return false
		}
		c.cur = chk.Iterator(c.cur)
		return true
	}
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
	for c.i+1 < len(c.chunks) && c.chunks[c.i+1].MaxTime < t && (c.cur == nil || c.i < 0 || c.chunks[c.i].MaxTime < t) {
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
func (c *chunksIterator) AtT() int64  { return c.cur.AtT() }
func (c *chunksIterator) AtST() int64 { return c.cur.AtST() }
func (c *chunksIterator) Err() error  { return c.err }
