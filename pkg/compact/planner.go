package compact

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/pkg/block"
)

// DefaultRanges are Thanos' compaction levels: 2h blocks become 8h, then 2d,
// then 14d blocks.
var DefaultRanges = []int64{2 * 3600_000, 8 * 3600_000, 48 * 3600_000, 14 * 24 * 3600_000}

// Group is the blocks of one stream at one resolution.
type Group struct {
	Key        string
	Labels     labels.Labels // external labels, less the replica labels
	Resolution int64
	Blocks     []*block.Meta // sorted by MinTime
	// NoCompact are the group's blocks with a no-compact mark: no
	// compaction spans them, so that removing the mark later does not
	// leave an overlap behind (Thanos splits its plans at them too).
	NoCompact []*block.Meta
}

// groupKey is the key of the group of m.
func groupKey(m *block.Meta, replicaLabels []string) (string, labels.Labels) {
	b := labels.NewBuilder(m.LabelSet())
	b.Del(replicaLabels...)
	lset := b.Labels()
	return fmt.Sprintf("%d@%v", m.Thanos.Downsample.Resolution, lset.Hash()), lset
}

// groupBlocks groups blocks by resolution and external labels without the
// replica labels, so that blocks of HA replicas fall in one group and can be
// deduplicated.
func groupBlocks(metas []*block.Meta, replicaLabels []string) []*Group {
	byKey := map[string]*Group{}
	for _, m := range metas {
		key, lset := groupKey(m, replicaLabels)
		g, ok := byKey[key]
		if !ok {
			g = &Group{Key: key, Labels: lset, Resolution: m.Thanos.Downsample.Resolution}
			byKey[key] = g
		}
		g.Blocks = append(g.Blocks, m)
	}
	out := make([]*Group, 0, len(byKey))
	for _, g := range byKey {
		sort.Slice(g.Blocks, func(i, j int) bool {
			if g.Blocks[i].MinTime != g.Blocks[j].MinTime {
				return g.Blocks[i].MinTime < g.Blocks[j].MinTime
			}
			return g.Blocks[i].ULID.Compare(g.Blocks[j].ULID) < 0
		})
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// OverlapError names the overlapping blocks that halted a group.
type OverlapError struct {
	Group  string
	Blocks []*block.Meta
}

func (e *OverlapError) Error() string {
	var s []string
	for _, b := range e.Blocks {
		s = append(s, fmt.Sprintf("%s [%d, %d) %v", b.ULID, b.MinTime, b.MaxTime, b.Thanos.Labels))
	}
	return fmt.Sprintf("group %s has overlapping blocks: %s; enable vertical compaction (--compact.enable-vertical-compaction, or --deduplication.replica-label for HA replicas) or remove or mark one of them (no-compact-mark.json)",
		e.Group, strings.Join(s, "; "))
}

// overlaps returns the first set of mutually overlapping blocks, if any.
func overlaps(blocks []*block.Meta) []*block.Meta {
	for i := 1; i < len(blocks); i++ {
		var set []*block.Meta
		maxT := blocks[i-1].MaxTime
		if blocks[i].MinTime >= maxT {
			continue
		}
		set = append(set, blocks[i-1])
		for j := i; j < len(blocks) && blocks[j].MinTime < maxT; j++ {
			set = append(set, blocks[j])
			maxT = max(maxT, blocks[j].MaxTime)
		}
		return set
	}
	return nil
}

// plan returns the next blocks of the group to compact into one, or nil.
// Overlapping blocks come first (vertical compaction); then, for each level
// above the smallest, the oldest aligned window holding more than one block
// that is complete: the newest block of the group ends at or after the
// window's end, so no more data is coming for it.
//
// No window spans a block in barriers (no-compact-marked blocks of the
// stream): the blocks on either side of one are planned apart.
func plan(blocks, barriers []*block.Meta, ranges []int64, vertical bool) ([]*block.Meta, error) {
	if ov := overlaps(blocks); ov != nil {
		if !vertical {
			return nil, &OverlapError{Blocks: ov}
		}
		return ov, nil
	}
	if len(blocks) < 2 {
		return nil, nil
	}
	// The newest eligible block says which windows are complete.
	newest := blocks[len(blocks)-1].MaxTime
	var isBarrier map[*block.Meta]bool
	if len(barriers) > 0 {
		isBarrier = map[*block.Meta]bool{}
		blocks = append([]*block.Meta(nil), blocks...)
		for _, b := range barriers {
			isBarrier[b] = true
			blocks = append(blocks, b)
		}
		sort.SliceStable(blocks, func(i, j int) bool { return blocks[i].MinTime < blocks[j].MinTime })
	}
	return planWindows(blocks, isBarrier, ranges, newest), nil
}

// planWindows is plan's search for the oldest complete window with more
// than one block; a barrier closes the window it falls in.
func planWindows(blocks []*block.Meta, isBarrier map[*block.Meta]bool, ranges []int64, newest int64) []*block.Meta {
	for _, r := range ranges[1:] {
		var (
			window []*block.Meta
			start  int64 = -1
		)
		flush := func() []*block.Meta {
			if len(window) > 1 && (start+r <= newest || window[len(window)-1].MaxTime-window[0].MinTime >= r) {
				return window
			}
			return nil
		}
		for _, b := range blocks {
			if isBarrier[b] {
				if out := flush(); out != nil {
					return out
				}
				window, start = nil, -1
				continue
			}
			if b.MaxTime-b.MinTime >= r {
				// Already this big or bigger: not part of this level.
				if out := flush(); out != nil {
					return out
				}
				window, start = nil, -1
				continue
			}
			ws := b.MinTime - mod(b.MinTime, r)
			if b.MaxTime > ws+r {
				// Crosses the window boundary (unaligned): leave it.
				if out := flush(); out != nil {
					return out
				}
				window, start = nil, -1
				continue
			}
			if ws != start {
				if out := flush(); out != nil {
					return out
				}
				window, start = nil, ws
			}
			window = append(window, b)
		}
		if out := flush(); out != nil {
			return out
		}
	}
	return nil
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// planGroup picks the next compaction of a group: first the horizontal
// compaction of each stream (one replica's blocks, or already deduplicated
// ones) on its own; then, with replica labels, blocks of different replicas
// covering the same range are merged into one deduplicated block. Merging
// replicas only once their blocks line up gives the dedup one series per
// replica, so every output series follows one replica, switching only
// across gaps.
func planGroup(g *Group, ranges []int64, vertical bool, replicaLabels []string) (srcs []*block.Meta, dedupMerge bool, err error) {
	streams := map[uint64][]*block.Meta{}
	var keys []uint64
	for _, b := range g.Blocks {
		h := b.LabelSet().Hash()
		if _, ok := streams[h]; !ok {
			keys = append(keys, h)
		}
		streams[h] = append(streams[h], b)
	}
	barriers := map[uint64][]*block.Meta{}
	for _, b := range g.NoCompact {
		h := b.LabelSet().Hash()
		barriers[h] = append(barriers[h], b)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		srcs, err := plan(streams[k], barriers[k], ranges, vertical)
		if err != nil || len(srcs) > 0 {
			return srcs, false, err
		}
	}
	if len(replicaLabels) == 0 || len(keys) < 2 {
		return nil, false, nil
	}
	byRange := map[[2]int64][]*block.Meta{}
	for _, b := range g.Blocks {
		r := [2]int64{b.MinTime, b.MaxTime}
		byRange[r] = append(byRange[r], b)
	}
	var best []*block.Meta
	for _, bs := range byRange {
		if len(bs) > 1 && (best == nil || bs[0].MinTime < best[0].MinTime) {
			best = bs
		}
	}
	if best != nil {
		// Replicas in the order of their labels, so the same replica is
		// preferred where both have the data.
		sort.Slice(best, func(i, j int) bool { return labels.Compare(best[i].LabelSet(), best[j].LabelSet()) < 0 })
	}
	return best, best != nil, nil
}
