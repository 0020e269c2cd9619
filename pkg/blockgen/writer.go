package blockgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
)

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

// writeBlock writes one block of the catalogue into dir/<ULID>, encoding
// chunks with workers goroutines, and returns its Prometheus meta, or nil
// if the block would hold no samples.
func writeBlock(ctx context.Context, cfg *Config, defs []seriesDef, symbols []string, spec blockSpec, dir string, workers int) (*tsdb.BlockMeta, error) {
	id := blockULID(cfg.Seed, spec.replica, spec.min)
	final := filepath.Join(dir, id.String())
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create block dir: %w", err)
	}
	meta, err := writeBlockFiles(ctx, cfg, defs, symbols, spec, tmp, workers)
	if err != nil || meta.Stats.NumSamples == 0 {
		// No scrape fell into a short range: write no block, as Prometheus
		// writes none for an empty head.
		os.RemoveAll(tmp)
		return nil, err
	}
	meta.ULID = id
	meta.Compaction.Sources = []ulid.ULID{id}
	b, err := json.MarshalIndent(meta, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode meta.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("write meta.json: %w", err)
	}
	if err := os.RemoveAll(final); err != nil {
		return nil, fmt.Errorf("replace %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("rename block dir: %w", err)
	}
	return meta, nil
}

// writeBlockFiles writes the chunks and index of a block into dir.
func writeBlockFiles(ctx context.Context, cfg *Config, defs []seriesDef, symbols []string, spec blockSpec, dir string, workers int) (_ *tsdb.BlockMeta, err error) {
	cw, err := chunks.NewWriter(filepath.Join(dir, "chunks"))
	if err != nil {
		return nil, fmt.Errorf("open chunk writer: %w", err)
	}
	defer func() {
		if cerr := cw.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close chunk writer: %w", cerr)
		}
	}()
	iw, err := index.NewWriter(ctx, filepath.Join(dir, "index"))
	if err != nil {
		return nil, fmt.Errorf("open index writer: %w", err)
	}
	defer func() {
		if cerr := iw.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close index writer: %w", cerr)
		}
	}()
	for _, s := range symbols {
		if err := iw.AddSymbol(s); err != nil {
			return nil, fmt.Errorf("add symbol: %w", err)
		}
	}

	meta := &tsdb.BlockMeta{MinTime: spec.min, MaxTime: spec.max, Version: 1}
	meta.Compaction.Level = 1
	var ref storage.SeriesRef
	err = encodeSeries(ctx, cfg, defs, spec, workers, func(b *encodedBatch) error {
		for i := range b.samples {
			chks := b.metas[b.offs[i]:b.offs[i+1]]
			if len(chks) == 0 {
				continue
			}
			d := &defs[b.first+i]
			if err := cw.WriteChunks(chks...); err != nil {
				return fmt.Errorf("write chunks: %w", err)
			}
			if err := iw.AddSeries(ref, d.lset, chks...); err != nil {
				return fmt.Errorf("add series %s: %w", d.lset, err)
			}
			ref++
			n := uint64(b.samples[i])
			meta.Stats.NumSeries++
			meta.Stats.NumChunks += uint64(len(chks))
			meta.Stats.NumSamples += n
			if d.kind == kindNative {
				meta.Stats.NumHistogramSamples += n
			} else {
				meta.Stats.NumFloatSamples += n
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return meta, nil
}
