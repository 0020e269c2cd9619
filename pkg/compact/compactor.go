package compact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/downsample"
)

// Config of the compactor.
type Config struct {
	DataDir string
	// Ranges are the compaction levels in ms (DefaultRanges when empty).
	Ranges []int64
	// Retention per resolution (ms → duration); 0 or absent keeps forever.
	Retention map[int64]time.Duration
	// DeleteDelay is how long a block marked for deletion stays, so that
	// store gateways can switch to its replacement first.
	DeleteDelay time.Duration
	// ConsistencyDelay: blocks younger than this (by ULID time) are left
	// alone, their upload may still be settling.
	ConsistencyDelay time.Duration
	// PartialUploadAge: partial blocks older than this are removed.
	PartialUploadAge time.Duration
	// VerticalCompaction merges overlapping blocks instead of halting.
	VerticalCompaction bool
	// ReplicaLabels of HA replicas: their blocks are grouped together and
	// merged into one deduplicated block without these labels.
	ReplicaLabels []string
	Concurrency   int
	// Downsampling writes 5m blocks of raw blocks spanning 40h or more, and
	// 1h blocks of 5m blocks spanning 10 days or more.
	Downsampling          bool
	DownsampleConcurrency int
}

// Compactor compacts one bucket.
type Compactor struct {
	cfg    Config
	bkt    objstore.Bucket
	lister *block.Lister
	logger *slog.Logger
	m      *metrics
}

type metrics struct {
	runs, runFailures, compactions, deletions, marked, partialDeleted prometheus.Counter
	halted                                                            *prometheus.GaugeVec
	groups, blocksToCompact, lastSuccess                              prometheus.Gauge
	blocksToDownsample                                                prometheus.Gauge
	downsampleFailures                                                prometheus.Counter
	downsamples                                                       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		runs:               f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_runs_total", Help: "Compaction runs started."}),
		runFailures:        f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_run_failures_total", Help: "Compaction runs that failed."}),
		compactions:        f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_compactions_total", Help: "Blocks written by compaction."}),
		deletions:          f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_blocks_deleted_total", Help: "Blocks deleted after their deletion delay."}),
		marked:             f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_blocks_marked_for_deletion_total", Help: "Blocks marked for deletion (compacted away or past retention)."}),
		partialDeleted:     f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_partial_uploads_deleted_total", Help: "Abandoned partial uploads removed."}),
		halted:             f.NewGaugeVec(prometheus.GaugeOpts{Name: "strata_compactor_group_halted", Help: "1 when a group is halted, for example on overlapping blocks."}, []string{"group"}),
		groups:             f.NewGauge(prometheus.GaugeOpts{Name: "strata_compactor_groups", Help: "Compaction groups in the bucket."}),
		blocksToCompact:    f.NewGauge(prometheus.GaugeOpts{Name: "strata_compactor_blocks_to_compact", Help: "Blocks in groups with compaction work left, at the end of the last run."}),
		blocksToDownsample: f.NewGauge(prometheus.GaugeOpts{Name: "strata_compactor_blocks_to_downsample", Help: "Blocks waiting to be downsampled in the current or last pass."}),
		downsampleFailures: f.NewCounter(prometheus.CounterOpts{Name: "strata_compactor_downsample_failures_total", Help: "Blocks whose downsampling failed; retried next run."}),
		downsamples:        f.NewCounterVec(prometheus.CounterOpts{Name: "strata_compactor_downsampled_blocks_total", Help: "Downsampled blocks written, by resolution."}, []string{"resolution"}),
		lastSuccess:        f.NewGauge(prometheus.GaugeOpts{Name: "strata_compactor_last_successful_run_timestamp_seconds", Help: "When the last run finished without error."}),
	}
}

