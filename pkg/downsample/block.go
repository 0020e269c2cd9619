package downsample

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/strata-metrics/strata/pkg/block"
)

// Thresholds of block range at which Thanos downsamples: raw blocks of at
// least 40h get a 5m block, 5m blocks of at least 10 days a 1h block.
const (
	RawTo5mRange = 40 * 3600_000
	To1hRange    = 10 * 24 * 3600_000
)

// Block downsamples the block in srcDir (meta is its meta.json) to
// resolution res and writes the result as a new block into outDir. It
// returns the new block's meta.json, already written. The new block keeps
// the source's time range, compaction sources and external labels. Series
// are streamed one at a time: memory stays with the largest series, not
// the block.
func Block(ctx context.Context, logger *slog.Logger, meta *block.Meta, srcDir, outDir string, res int64) (_ *block.Meta, err error) {
	from := meta.Thanos.Downsample.Resolution
	if from >= res {
		return nil, fmt.Errorf("block %s is at resolution %dms, not finer than %dms", meta.ULID, from, res)
	}
	b, err := tsdb.OpenBlock(logger, srcDir, NewPool(), nil)
	if err != nil {
		return nil, fmt.Errorf("open block %s: %w", meta.ULID, err)
	}
	defer b.Close()
	ir, err := b.Index()
	if err != nil {
		return nil, fmt.Errorf("open index of %s: %w", meta.ULID, err)
	}
	defer ir.Close()
	cr, err := b.Chunks()
	if err != nil {
		return nil, fmt.Errorf("open chunks of %s: %w", meta.ULID, err)
	}
	defer cr.Close()

	id := ulid.MustNew(ulid.Now(), rand.Reader)
	dir := filepath.Join(outDir, id.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	w, err := newBlockWriter(ctx, dir, ir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := w.close(); err == nil && cerr != nil {
			err = cerr
		}
	}()

	k, v := index.AllPostingsKey()
	p, err := ir.Postings(ctx, k, v)
	if err != nil {
		return nil, fmt.Errorf("postings of %s: %w", meta.ULID, err)
	}
	var (
		sb   labels.ScratchBuilder
		chks []chunks.Meta
		out  []chunks.Meta
		buf  seriesBuffers
	)
	for p.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := ir.Series(p.At(), &sb, &chks); err != nil {
			return nil, fmt.Errorf("block %s: series %d: %w", meta.ULID, p.At(), err)
		}
		for i := 1; i < len(chks); i++ {
			if chks[i-1].MaxTime >= chks[i].MinTime {
				return nil, fmt.Errorf("block %s: series %s has overlapping chunks; compact the block first", meta.ULID, sb.Labels())
			}
		}
		if out, err = downsampleSeries(cr, chks, from, res, out[:0], &buf); err != nil {
			return nil, fmt.Errorf("block %s: series %s: %w", meta.ULID, sb.Labels(), err)
		}
		if err := w.addSeries(sb.Labels(), out); err != nil {
			return nil, fmt.Errorf("write series %s: %w", sb.Labels(), err)
		}
	}
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("postings of %s: %w", meta.ULID, err)
	}
	if err := w.close(); err != nil {
		return nil, err
	}

	nm := *meta
	nm.ULID = id
	nm.Stats = w.stats
	nm.Thanos.Downsample.Resolution = res
	nm.Thanos.Source = block.SourceCompactor
	nm.Thanos.Files, nm.Thanos.SegmentFiles = nil, nil
	if err := nm.WriteMeta(dir); err != nil {
		return nil, err
	}
	return &nm, nil
}

// seriesBuffers are reused from series to series.
type seriesBuffers struct {
	raw  []sample
	hist []hsample
	aggr []*AggrChunk
	it   chunkenc.Iterator
}

