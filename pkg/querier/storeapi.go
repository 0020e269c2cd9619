package querier

import (
	"context"
	"math"

	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// storeServer serves the querier's own view over the StoreAPI, so that
// queriers can be stacked: a global querier over regional ones. A request
// whose without_replica_labels are replica labels of this querier gets
// deduplicated series; any other gets every replica.
type storeServer struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer
	q      *query.Queryable
	stores func() []query.Store
}

func (s *storeServer) register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
}

// Info advertises the union of the endpoints' label sets and time ranges.
func (s *storeServer) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	mint, maxt := int64(math.MaxInt64), int64(math.MinInt64)
	seen := map[uint64]bool{}
	resp := &infopb.InfoResponse{ComponentType: "query"}
	for _, st := range s.stores() {
		lo, hi := st.TimeRange()
		mint, maxt = min(mint, lo), max(maxt, hi)
		for _, ls := range st.LabelSets() {
			if h := ls.Hash(); !seen[h] {
				seen[h] = true
				resp.LabelSets = append(resp.LabelSets, &labelpb.ZLabelSet{Labels: storeapi.LabelsToProto(ls)})
			}
		}
	}
	if mint > maxt {
		mint, maxt = 0, 0
	}
	resp.Store = &infopb.StoreInfo{MinTime: mint, MaxTime: maxt, SupportsWithoutReplicaLabels: true}
	return resp, nil
}

func (s *storeServer) options(ctx context.Context, without []string, partialAbort bool) context.Context {
	opts := s.q.Defaults
	opts.Dedup = len(without) > 0
	if opts.Dedup {
		opts.ReplicaLabels = without
	}
	opts.PartialResponse = !partialAbort
	return query.WithOptions(ctx, opts)
}

// Series streams the querier's merged (and, on request, deduplicated)
// series, re-encoded into chunks.
func (s *storeServer) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx := s.options(srv.Context(), req.WithoutReplicaLabels, req.PartialResponseDisabled || req.PartialResponseStrategy == storepb.PartialResponseStrategy_ABORT)
	q, err := s.q.Querier(req.MinTime, req.MaxTime)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: req.MinTime, End: req.MaxTime, Limit: int(req.Limit)}
	if req.SkipChunks {
		hints.Func = "series"
	}
	if req.QueryHints != nil && req.QueryHints.Func != nil && !req.SkipChunks {
		hints.Func = req.QueryHints.Func.Name
	}
	set := q.Select(ctx, true, hints, ms...)
	n := int64(0)
	for set.Next() {
		if req.Limit > 0 && n >= req.Limit {
			break
		}
		series := set.At()
		out := &storepb.Series{Labels: storeapi.LabelsToProto(series.Labels())}
		if !req.SkipChunks {
			chks, err := storeapi.ChunksToProto(storage.NewSeriesToChunkEncoder(series).Iterator(nil))
			if err != nil {
				return status.Errorf(codes.Internal, "encode %s: %v", series.Labels(), err)
			}
			out.Chunks = chks
		}
		if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: out}}); err != nil {
			return err
		}
		n++
	}
	for _, w := range set.Warnings() {
		if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: w.Error()}}); err != nil {
			return err
		}
	}
	if err := set.Err(); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return nil
}

func (s *storeServer) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx = s.options(ctx, req.WithoutReplicaLabels, req.PartialResponseDisabled)
	q, _ := s.q.Querier(req.Start, req.End)
	defer q.Close()
	names, warns, err := q.LabelNames(ctx, &storage.LabelHints{Limit: int(req.Limit)}, ms...)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &storepb.LabelNamesResponse{Names: names}
	for _, w := range warns {
		resp.Warnings = append(resp.Warnings, w.Error())
	}
	return resp, nil
}

func (s *storeServer) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ctx = s.options(ctx, req.WithoutReplicaLabels, req.PartialResponseDisabled)
	q, _ := s.q.Querier(req.Start, req.End)
	defer q.Close()
	vals, warns, err := q.LabelValues(ctx, req.Label, &storage.LabelHints{Limit: int(req.Limit)}, ms...)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &storepb.LabelValuesResponse{Values: vals}
	for _, w := range warns {
		resp.Warnings = append(resp.Warnings, w.Error())
	}
	return resp, nil
}
