package tsdbstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// Store serves db over the StoreAPI.
type Store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	// mu serializes the calls on db: a read-only TSDB closes the blocks
	// of its last querier when it opens the next one, under a query that
	// may still read them (sharded queries ask concurrently).
	mu            sync.Mutex
	db            storage.ChunkQueryable
	ext           labels.Labels
	minT, maxT    int64
	componentType string
}

// New returns a Store over db whose series all carry the external labels
// ext, holding data in [minT, maxT].
func New(db storage.ChunkQueryable, ext labels.Labels, minT, maxT int64) *Store {
	return &Store{db: db, ext: ext, minT: minT, maxT: maxT, componentType: "store"}
}

// Register registers the Store and Info services on srv.
func (s *Store) Register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
}

// Info advertises the external labels and time range.
func (s *Store) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return &infopb.InfoResponse{
		LabelSets:     []*labelpb.ZLabelSet{{Labels: storeapi.LabelsToProto(s.ext)}},
		ComponentType: s.componentType,
		Store:         &infopb.StoreInfo{MinTime: s.minT, MaxTime: s.maxT, SupportsSharding: true, SupportsWithoutReplicaLabels: true},
	}, nil
}

// seriesMatchers returns the matchers that select series, or ok=false when
// the external labels exclude this store.
func (s *Store) seriesMatchers(pms []*storepb.LabelMatcher) ([]*labels.Matcher, bool, error) {
	ms, err := storeapi.MatchersFromProto(pms)
	if err != nil {
		return nil, false, status.Error(codes.InvalidArgument, err.Error())
	}
	series, ok := storeapi.SplitExternalMatchers(ms, s.ext)
	if !ok {
		return nil, false, nil
	}
	if len(series) == 0 {
		series = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")}
	}
	return series, true, nil
}

// replicaLabels returns which of names are external labels of this store:
// only those are dropped.
func (s *Store) replicaLabels(names []string) []string {
	var out []string
	for _, n := range names {
		if s.ext.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

type outSeries struct {
	lset   labels.Labels
	chunks []*storepb.AggrChunk
}

// Series streams the matching series, sorted by their labels as sent.
func (s *Store) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ctx := srv.Context()
	ms, ok, err := s.seriesMatchers(req.Matchers)
	if err != nil || !ok {
		return err
	}
	shard, err := storeapi.NewShardMatcher(req.ShardInfo)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.db.ChunkQuerier(req.MinTime, req.MaxTime)
	if err != nil {
		return status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: req.MinTime, End: req.MaxTime}
	if req.SkipChunks {
		hints.Func = "series"
	}
	set := q.Select(ctx, true, hints, ms...)
	strip := s.replicaLabels(req.WithoutReplicaLabels)
	var (
		out []outSeries
		b   labels.Builder
	)
	for set.Next() {
		cs := set.At()
		lset := storeapi.AttachExternalLabels(&b, cs.Labels(), s.ext)
		lset = storeapi.WithoutLabels(&b, lset, strip)
		if !shard.Matches(lset) {
			continue
		}
		o := outSeries{lset: lset}
		if !req.SkipChunks {
			chks, err := storeapi.ChunksToProto(cs.Iterator(nil))
			if err != nil {
				return status.Errorf(codes.Internal, "chunks of %s: %v", cs.Labels(), err)
			}
			o.chunks = chks
		}
		out = append(out, o)
	}
	if err := set.Err(); err != nil {
		return status.Errorf(codes.Internal, "select: %v", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return labels.Compare(out[i].lset, out[j].lset) < 0 })
	if req.Limit > 0 && int64(len(out)) > req.Limit {
		out = out[:req.Limit]
	}
	for _, w := range set.Warnings() {
		if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: w.Error()}}); err != nil {
			return err
		}
	}
	for _, o := range out {
		if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: &storepb.Series{
			Labels: storeapi.LabelsToProto(o.lset), Chunks: o.chunks}}}); err != nil {
			return fmt.Errorf("send series: %w", err)
		}
	}
	return nil
}

// LabelNames returns the label names of the matching series, external
// labels included.
func (s *Store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, ok, err := s.seriesMatchers(req.Matchers)
	if err != nil || !ok {
		return &storepb.LabelNamesResponse{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.db.ChunkQuerier(req.Start, req.End)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()
	names, _, err := q.LabelNames(ctx, nil, ms...)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "label names: %v", err)
	}
	if len(names) == 0 {
		return &storepb.LabelNamesResponse{}, nil
	}
	strip := s.replicaLabels(req.WithoutReplicaLabels)
	s.ext.Range(func(l labels.Label) {
		if !slices.Contains(strip, l.Name) && !slices.Contains(names, l.Name) {
			names = append(names, l.Name)
		}
	})
	sort.Strings(names)
	return &storepb.LabelNamesResponse{Names: names}, nil
}

// LabelValues returns the values of a label over the matching series.
func (s *Store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	ms, ok, err := s.seriesMatchers(req.Matchers)
	if err != nil || !ok {
		return &storepb.LabelValuesResponse{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.db.ChunkQuerier(req.Start, req.End)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()
	if s.ext.Has(req.Label) {
		if slices.Contains(s.replicaLabels(req.WithoutReplicaLabels), req.Label) {
			return &storepb.LabelValuesResponse{}, nil
		}
		// The store answers with its external value if any series matches.
		names, _, err := q.LabelNames(ctx, nil, ms...)
		if err != nil || len(names) == 0 {
			return &storepb.LabelValuesResponse{}, err
		}
		return &storepb.LabelValuesResponse{Values: []string{s.ext.Get(req.Label)}}, nil
	}
	vals, _, err := q.LabelValues(ctx, req.Label, nil, ms...)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "label values: %v", err)
	}
	return &storepb.LabelValuesResponse{Values: vals}, nil
}

// MaxTime is the max time to advertise for a store of live data.
const MaxTime = math.MaxInt64