// downsampleSeries downsamples the chunks of one series. A series can
// change between floats and histograms; each run of one kind is
// downsampled on its own, as Thanos does.
func downsampleSeries(cr tsdb.ChunkReader, chks []chunks.Meta, from, res int64, out []chunks.Meta, b *seriesBuffers) ([]chunks.Meta, error) {
	b.raw, b.hist, b.aggr = b.raw[:0], b.hist[:0], b.aggr[:0]
	var (
		kind       = -1 // 0 floats, 1 histograms
		mint, maxt int64
	)
	flush := func() error {
		var err error
		switch {
		case len(b.aggr) > 0:
			out, err = downsampleAggr(b.aggr, mint, maxt, from, res, out)
		case kind == 1:
			out, err = downsampleRawHist(b.hist, res, out)
		default:
			out = downsampleRaw(b.raw, res, out)
		}
		b.raw, b.hist, b.aggr = b.raw[:0], b.hist[:0], b.aggr[:0]
		return err
	}
	for i := range chks {
		c, _, err := cr.ChunkOrIterable(chks[i])
		if err != nil {
			return out, fmt.Errorf("read chunk: %w", err)
		}
		k := 0
		var ac *AggrChunk
		switch enc := c.Encoding(); {
		case enc == ChunkEncAggr:
			var ok bool
			if ac, ok = c.(*AggrChunk); !ok {
				return out, fmt.Errorf("aggregate chunk of type %T", c)
			}
			if ac.IsHistogram() {
				k = 1
			}
		case enc == chunkenc.EncHistogram || enc == chunkenc.EncFloatHistogram ||
			enc == chunkenc.EncHistogramST || enc == chunkenc.EncFloatHistogramST:
			// The start timestamps are not kept: aggregates have none.
			k = 1
		case enc == chunkenc.EncXOR || enc == chunkenc.EncXOR2:
		default:
			return out, fmt.Errorf("cannot downsample %s chunks", enc)
		}
		if kind != -1 && k != kind {
			if err := flush(); err != nil {
				return out, err
			}
		}
		if len(b.raw)+len(b.hist)+len(b.aggr) == 0 {
			mint = chks[i].MinTime
		}
		kind, maxt = k, chks[i].MaxTime
		switch {
		case ac != nil:
			b.aggr = append(b.aggr, ac)
		case from != 0:
			// Plain chunks in a downsampled block (written by an old Thanos
			// bug): turn them into 5m aggregates first.
			var fixed []chunks.Meta
			if k == 1 {
				if b.hist, err = appendHistograms(c.Iterator(b.it), b.hist[:0]); err == nil {
					fixed, err = downsampleRawHist(b.hist, 5*60_000, nil)
				}
				b.hist = b.hist[:0]
			} else {
				if b.raw, err = appendXOR(c.Iterator(b.it), b.raw[:0]); err == nil {
					fixed = downsampleRaw(b.raw, 5*60_000, nil)
				}
				b.raw = b.raw[:0]
			}
			if err != nil {
				return out, err
			}
			for _, m := range fixed {
				b.aggr = append(b.aggr, m.Chunk.(*AggrChunk))
			}
		case k == 1:
			if b.hist, err = appendHistograms(c.Iterator(b.it), b.hist); err != nil {
				return out, err
			}
		default:
			if b.raw, err = appendXOR(c.Iterator(b.it), b.raw); err != nil {
				return out, err
			}
		}
	}
	if kind == -1 {
		return out, nil
	}
	return out, flush()
}

// blockWriter writes the series of a downsampled block in label order.
type blockWriter struct {
	iw     *index.Writer
	cw     *chunks.Writer
	ref    storage.SeriesRef
	stats  tsdb.BlockStats
	closed bool
}

func newBlockWriter(ctx context.Context, dir string, ir tsdb.IndexReader) (*blockWriter, error) {
	cw, err := chunks.NewWriter(filepath.Join(dir, block.ChunksDirname))
	if err != nil {
		return nil, fmt.Errorf("create chunk writer: %w", err)
	}
	iw, err := index.NewWriter(ctx, filepath.Join(dir, block.IndexFilename))
	if err != nil {
		cw.Close()
		return nil, fmt.Errorf("create index writer: %w", err)
	}
	w := &blockWriter{iw: iw, cw: cw}
	// The downsampled block has the source's series, so the same symbols.
	syms := ir.Symbols()
	for syms.Next() {
		if err := iw.AddSymbol(syms.At()); err != nil {
			w.close()
			return nil, fmt.Errorf("add symbol: %w", err)
		}
	}
	if err := syms.Err(); err != nil {
		w.close()
		return nil, fmt.Errorf("read symbols: %w", err)
	}
	return w, nil
}

func (w *blockWriter) addSeries(lset labels.Labels, chks []chunks.Meta) error {
	if len(chks) == 0 {
		return nil
	}
	if err := w.cw.WriteChunks(chks...); err != nil {
		return err
	}
	if err := w.iw.AddSeries(w.ref, lset, chks...); err != nil {
		return err
	}
	w.ref++
	w.stats.NumSeries++
	w.stats.NumChunks += uint64(len(chks))
	for _, c := range chks {
		w.stats.NumSamples += uint64(c.Chunk.NumSamples())
	}
	return nil
}

func (w *blockWriter) close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	cerr := w.cw.Close()
	if err := w.iw.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("close chunks: %w", cerr)
	}
	return nil
}