// New returns a compactor of bkt.
func New(cfg Config, bkt objstore.InstrumentedBucket, logger *slog.Logger, reg prometheus.Registerer) (*Compactor, error) {
	if len(cfg.Ranges) == 0 {
		cfg.Ranges = DefaultRanges
	}
	if cfg.PartialUploadAge == 0 {
		cfg.PartialUploadAge = 48 * time.Hour
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.DownsampleConcurrency < 1 {
		cfg.DownsampleConcurrency = 1
	}
	if err := CheckRetention(cfg.Retention, cfg.Downsampling); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create --data-dir: %w", err)
	}
	return &Compactor{cfg: cfg, bkt: bkt, lister: block.NewLister(bkt, 16).WithMetaCache(filepath.Join(cfg.DataDir, "meta-cache")), logger: logger, m: newMetrics(reg)}, nil
}

// RunOnce does one pass: clean up, delete what is due, compact every group
// until nothing is left to compact, apply retention.
func (c *Compactor) RunOnce(ctx context.Context) error {
	c.m.runs.Inc()
	if err := c.runOnce(ctx); err != nil {
		c.m.runFailures.Inc()
		return err
	}
	c.m.lastSuccess.SetToCurrentTime()
	return nil
}

func (c *Compactor) runOnce(ctx context.Context) error {
	// What a crash left of earlier runs' work (downloaded sources,
	// half-written results): runs do not overlap, so all of it is
	// garbage, and for groups not compacted again it would stay forever.
	for _, sub := range []string{"compact", "downsample"} {
		if err := os.RemoveAll(filepath.Join(c.cfg.DataDir, sub)); err != nil {
			return fmt.Errorf("clean --data-dir: %w", err)
		}
	}
	listing, err := c.lister.List(ctx)
	if err != nil {
		return err
	}
	c.cleanPartial(ctx, listing)
	// Errors of deletions, kept apart: the compaction loop below keeps
	// only its last round's.
	var deleteErr, errs []error
	if err := c.deleteDue(ctx, listing); err != nil {
		deleteErr = append(deleteErr, err)
	}
	if err := c.markRedundant(ctx, listing); err != nil {
		return errors.Join(append(deleteErr, err)...)
	}

	skipped := false
	for {
		listing, err = c.lister.List(ctx)
		if err != nil {
			return err
		}
		if err := unreadable(listing); err != nil {
			errs = append(errs, err)
			skipped = true
			break
		}
		groups := groupBlocks(c.eligible(listing), c.cfg.ReplicaLabels)
		addNoCompact(groups, listing, c.cfg.ReplicaLabels)
		c.m.groups.Set(float64(len(groups)))
		progressed, left := false, 0
		errs = errs[:0]
		var mu sync.Mutex
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(c.cfg.Concurrency)
		for _, g := range groups {
			srcs, dedupMerge, err := planGroup(g, c.cfg.Ranges, c.cfg.VerticalCompaction, c.cfg.ReplicaLabels)
			var ov *OverlapError
			if errors.As(err, &ov) {
				ov.Group = g.Key
				c.m.halted.WithLabelValues(g.Key).Set(1)
				c.logger.Error("compaction group halted", "group", g.Key, "err", ov)
				mu.Lock()
				errs = append(errs, ov)
				mu.Unlock()
				continue
			}
			c.m.halted.WithLabelValues(g.Key).Set(0)
			if len(srcs) == 0 {
				continue
			}
			left += len(srcs)
			// Groups are independent: --compact.concurrency of them at once.
			eg.Go(func() error {
				err := c.compact(ectx, g, srcs, dedupMerge)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("compact group %s: %w", g.Key, err))
				} else {
					progressed = true
				}
				return nil
			})
		}
		_ = eg.Wait()
		c.m.blocksToCompact.Set(float64(left))
		if !progressed {
			break
		}
	}
	if c.cfg.Downsampling && !skipped {
		// Raw to 5m, then 5m to 1h: the second pass sees the first's blocks.
		for _, p := range []struct{ from, to, minRange int64 }{
			{block.ResolutionRaw, block.Resolution5m, downsample.RawTo5mRange},
			{block.Resolution5m, block.Resolution1h, downsample.To1hRange},
		} {
			if listing, err = c.lister.List(ctx); err != nil {
				return err
			}
			if err := unreadable(listing); err != nil {
				errs = append(errs, err)
				break
			}
			if _, err := c.downsamplePass(ctx, listing, p.from, p.to, p.minRange); err != nil {
				errs = append(errs, err)
			}
		}
		if listing, err = c.lister.List(ctx); err != nil {
			return err
		}
	}
	if err := c.applyRetention(ctx, listing); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(deleteErr, errs...)...)
}

