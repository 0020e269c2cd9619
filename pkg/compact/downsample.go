package compact

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sync/errgroup"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/downsample"
)

// downsamplePass writes a block at resolution to for every block at
// resolution from whose range is at least minRange and whose data no block
// at resolution to holds yet. It returns how many blocks it wrote.
func (c *Compactor) downsamplePass(ctx context.Context, l *block.Listing, from, to, minRange int64) (int, error) {
	// Sources already downsampled: the union of the sources of all blocks
	// at the target resolution, marked or not, so that a raw block compacted
	// further after its data were downsampled is not done again.
	done := map[ulid.ULID]bool{}
	for _, m := range l.Metas {
		if m.Thanos.Downsample.Resolution == to {
			for _, s := range m.Compaction.Sources {
				done[s] = true
			}
		}
	}
	var todo []*block.Meta
	for _, m := range c.eligibleBlocks(l, false) {
		if m.Thanos.Downsample.Resolution != from || m.MaxTime-m.MinTime < minRange || l.NoDownsampleMarks[m.ULID] != nil {
			continue
		}
		covered := len(m.Compaction.Sources) > 0
		for _, s := range m.Compaction.Sources {
			covered = covered && done[s]
		}
		if !covered {
			todo = append(todo, m)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].MinTime < todo[j].MinTime })
	c.m.blocksToDownsample.Set(float64(len(todo)))

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.DownsampleConcurrency)
	errs := make([]error, len(todo))
	for i, m := range todo {
		g.Go(func() error {
			if err := c.downsampleBlock(gctx, m, to); err != nil {
				c.m.downsampleFailures.Inc()
				errs[i] = fmt.Errorf("downsample block %s to %s: %w", m.ULID, resolutionName(to), err)
			}
			return nil
		})
	}
	_ = g.Wait()
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// downsampleBlock downloads one block, downsamples it and uploads the
// result. A crash leaves at most a partial upload, which readers ignore and
// cleanPartial removes; the source stays undone and is done next run.
func (c *Compactor) downsampleBlock(ctx context.Context, m *block.Meta, res int64) error {
	start := time.Now()
	dir := filepath.Join(c.cfg.DataDir, "downsample", m.ULID.String())
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := block.Download(ctx, c.logger, c.bkt, m.ULID, dir); err != nil {
		return err
	}
	out := filepath.Join(dir, "out")
	nm, err := downsample.Block(ctx, c.logger, m, filepath.Join(dir, m.ULID.String()), out, res)
	if err != nil {
		return err
	}
	if err := block.UploadWithMeta(ctx, c.logger, c.bkt, filepath.Join(out, nm.ULID.String()), nm); err != nil {
		return err
	}
	c.m.downsamples.WithLabelValues(resolutionName(res)).Inc()
	c.logger.Info("downsampled block", "source", m.ULID, "result", nm.ULID, "resolution", resolutionName(res),
		"series", nm.Stats.NumSeries, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func resolutionName(res int64) string {
	switch res {
	case block.ResolutionRaw:
		return "raw"
	case block.Resolution5m:
		return "5m"
	case block.Resolution1h:
		return "1h"
	}
	return fmt.Sprintf("%dms", res)
}

// CheckRetention refuses retention settings that would delete a resolution
// before the next one is made from it: raw blocks are downsampled once they
// span 40h, 5m blocks once they span 10 days.
func CheckRetention(retention map[int64]time.Duration, downsampling bool) error {
	if !downsampling {
		return nil
	}
	if r := retention[block.ResolutionRaw]; r != 0 && r < downsample.RawTo5mRange*time.Millisecond {
		return fmt.Errorf("--retention.resolution-raw=%s is shorter than 40h: raw blocks would be deleted before they are downsampled to 5m; raise it, set it to 0 (keep forever) or use --downsampling.disable", r)
	}
	if r := retention[block.Resolution5m]; r != 0 && r < downsample.To1hRange*time.Millisecond {
		return fmt.Errorf("--retention.resolution-5m=%s is shorter than 10d: 5m blocks would be deleted before they are downsampled to 1h; raise it, set it to 0 (keep forever) or use --downsampling.disable", r)
	}
	return nil
}
