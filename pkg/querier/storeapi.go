package querier

import (
	"context"
	"math"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/endpoint"
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
	metadatapb.UnimplementedMetadataServer
	exemplarspb.UnimplementedExemplarsServer
	q      *query.Queryable
	stores func() []query.Store
	// eps offer metadata and exemplars; parser reads exemplar queries.
	eps    *endpoint.Set
	parser parser.Parser
}

func (s *storeServer) register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
	metadatapb.RegisterMetadataServer(srv, s)
	exemplarspb.RegisterExemplarsServer(srv, s)
}

// MetricMetadata passes the endpoints' merged metadata on.
func (s *storeServer) MetricMetadata(req *metadatapb.MetricMetadataRequest, srv grpc.ServerStreamingServer[metadatapb.MetricMetadataResponse]) error {
	partial := req.PartialResponseStrategy != storepb.PartialResponseStrategy_ABORT
	if req.Limit == 0 {
		// Thanos' meaning on the wire: 0 asks for nothing, negative for
		// everything.
		return srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Metadata{Metadata: &metadatapb.MetricMetadata{}}})
	}
	md, warnings, err := query.Metadata(srv.Context(), s.eps.MetadataEndpoints(), req.Metric, max(int(req.Limit), 0), 0, partial)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	for _, w := range warnings {
		if err := srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Warning{Warning: w}}); err != nil {
			return err
		}
	}
	return srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Metadata{Metadata: query.MetadataToProto(md)}})
}

// Exemplars passes the endpoints' exemplars on, every replica's: the
// querier above deduplicates with its own replica labels.
func (s *storeServer) Exemplars(req *exemplarspb.ExemplarsRequest, srv grpc.ServerStreamingServer[exemplarspb.ExemplarsResponse]) error {
	expr, err := s.parser.ParseExpr(req.Query)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "parse exemplar query: %v", err)
	}
	opts := s.q.Defaults
	opts.Dedup = false
	opts.PartialResponse = req.PartialResponseStrategy != storepb.PartialResponseStrategy_ABORT
	res, warnings, err := query.Exemplars(srv.Context(), s.eps.ExemplarEndpoints(), parser.ExtractSelectors(expr), req.Start, req.End, opts)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	for _, w := range warnings {
		if err := srv.Send(&exemplarspb.ExemplarsResponse{Result: &exemplarspb.ExemplarsResponse_Warning{Warning: w}}); err != nil {
			return err
		}
	}
	for _, r := range res {
		d := &exemplarspb.ExemplarData{SeriesLabels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(r.SeriesLabels)}}
		for _, e := range r.Exemplars {
			d.Exemplars = append(d.Exemplars, &exemplarspb.Exemplar{Labels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(e.Labels)}, Value: e.Value, Ts: e.Ts})
		}
		if err := srv.Send(&exemplarspb.ExemplarsResponse{Result: &exemplarspb.ExemplarsResponse_Data{Data: d}}); err != nil {
			return err
		}
	}
	return nil
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
	resp.Store = &infopb.StoreInfo{MinTime: mint, MaxTime: maxt, SupportsSharding: true, SupportsWithoutReplicaLabels: true}
	if len(s.eps.MetadataEndpoints()) > 0 {
		resp.MetricMetadata = &infopb.MetricMetadataInfo{}
	}
	if eps := s.eps.ExemplarEndpoints(); len(eps) > 0 {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, e := range eps {
			a, b := e.ExemplarsTimeRange()
			lo, hi = min(lo, a), max(hi, b)
		}
		resp.Exemplars = &infopb.ExemplarsInfo{MinTime: lo, MaxTime: hi}
	}
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
	if req.ShardInfo != nil {
		// The shard goes down to the stores; the labels it hashes are
		// the same there (replica labels are stripped alike).
		if _, err := storeapi.NewShardMatcher(req.ShardInfo); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		opts := query.OptionsFrom(ctx, s.q.Defaults)
		opts.Shard = req.ShardInfo
		ctx = query.WithOptions(ctx, opts)
	}
	// Each series is re-encoded and sent before the next is read.
	q := s.q.StreamingQuerier(req.MinTime, req.MaxTime)
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