// unreadable is an error when the listing could not read some blocks. A
// block missing from a listing is not gone: compacting around it would
// overlap it, downsampling again what it holds would duplicate it. Such a
// run still deletes what is due and applies retention, which only act on
// blocks that were read.
func unreadable(l *block.Listing) error {
	if len(l.Failed) == 0 {
		return nil
	}
	ids := make([]string, 0, len(l.Failed))
	for id := range l.Failed {
		ids = append(ids, id.String())
	}
	sort.Strings(ids)
	id, _ := ulid.Parse(ids[0])
	return fmt.Errorf("%d blocks could not be read from the bucket (%s: %v); not compacting or downsampling until they can", len(ids), ids[0], l.Failed[id])
}

// eligible returns the complete blocks the compactor may compact: not
// marked for deletion or no-compact, and older than the consistency delay.
func (c *Compactor) eligible(l *block.Listing) []*block.Meta {
	return c.eligibleBlocks(l, true)
}

// eligibleBlocks is eligible, with or without the no-compact mark.
// Downsampling does not heed it: a block kept out of compaction (too big an
// index, say) is still downsampled, as Thanos does, or retention of raw
// data would remove the only copy of its range.
func (c *Compactor) eligibleBlocks(l *block.Listing, heedNoCompact bool) []*block.Meta {
	var out []*block.Meta
	cutoff := time.Now().Add(-c.cfg.ConsistencyDelay)
	for id, m := range l.Metas {
		if l.DeletionMarks[id] != nil || (heedNoCompact && l.NoCompactMarks[id] != nil) {
			continue
		}
		// The delay waits for uploads others may still be making; the
		// compactor's own blocks are complete when listed (Thanos exempts
		// them too), and waiting on them would hold each level and each
		// downsampling for another run.
		if ulid.Time(id.Time()).After(cutoff) && !ownSource(m.Thanos.Source) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// compact downloads the sources, merges them into one block, uploads it
// and marks the sources for deletion. The new block is complete (meta.json
// last) before any source is marked, so a crash at any point leaves either
// the sources alone or the new block plus sources: queries may see both
// for a while (store gateways and the querier deduplicate identical
// samples), and the next run marks the sources again.
func (c *Compactor) compact(ctx context.Context, g *Group, srcs []*block.Meta, dedupMerge bool) error {
	// One directory per group (resolution and stream), as groups may run
	// concurrently.
	dir := filepath.Join(c.cfg.DataDir, "compact", fmt.Sprintf("%d-%x", g.Resolution, g.Labels.Hash()))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if g.Resolution != block.ResolutionRaw {
		// Overlapping aggregate chunks cannot be merged sample by sample
		// (Prometheus' merger would see no samples in them): refuse rather
		// than write a block with data missing.
		for i := 1; i < len(srcs); i++ {
			if srcs[i].MinTime < srcs[i-1].MaxTime {
				return fmt.Errorf("blocks %s and %s at resolution %s overlap; overlapping downsampled blocks cannot be merged: delete one of them (it can be downsampled again from raw data) or mark it with no-compact-mark.json",
					srcs[i-1].ULID, srcs[i].ULID, resolutionName(g.Resolution))
			}
		}
	}
	var dirs []string
	for _, m := range srcs {
		if _, err := block.Download(ctx, c.logger, c.bkt, m.ULID, dir); err != nil {
			return err
		}
		dirs = append(dirs, filepath.Join(dir, m.ULID.String()))
	}
	merge := storage.NewCompactingChunkSeriesMerger(storage.ChainedSeriesMerge)
	if dedupMerge {
		merge = dedupChunkMerge
	}
	comp, err := tsdb.NewLeveledCompactorWithOptions(ctx, nil, c.logger, c.cfg.Ranges, downsample.NewPool(), tsdb.LeveledCompactorOptions{
		MergeFunc: merge, EnableOverlappingCompaction: true,
	})
	if err != nil {
		return fmt.Errorf("create tsdb compactor: %w", err)
	}
	ids, err := comp.Compact(dir, dirs, nil)
	if err != nil {
		return fmt.Errorf("compact blocks %v: %w", ulids(srcs), err)
	}
	for _, id := range ids {
		out := filepath.Join(dir, id.String())
		pm, err := block.ReadMeta(out)
		if err != nil {
			return err
		}
		// A stream's own labels, or the group's (without replica labels)
		// once replicas are merged.
		lbls := srcs[0].Thanos.Labels
		if dedupMerge {
			lbls = g.Labels.Map()
		}
		pm.Thanos = block.Thanos{Version: 1, Labels: lbls, Downsample: block.Downsample{Resolution: g.Resolution}, Source: block.SourceCompactor}
		if err := block.UploadWithMeta(ctx, c.logger, c.bkt, out, pm); err != nil {
			return err
		}
		c.m.compactions.Inc()
		c.logger.Info("compacted blocks", "group", g.Key, "sources", ulids(srcs), "result", id,
			"min_time", time.UnixMilli(pm.MinTime).UTC(), "max_time", time.UnixMilli(pm.MaxTime).UTC(), "level", pm.Compaction.Level)
	}
	for _, m := range srcs {
		if _, err := block.MarkForDeletion(ctx, c.logger, c.bkt, m.ULID, "compacted into a larger block"); err != nil {
			return err
		}
		c.m.marked.Inc()
	}
	return nil
}

func ulids(ms []*block.Meta) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ULID.String()
	}
	return out
}

