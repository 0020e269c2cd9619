package bucketstore

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// LabelNames returns the label names of the matching series.
func (s *Store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	set := map[string]struct{}{}
	err := s.eachBlock(req.Start, req.End, req.Matchers, func(b *bucketBlock, series []*labels.Matcher) error {
		ir, err := b.index()
		if err != nil {
			return err
		}
		names, err := blockLabelNames(ctx, ir, series)
		if err != nil || len(names) == 0 {
			return err
		}
		for _, n := range names {
			set[n] = struct{}{}
		}
		b.ext.Range(func(l labels.Label) {
			if !slices.Contains(req.WithoutReplicaLabels, l.Name) {
				set[l.Name] = struct{}{}
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &storepb.LabelNamesResponse{Names: sortedKeys(set)}, nil
}

// LabelValues returns the values of a label over the matching series.
func (s *Store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	set := map[string]struct{}{}
	err := s.eachBlock(req.Start, req.End, req.Matchers, func(b *bucketBlock, series []*labels.Matcher) error {
		if b.ext.Has(req.Label) {
			if !slices.Contains(req.WithoutReplicaLabels, req.Label) {
				set[b.ext.Get(req.Label)] = struct{}{}
			}
			return nil
		}
		ir, err := b.index()
		if err != nil {
			return err
		}
		vals, err := blockLabelValues(ctx, ir, req.Label, series)
		for _, v := range vals {
			set[v] = struct{}{}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &storepb.LabelValuesResponse{Values: sortedKeys(set)}, nil
}

// eachBlock calls fn with every served block in [start, end] (clamped to
// the time shard) whose external labels the matchers allow, and the
// matchers left for its series. An error is returned as a gRPC status.
func (s *Store) eachBlock(start, end int64, pms []*storepb.LabelMatcher, fn func(*bucketBlock, []*labels.Matcher) error) error {
	ms, err := storeapi.MatchersFromProto(pms)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	start, end = max(start, s.minTime()), min(end, s.maxTime())
	for _, b := range s.snapshot() {
		if b.meta.MaxTime <= start || b.meta.MinTime > end {
			continue
		}
		series, ok := storeapi.SplitExternalMatchers(ms, b.ext)
		if !ok {
			continue
		}
		if err := fn(b, series); err != nil {
			return status.Error(codes.Internal, b.indexErr(err).Error())
		}
	}
	return nil
}

// blockLabelNames are the label names of the block's series that match ms
// (all series without matchers). Prometheus' index reader takes no
// matchers itself.
func blockLabelNames(ctx context.Context, ir *index.Reader, ms []*labels.Matcher) ([]string, error) {
	if len(ms) == 0 {
		return ir.LabelNames(ctx)
	}
	p, err := tsdb.PostingsForMatchers(ctx, ixReader{ir}, ms...)
	if err != nil {
		return nil, fmt.Errorf("postings: %w", err)
	}
	return ir.LabelNamesFor(ctx, p)
}

// blockLabelValues are the values of label name over the block's series
// that match ms (all series without matchers).
func blockLabelValues(ctx context.Context, ir *index.Reader, name string, ms []*labels.Matcher) ([]string, error) {
	if len(ms) == 0 {
		return ir.LabelValues(ctx, name, nil)
	}
	p, err := tsdb.PostingsForMatchers(ctx, ixReader{ir}, ms...)
	if err != nil {
		return nil, fmt.Errorf("postings: %w", err)
	}
	set := map[string]struct{}{}
	var sb labels.ScratchBuilder
	for n := 0; p.Next(); n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := ir.Series(p.At(), &sb, nil); err != nil {
			return nil, fmt.Errorf("series: %w", err)
		}
		if v := sb.Labels().Get(name); v != "" {
			set[v] = struct{}{}
		}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return sortedKeys(set), nil
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
