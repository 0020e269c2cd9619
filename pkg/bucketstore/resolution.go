package bucketstore

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// blocksFor picks, for each stream (external label set), the blocks that
// cover [mint, maxt] at the coarsest resolution not above maxRes, and fills
// the time the coarse blocks leave uncovered with finer ones: a query over a
// year reads 1h aggregates where they exist and raw data for the last days
// that are not downsampled yet. blocks must be sorted by MinTime.
func blocksFor(blocks []*bucketBlock, mint, maxt, maxRes int64) []*bucketBlock {
	streams := map[uint64][]*bucketBlock{}
	var order []uint64
	for _, b := range blocks {
		if b.meta.MaxTime <= mint || b.meta.MinTime > maxt || b.meta.Thanos.Downsample.Resolution > maxRes {
			continue
		}
		h := b.ext.Hash()
		if _, ok := streams[h]; !ok {
			order = append(order, h)
		}
		streams[h] = append(streams[h], b)
	}
	for _, sb := range streams {
		// A total order: the blocks come from a map.
		slices.SortStableFunc(sb, func(x, y *bucketBlock) int {
			if c := cmp.Compare(x.meta.MinTime, y.meta.MinTime); c != 0 {
				return c
			}
			if c := cmp.Compare(x.meta.MaxTime, y.meta.MaxTime); c != 0 {
				return c
			}
			return x.meta.ULID.Compare(y.meta.ULID)
		})
	}
	var out []*bucketBlock
	for _, h := range order {
		sb := streams[h]
		var res []int64
		for _, b := range sb {
			if r := b.meta.Thanos.Downsample.Resolution; !slices.Contains(res, r) {
				res = append(res, r)
			}
		}
		// Coarsest first.
		slices.Sort(res)
		slices.Reverse(res)
		out = fill(out, sb, res, mint, maxt)
	}
	return out
}

// fill appends the blocks at resolution res[0] overlapping [mint, maxt]
// and, for the gaps between them, the blocks of the finer resolutions.
// Times are block times: [MinTime, MaxTime).
func fill(out, blocks []*bucketBlock, res []int64, mint, maxt int64) []*bucketBlock {
	if len(res) == 0 || mint > maxt {
		return out
	}
	start := mint
	for _, b := range blocks {
		// Every block of this resolution in the range, also one that an
		// earlier block covers (an out-of-order block, or the sources of
		// a compaction not deleted yet): as in Thanos, the querier merges
		// what overlaps, and leaving one out could lose its data.
		if b.meta.Thanos.Downsample.Resolution != res[0] || b.meta.MaxTime <= mint || b.meta.MinTime > maxt {
			continue
		}
		out = fill(out, blocks, res[1:], start, b.meta.MinTime-1)
		out = append(out, b)
		start = max(start, b.meta.MaxTime)
	}
	return fill(out, blocks, res[1:], start, maxt)
}

// aggrChunk turns a downsampled chunk into the requested aggregates.
func aggrChunk(data []byte, aggrs []storepb.Aggr, out *storepb.AggrChunk) error {
	ac := downsample.AggrChunk(data)
	found := false
	for _, a := range aggrs {
		var (
			t   downsample.AggrType
			dst **storepb.Chunk
		)
		switch a {
		case storepb.Aggr_COUNT:
			t, dst = downsample.AggrCount, &out.Count
		case storepb.Aggr_SUM:
			t, dst = downsample.AggrSum, &out.Sum
		case storepb.Aggr_MIN:
			t, dst = downsample.AggrMin, &out.Min
		case storepb.Aggr_MAX:
			t, dst = downsample.AggrMax, &out.Max
		case storepb.Aggr_COUNTER:
			t, dst = downsample.AggrCounter, &out.Counter
		default:
			continue
		}
		enc, sub, err := ac.GetRaw(t)
		if err == downsample.ErrAggrNotExist {
			continue
		}
		if err != nil {
			return fmt.Errorf("aggregate %s: %w", t, err)
		}
		typ, err := storeapi.EncodingToProto(enc)
		if err != nil {
			return fmt.Errorf("aggregate %s: %w", t, err)
		}
		*dst = &storepb.Chunk{Type: typ, Data: slices.Clone(sub)}
		found = true
	}
	if !found {
		return fmt.Errorf("request asks for aggregates %v, which a downsampled chunk does not hold; ask for count, sum, min, max or counter", aggrs)
	}
	return nil
}