// markRedundant marks for deletion blocks whose data another block already
// holds (all their sources are among its sources): what a compaction left
// behind when it was interrupted after uploading its result.
func (c *Compactor) markRedundant(ctx context.Context, l *block.Listing) error {
	for id, m := range l.Metas {
		// A block that names no sources cannot be proven redundant.
		if l.DeletionMarks[id] != nil || len(m.Compaction.Sources) == 0 {
			continue
		}
		for oid, o := range l.Metas {
			if oid == id || l.DeletionMarks[oid] != nil || o.Thanos.Downsample.Resolution != m.Thanos.Downsample.Resolution ||
				len(o.Compaction.Sources) <= len(m.Compaction.Sources) || !subset(m.Compaction.Sources, o.Compaction.Sources) ||
				!sameStream(m, o, c.cfg.ReplicaLabels) {
				continue
			}
			if _, err := block.MarkForDeletion(ctx, c.logger, c.bkt, id, "data already in block "+oid.String()); err != nil {
				return err
			}
			l.DeletionMarks[id] = &block.DeletionMark{ID: id}
			c.m.marked.Inc()
			break
		}
	}
	return nil
}

func subset(a, b []ulid.ULID) bool {
	in := map[ulid.ULID]bool{}
	for _, x := range b {
		in[x] = true
	}
	for _, x := range a {
		if !in[x] {
			return false
		}
	}
	return true
}

// deleteDue deletes blocks whose deletion mark is older than the delay.
func (c *Compactor) deleteDue(ctx context.Context, l *block.Listing) error {
	var errs []error
	for id, mark := range l.DeletionMarks {
		if time.Since(time.Unix(mark.DeletionTime, 0)) < c.cfg.DeleteDelay {
			continue
		}
		if err := block.Delete(ctx, c.logger, c.bkt, id); err != nil {
			// One block that cannot be deleted must not hold up the
			// others, nor compaction: it is tried again next run.
			errs = append(errs, fmt.Errorf("delete block %s: %w", id, err))
			continue
		}
		c.m.deletions.Inc()
	}
	return errors.Join(errs...)
}

