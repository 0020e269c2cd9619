package downsample

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"

	"github.com/strata-metrics/strata/pkg/block"
)

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

// TestHistogramBlock: a 2-day native histogram counter, with a reset,
// downsampled to 5m and on to 1h: the counts add up to the raw samples at
// both resolutions, counters do not drop within a chunk, and min/max are
// absent as in Thanos.
func TestHistogramBlock(t *testing.T) {
	const span, step = 48 * 3600_000, 30_000
	var ss []chunks.Sample
	i := int64(0)
	for ts := int64(0); ts < span; ts += step {
		if ts == span/2 {
			i = 0 // a counter reset
		}
		ss = append(ss, hs{ts, tsdbutil.GenerateTestHistogram(i)})
		i++
	}
	tmp := t.TempDir()
	dir, err := tsdb.CreateBlock([]storage.Series{storage.NewListSeries(labels.FromStrings("__name__", "h"), ss)}, filepath.Join(tmp, "raw"), 10*span, promslog.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	m, err := block.ReadMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Thanos = block.Thanos{Version: 1, Labels: map[string]string{"a": "b"}}
	first := ss[0].H().Count

	src, srcDir := m, dir
	for _, res := range []int64{block.Resolution5m, block.Resolution1h} {
		nm, err := Block(context.Background(), promslog.NewNopLogger(), src, srcDir, filepath.Join(tmp, "out"), res)
		if err != nil {
			t.Fatal(err)
		}
		outDir := filepath.Join(tmp, "out", nm.ULID.String())
		chks := readSeries(t, outDir)[`{__name__="h"}`]
		if len(chks) == 0 {
			t.Fatalf("no series at %dms", res)
		}
		var n float64
		for _, s := range aggrOf(t, chks, AggrCount) {
			n += s.v
		}
		if int(n) != len(ss) {
			t.Fatalf("at %dms counts add up to %v, want %d", res, n, len(ss))
		}
		for _, c := range chks {
			ac := c.Chunk.(*AggrChunk)
			if !ac.IsHistogram() {
				t.Fatalf("at %dms: aggregate chunk is not of histograms", res)
			}
			if _, err := ac.Get(AggrMin); err != ErrAggrNotExist {
				t.Fatalf("at %dms: min aggregate: %v", res, err)
			}
		}
		// Within each chunk the counter histograms never go down: the
		// reset in the raw data is folded in. (Between chunks, Thanos'
		// format keeps no raw edge values for histograms, so a reset that
		// falls in a chunk shows as one at the next chunk's start.)
		var first5m *histogram.FloatHistogram
		for _, c := range chks {
			sub, _ := c.Chunk.(*AggrChunk).Get(AggrCounter)
			it := sub.Iterator(nil)
			var prev *histogram.FloatHistogram
			for it.Next() == chunkenc.ValFloatHistogram {
				_, fh := it.AtFloatHistogram(nil)
				if prev != nil && fh.DetectReset(prev) {
					t.Fatalf("at %dms: counter histogram goes down within a chunk", res)
				}
				if first5m == nil {
					first5m = fh
				}
				prev = fh
			}
		}
		if first5m == nil || first5m.Count < float64(first) {
			t.Fatalf("at %dms: first counter histogram %v below the first raw count %d", res, first5m, first)
		}
		src, srcDir = nm, outDir
	}
}

// memChunks reads chunks straight from their metas.
type memChunks struct{}

func (memChunks) ChunkOrIterable(m chunks.Meta) (chunkenc.Chunk, chunkenc.Iterable, error) {
	return m.Chunk, nil, nil
}
func (memChunks) Close() error { return nil }

// TestHistogramChunksWithStartTimestamps: Prometheus' histogram chunks that
// carry start timestamps downsample to what the same samples without them
// give, rather than failing the block every run.
func TestHistogramChunksWithStartTimestamps(t *testing.T) {
	build := func(c chunkenc.Chunk) chunks.Meta {
		t.Helper()
		app, err := c.Appender()
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < 120; i++ {
			h := tsdbutil.GenerateTestHistogram(i)
			var (
				nc chunkenc.Chunk
				na chunkenc.Appender
			)
			if enc := c.Encoding(); enc == chunkenc.EncFloatHistogram || enc == chunkenc.EncFloatHistogramST {
				nc, _, na, err = app.AppendFloatHistogram(nil, 0, i*30_000, h.ToFloat(nil), false)
			} else {
				nc, _, na, err = app.AppendHistogram(nil, 0, i*30_000, h, false)
			}
			if err != nil || nc != nil {
				t.Fatalf("append %d: new chunk %v, %v", i, nc != nil, err)
			}
			app = na
		}
		return chunks.Meta{Chunk: c, MinTime: 0, MaxTime: 119 * 30_000}
	}
	for _, st := range []chunkenc.Chunk{chunkenc.NewHistogramSTChunk(), chunkenc.NewFloatHistogramSTChunk()} {
		plain := chunkenc.Chunk(chunkenc.NewHistogramChunk())
		if st.Encoding() == chunkenc.EncFloatHistogramST {
			plain = chunkenc.NewFloatHistogramChunk()
		}
		want, err := downsampleSeries(memChunks{}, []chunks.Meta{build(plain)}, block.ResolutionRaw, block.Resolution5m, nil, &seriesBuffers{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := downsampleSeries(memChunks{}, []chunks.Meta{build(st)}, block.ResolutionRaw, block.Resolution5m, nil, &seriesBuffers{})
		if err != nil {
			t.Fatalf("%s: %v", st.Encoding(), err)
		}
		if len(got) != 1 || len(want) != 1 || !bytes.Equal(got[0].Chunk.Bytes(), want[0].Chunk.Bytes()) {
			t.Fatalf("%s: %d chunks, want %d with the same bytes as without start timestamps", st.Encoding(), len(got), len(want))
		}
	}
}
