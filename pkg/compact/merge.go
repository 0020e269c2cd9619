package compact

import (
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/strata-metrics/strata/pkg/dedup"
)

// dedupChunkMerge deduplicates whole series of HA replica blocks. Prometheus'
// compacting merger would hand the merge function one group of overlapping
// chunks at a time, letting the replica change at every chunk boundary;
// here each replica's series is merged in one piece, so the output follows
// one replica and switches only across gaps.
func dedupChunkMerge(series ...storage.ChunkSeries) storage.ChunkSeries {
	if len(series) == 1 {
		return series[0]
	}
	ss := make([]storage.Series, len(series))
	for i, s := range series {
		ss[i] = chunkSeriesSamples{s}
	}
	return storage.NewSeriesToChunkEncoder(dedup.MergeFunc(false)(ss...))
}

// chunkSeriesSamples reads a chunk series as samples.
type chunkSeriesSamples struct{ cs storage.ChunkSeries }

func (c chunkSeriesSamples) Labels() labels.Labels { return c.cs.Labels() }

func (c chunkSeriesSamples) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return &chunkSamples{chunks: c.cs.Iterator(nil)}
}

type chunkSamples struct {
	chunks chunks.Iterator
	cur    chunkenc.Iterator
	err    error
}

func (c *chunkSamples) Next() chunkenc.ValueType {
	for {
		if c.cur != nil {
			if vt := c.cur.Next(); vt != chunkenc.ValNone {
				return vt
			}
			if err := c.cur.Err(); err != nil {
				c.err = err
				return chunkenc.ValNone
			}
		}
		if !c.chunks.Next() {
			c.err = c.chunks.Err()
			return chunkenc.ValNone
		}
		c.cur = c.chunks.At().Chunk.Iterator(c.cur)
	}
}

func (c *chunkSamples) Seek(t int64) chunkenc.ValueType {
	if c.cur != nil && c.cur.AtT() >= t {
		return chunkValueType(c.cur)
	}
	for {
		vt := c.Next()
		if vt == chunkenc.ValNone || c.cur.AtT() >= t {
			return vt
		}
	}
}

// chunkValueType is the type of the current sample of a chunk iterator.
func chunkValueType(it chunkenc.Iterator) chunkenc.ValueType {
	return it.Seek(it.AtT())
}

func (c *chunkSamples) At() (int64, float64) { return c.cur.At() }
func (c *chunkSamples) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	return c.cur.AtHistogram(h)
}
func (c *chunkSamples) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return c.cur.AtFloatHistogram(fh)
}
func (c *chunkSamples) AtT() int64  { return c.cur.AtT() }
func (c *chunkSamples) AtST() int64 { return c.cur.AtST() }
func (c *chunkSamples) Err() error  { return c.err }