// cleanPartial removes partial uploads old enough that no upload can still
// be running: an uploader writes meta.json within minutes. Old enough by
// its ULID and by its newest object: a sidecar may ship a block created
// days ago (after a bucket outage, or a lost state file), and deleting its
// chunks mid-upload would leave it complete but for them.
func (c *Compactor) cleanPartial(ctx context.Context, l *block.Listing) {
	age := max(c.cfg.PartialUploadAge, c.cfg.ConsistencyDelay)
	for id := range l.Partial {
		if time.Since(ulid.Time(id.Time())) < age {
			continue
		}
		newest, err := c.newestObject(ctx, id)
		if err != nil {
			c.logger.Warn("cannot tell whether a partial upload is still going on; leaving it", "block", id, "err", err)
			continue
		}
		if time.Since(newest) < age {
			continue
		}
		if err := block.Delete(ctx, c.logger, c.bkt, id); err != nil {
			c.logger.Warn("cannot remove partial upload", "block", id, "err", err)
			continue
		}
		c.m.partialDeleted.Inc()
		c.logger.Info("removed abandoned partial upload", "block", id)
	}
}

// newestObject is when the newest object of block id was written.
func (c *Compactor) newestObject(ctx context.Context, id ulid.ULID) (time.Time, error) {
	var newest time.Time
	err := c.bkt.Iter(ctx, id.String()+"/", func(name string) error {
		a, err := c.bkt.Attributes(ctx, name)
		if err != nil {
			return fmt.Errorf("attributes of %s: %w", name, err)
		}
		if a.LastModified.After(newest) {
			newest = a.LastModified
		}
		return nil
	}, objstore.WithRecursiveIter())
	return newest, err
}

// applyRetention marks blocks past their resolution's retention.
func (c *Compactor) applyRetention(ctx context.Context, l *block.Listing) error {
	for id, m := range l.Metas {
		keep := c.cfg.Retention[m.Thanos.Downsample.Resolution]
		if keep <= 0 || l.DeletionMarks[id] != nil {
			continue
		}
		if time.Since(time.UnixMilli(m.MaxTime)) <= keep {
			continue
		}
		if _, err := block.MarkForDeletion(ctx, c.logger, c.bkt, id, fmt.Sprintf("past retention of %s", keep)); err != nil {
			return err
		}
		c.m.marked.Inc()
	}
	return nil
}

// Run runs the compactor every interval until ctx ends; a failed run is
// logged and retried at the next interval.
func (c *Compactor) Run(ctx context.Context, interval time.Duration) error {
	for {
		start := time.Now()
		if err := c.RunOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.logger.Error("compaction run failed; retrying at the next interval", "err", err)
		} else {
			c.logger.Info("compaction run done", "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// sameStream tells whether o can hold m's data: the same external labels,
// or, for the output of offline dedup, the same without the replica
// labels.
func sameStream(m, o *block.Meta, replicaLabels []string) bool {
	ml, ol := labels.FromMap(m.Thanos.Labels), labels.FromMap(o.Thanos.Labels)
	if labels.Equal(ml, ol) {
		return true
	}
	if len(replicaLabels) == 0 {
		return false
	}
	var b labels.Builder
	b.Reset(ml)
	b.Del(replicaLabels...)
	ml = b.Labels()
	b.Reset(ol)
	b.Del(replicaLabels...)
	return labels.Equal(ml, b.Labels())
}

// addNoCompact gives each group its no-compact-marked blocks, which its
// plans must not span.
func addNoCompact(groups []*Group, l *block.Listing, replicaLabels []string) {
	byKey := map[string]*Group{}
	for _, g := range groups {
		byKey[g.Key] = g
	}
	for id := range l.NoCompactMarks {
		m := l.Metas[id]
		if m == nil || l.DeletionMarks[id] != nil {
			continue
		}
		key, _ := groupKey(m, replicaLabels)
		if g := byKey[key]; g != nil {
			g.NoCompact = append(g.NoCompact, m)
		}
	}
}

// ownSource tells whether a block was written by a compactor (ours or
// Thanos').
func ownSource(src block.SourceType) bool {
	return src == block.SourceCompactor || src == block.SourceCompactorRepair || src == block.SourceBucketRepair
}
