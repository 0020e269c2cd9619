package blockgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
)

// samplesPerChunk is where Prometheus' head cuts chunks.
const samplesPerChunk = 120

// maxJitterMs bounds how far a replica's scrape lands after the nominal time.
const maxJitterMs = 4

// blockSpec is one block to write: a replica's slice of time.
type blockSpec struct {
	replica  int
	min, max int64 // ms, max exclusive
}

// blockULID is derived from the seed, replica and block start so that
// re-running the generator writes the same block names.
func blockULID(seed int64, replica int, start int64) ulid.ULID {
	var key [32]byte
	for i := 0; i < 8; i++ {
		key[i] = byte(uint64(seed) >> (8 * i))
		key[8+i] = byte(uint64(replica) >> (8 * i))
		key[16+i] = byte(uint64(start) >> (8 * i))
	}
	return ulid.MustNew(uint64(start), rand.NewChaCha8(key))
}

// scrapeTime is when replica r scraped target at nominal scrape k.
func scrapeTime(cfg *Config, target, replica int, k int64) int64 {
	iv := cfg.ScrapeInterval.Milliseconds()
	phase := int64(splitmix(uint64(cfg.Seed)^uint64(target)<<1) % uint64(iv))
	jitter := int64(splitmix(uint64(cfg.Seed)^uint64(target)<<20^uint64(replica)<<44^uint64(k)) % (maxJitterMs + 1))
	return k*iv + phase + int64(replica)*maxJitterMs/2 + jitter
}

// writeBlock writes one block of the catalogue into dir/<ULID> and returns
// its Prometheus meta.
func writeBlock(ctx context.Context, cfg *Config, defs []seriesDef, symbols []string, spec blockSpec, dir string) (*tsdb.BlockMeta, error) {
	id := blockULID(cfg.Seed, spec.replica, spec.min)
	final := filepath.Join(dir, id.String())
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create block dir: %w", err)
	}
	cw, err := chunks.NewWriter(filepath.Join(tmp, "chunks"))
	if err != nil {
		return nil, fmt.Errorf("open chunk writer: %w", err)
	}
	iw, err := index.NewWriter(ctx, filepath.Join(tmp, "index"))
	if err != nil {
		cw.Close()
		return nil, fmt.Errorf("open index writer: %w", err)
	}
	closeAll := func() { cw.Close(); iw.Close() }
	for _, s := range symbols {
		if err := iw.AddSymbol(s); err != nil {
			closeAll()
			return nil, fmt.Errorf("add symbol: %w", err)
		}
	}

	meta := &tsdb.BlockMeta{ULID: id, MinTime: spec.min, MaxTime: spec.max, Version: 1}
	meta.Compaction.Level = 1
	meta.Compaction.Sources = []ulid.ULID{id}
	g := newSeriesGen(cfg, spec)
	var ref storage.SeriesRef
	for i := range defs {
		if i%4096 == 0 && ctx.Err() != nil {
			closeAll()
			return nil, ctx.Err()
		}
		chks, nSamples, err := g.chunks(&defs[i])
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("series %s: %w", defs[i].lset, err)
		}
		if len(chks) == 0 {
			continue
		}
		if err := cw.WriteChunks(chks...); err != nil {
			closeAll()
			return nil, fmt.Errorf("write chunks: %w", err)
		}
		if err := iw.AddSeries(ref, defs[i].lset, chks...); err != nil {
			closeAll()
			return nil, fmt.Errorf("add series %s: %w", defs[i].lset, err)
		}
		ref++
		meta.Stats.NumSeries++
		meta.Stats.NumChunks += uint64(len(chks))
		meta.Stats.NumSamples += uint64(nSamples)
		if defs[i].kind == kindNative {
			meta.Stats.NumHistogramSamples += uint64(nSamples)
		} else {
			meta.Stats.NumFloatSamples += uint64(nSamples)
		}
		g.release(chks)
	}
	if err := cw.Close(); err != nil {
		iw.Close()
		return nil, fmt.Errorf("close chunk writer: %w", err)
	}
	if err := iw.Close(); err != nil {
		return nil, fmt.Errorf("close index writer: %w", err)
	}
	b, err := json.MarshalIndent(meta, "", "\t")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("write meta.json: %w", err)
	}
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("rename block dir: %w", err)
	}
	return meta, nil
}

// seriesGen turns series definitions into chunks for one block, reusing
// buffers across series.
type seriesGen struct {
	cfg   *Config
	spec  blockSpec
	iv    int64
	metas []chunks.Meta
	h     histogram.Histogram
}

func newSeriesGen(cfg *Config, spec blockSpec) *seriesGen {
	return &seriesGen{cfg: cfg, spec: spec, iv: cfg.ScrapeInterval.Milliseconds()}
}

// chunks returns the chunks of d within the block. They stay valid until
// release.
func (g *seriesGen) chunks(d *seriesDef) ([]chunks.Meta, int, error) {
	g.metas = g.metas[:0]
	// First nominal scrape whose jittered time can be in the block.
	k := floorDiv(g.spec.min-g.iv-maxJitterMs*2, g.iv)
	var (
		cur     chunkenc.Chunk
		app     chunkenc.Appender
		n, inCh int
		err     error
	)
	finish := func() {
		if cur != nil && inCh > 0 {
			g.metas[len(g.metas)-1].Chunk = cur
		}
	}
	start := func(t int64) error {
		finish()
		if d.kind == kindNative {
			cur = chunkenc.NewHistogramChunk()
		} else {
			cur = chunkenc.NewXORChunk()
		}
		app, err = cur.Appender()
		if err != nil {
			return err
		}
		g.metas = append(g.metas, chunks.Meta{MinTime: t, MaxTime: t})
		inCh = 0
		return nil
	}
	for ; ; k++ {
		t := scrapeTime(g.cfg, d.target, g.spec.replica, k)
		if t < g.spec.min {
			continue
		}
		if t >= g.spec.max {
			break
		}
		// Values are functions of continuous time, so replicas scraping a
		// few milliseconds apart see slightly different values.
		x := float64(t) / float64(g.iv)
		if cur == nil || inCh == samplesPerChunk {
			if err := start(t); err != nil {
				return nil, 0, err
			}
		}
		if d.kind == kindNative {
			d.histogramAt(x, &g.h)
			newChk, recoded, newApp, err := app.AppendHistogram(nil, 0, t, &g.h, false)
			if err != nil {
				return nil, 0, err
			}
			if newChk != nil {
				if !recoded {
					// A counter reset cut a new chunk: close the current one.
					g.metas[len(g.metas)-1].Chunk = cur
					g.metas = append(g.metas, chunks.Meta{MinTime: t, MaxTime: t})
					inCh = 0
				}
				cur, app = newChk, newApp
			}
		} else {
			app.Append(0, t, d.floatAt(x, k))
		}
		g.metas[len(g.metas)-1].MaxTime = t
		inCh++
		n++
	}
	finish()
	return g.metas, n, nil
}

// release hands back chunks once they are written.
func (g *seriesGen) release(chks []chunks.Meta) {
	for i := range chks {
		chks[i].Chunk = nil
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
