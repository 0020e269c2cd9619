package blockgen

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/strata-metrics/strata/pkg/block"
)

// SourceBlockgen marks blocks written by this generator in their thanos
// section. Thanos readers take any source string, and Thanos' own test
// blocks carry this one.
const SourceBlockgen block.SourceType = "blockgen"

// BlockInfo describes a written block.
type BlockInfo struct {
	Replica int
	Meta    *block.Meta
	// Dir is where the block is on disk (empty for bucket output).
	Dir string
}

// Samples counts the samples of the blocks.
func Samples(blocks []BlockInfo) uint64 {
	var n uint64
	for _, b := range blocks {
		n += b.Meta.Stats.NumSamples
	}
	return n
}

// plan lists the blocks to write: per replica, each aligned block range
// that overlaps [MinTime, MaxTime).
func plan(cfg *Config) []blockSpec {
	bd := cfg.BlockDuration.Milliseconds()
	var specs []blockSpec
	for r := 0; r < cfg.Replicas; r++ {
		for s := floorDiv(cfg.MinTime, bd) * bd; s < cfg.MaxTime; s += bd {
			specs = append(specs, blockSpec{replica: r, min: max(s, cfg.MinTime), max: min(s+bd, cfg.MaxTime)})
		}
	}
	return specs
}

// generate writes every planned block into a directory from dirFor and
// hands each to done, cfg.Concurrency blocks at a time; the first failure
// cancels the rest.
func generate(ctx context.Context, cfg Config, dirFor func(replica int) string, done func(context.Context, BlockInfo) error) ([]BlockInfo, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("blockgen: %w", err)
	}
	defs := catalog(&cfg)
	symbols := symbolsOf(defs)

	var (
		mu  sync.Mutex
		out []BlockInfo
	)
	specs := plan(&cfg)
	// Spare cores encode chunks within a block when there are fewer blocks
	// than cores, as when writing a million series into one block.
	workers := max(1, cfg.Concurrency/min(cfg.Concurrency, len(specs)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Concurrency)
	for _, spec := range specs {
		g.Go(func() error {
			dir := dirFor(spec.replica)
			pm, err := writeBlock(gctx, &cfg, defs, symbols, spec, dir, workers)
			if err != nil {
				return fmt.Errorf("blockgen: write block %d-%d of replica %d: %w", spec.min, spec.max, spec.replica, err)
			}
			if pm == nil {
				return nil
			}
			ext := map[string]string{}
			for k, v := range cfg.ExternalLabels {
				ext[k] = v
			}
			ext[cfg.ReplicaLabel] = cfg.ReplicaValues[spec.replica]
			bi := BlockInfo{Replica: spec.replica, Dir: filepath.Join(dir, pm.ULID.String()), Meta: &block.Meta{
				BlockMeta: *pm,
				Thanos:    block.Thanos{Version: 1, Labels: ext, Source: SourceBlockgen},
			}}
			if err := done(gctx, bi); err != nil {
				return err
			}
			mu.Lock()
			out = append(out, bi)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Replica != out[j].Replica {
			return out[i].Replica < out[j].Replica
		}
		return out[i].Meta.MinTime < out[j].Meta.MinTime
	})
	return out, nil
}

// WriteDir writes the blocks as a Prometheus data directory would hold them
// (plain Prometheus meta.json, so a real Prometheus loads them): into dir
// itself with one replica, into dir/<replica value>/ with several.
func WriteDir(ctx context.Context, cfg Config, dir string) ([]BlockInfo, error) {
	cfg.Defaults()
	dirFor := func(r int) string {
		if cfg.Replicas == 1 {
			return dir
		}
		return filepath.Join(dir, cfg.ReplicaValues[r])
	}
	for r := 0; r < cfg.Replicas; r++ {
		if err := os.MkdirAll(dirFor(r), 0o755); err != nil {
			return nil, fmt.Errorf("blockgen: %w", err)
		}
	}
	return generate(ctx, cfg, dirFor, func(context.Context, BlockInfo) error { return nil })
}

// WriteBucket writes the blocks into bkt with the thanos meta section
// (external labels plus the replica label), through block.UploadWithMeta.
// Each block is staged in a temporary directory and removed once uploaded,
// so the disk holds at most Concurrency blocks.
func WriteBucket(ctx context.Context, logger *slog.Logger, cfg Config, bkt objstore.Bucket) ([]BlockInfo, error) {
	tmp, err := os.MkdirTemp("", "blockgen-")
	if err != nil {
		return nil, fmt.Errorf("blockgen: %w", err)
	}
	defer os.RemoveAll(tmp)
	blocks, err := generate(ctx, cfg, func(int) string { return tmp }, func(ctx context.Context, bi BlockInfo) error {
		defer os.RemoveAll(bi.Dir)
		if err := block.UploadWithMeta(ctx, logger, bkt, bi.Dir, bi.Meta); err != nil {
			return fmt.Errorf("blockgen: %w", err)
		}
		return nil
	})
	for i := range blocks {
		blocks[i].Dir = ""
	}
	return blocks, err
}

func symbolsOf(defs []seriesDef) []string {
	set := map[string]struct{}{}
	for _, d := range defs {
		d.lset.Range(func(l labels.Label) {
			set[l.Name] = struct{}{}
			set[l.Value] = struct{}{}
		})
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
