package bucketstore

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/strata-metrics/strata/pkg/block"
)

// Sync lists the bucket and updates the served blocks: complete blocks in
// the time range that the relabel config keeps, not marked for deletion for
// longer than the delay. Corrupt and unreadable blocks are logged, counted
// and skipped.
func (s *Store) Sync(ctx context.Context) error {
	start := time.Now()
	s.syncs.Inc()
	defer func() { s.syncDuration.Observe(time.Since(start).Seconds()) }()
	l, err := s.lister.List(ctx)
	if err != nil {
		s.syncFailures.Inc()
		return err
	}
	for id, err := range l.Corrupt {
		s.badBlocks.Inc()
		s.logger.Warn("skipping corrupt block", "block", id, "err", err)
	}
	for id, err := range l.Failed {
		s.badBlocks.Inc()
		s.logger.Warn("could not read block; serving it as before if it was served, trying again next sync", "block", id, "err", err)
	}
	keep := map[ulid.ULID]*block.Meta{}
	shardMin, shardMax := s.minTime(), s.maxTime()
	for id, m := range l.Metas {
		if mark := l.DeletionMarks[id]; mark != nil && time.Since(time.Unix(mark.DeletionTime, 0)) > s.cfg.IgnoreDeletionMarksDelay {
			continue
		}
		if m.MaxTime <= shardMin || m.MinTime > shardMax {
			continue
		}
		if s.cfg.ConsistencyDelay > 0 && time.Since(ulid.Time(id.Time())) < s.cfg.ConsistencyDelay {
			continue
		}
		if len(s.cfg.Relabel) > 0 {
			if !relabel.ProcessBuilder(labels.NewBuilder(m.LabelSet()), s.cfg.Relabel...) {
				continue
			}
		}
		keep[id] = m
	}
	s.mu.Lock()
	for id := range s.blocks {
		if keep[id] == nil {
			if _, failed := l.Failed[id]; failed {
				// Not read this time (a bucket fault), not gone: it
				// stays served, with its local index copy.
				continue
			}
			delete(s.blocks, id)
			// A request may still read its mapping; the file goes now,
			// the mapping with the block (see bucketBlock.index).
			_ = os.Remove(indexPath(s.cfg.DataDir, id.String()))
			_ = os.Remove(indexPath(s.cfg.DataDir, id.String()) + ".pages")
			_ = os.Remove(filepath.Join(s.cfg.DataDir, id.String()+".index-header"))
		}
	}
	for id, m := range keep {
		if s.blocks[id] == nil {
			s.blocks[id] = newBucketBlock(s.ctx, m, s.bkt, s.chunks, s.cfg.DataDir)
		}
	}
	s.blocksLoaded.Set(float64(len(s.blocks)))
	served := make(map[ulid.ULID]bool, len(s.blocks))
	for id := range s.blocks {
		served[id] = true
	}
	s.mu.Unlock()
	s.removeOrphans(served)
	return nil
}

// minTime and maxTime are the time shard's bounds now.
func (s *Store) minTime() int64 {
	if s.cfg.MinTimeAgo != 0 {
		return time.Now().Add(-s.cfg.MinTimeAgo).UnixMilli()
	}
	return s.cfg.MinTime
}

func (s *Store) maxTime() int64 {
	if s.cfg.MaxTimeAgo != 0 {
		return time.Now().Add(-s.cfg.MaxTimeAgo).UnixMilli()
	}
	return s.cfg.MaxTime
}

// localSuffixes are the files a block's local index copy consists of.
var localSuffixes = []string{".index", ".index.pages", ".index.pages.tmp", ".index-header"}

// removeOrphans deletes the local index copies of blocks not served: those
// deleted from the bucket while the store was down, dropped by a changed
// configuration, or opened again by a request that still held a dropped
// block. Without this --data-dir only grows.
func (s *Store) removeOrphans(served map[ulid.ULID]bool) {
	entries, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || len(name) < ulid.EncodedSize {
			continue
		}
		id, err := ulid.Parse(name[:ulid.EncodedSize])
		if err != nil || served[id] || !slices.Contains(localSuffixes, name[ulid.EncodedSize:]) {
			continue
		}
		if err := os.Remove(filepath.Join(s.cfg.DataDir, name)); err == nil {
			s.logger.Debug("removed the local index copy of a block not served", "file", name)
		}
	}
}

// Run syncs every interval until ctx ends.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("bucket sync failed; serving the blocks of the last sync", "err", err)
		}
	}
}

func (s *Store) snapshot() []*bucketBlock {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*bucketBlock, 0, len(s.blocks))
	for _, b := range s.blocks {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.MinTime < out[j].meta.MinTime })
	return out
}
