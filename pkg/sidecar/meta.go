package sidecar

import (
	"math"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// MetricMetadata answers with Prometheus' metadata of its scraped metrics,
// in one message. A negative limit is none, 0 asks for nothing (Thanos'
// meaning; Prometheus' too).
func (s *store) MetricMetadata(req *metadatapb.MetricMetadataRequest, srv grpc.ServerStreamingServer[metadatapb.MetricMetadataResponse]) error {
	md, err := s.prom.Metadata(srv.Context(), req.Metric, int(req.Limit))
	if err != nil {
		return status.Errorf(codes.Unavailable, "read Prometheus' metadata: %v", err)
	}
	return srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Metadata{Metadata: query.MetadataToProto(md)}})
}

// Exemplars answers with Prometheus' exemplars of the series the query
// selects, external labels added. Prometheus knows nothing of its external
// labels: matchers on them are decided here, against the sidecar's set, and
// left out of the query Prometheus gets.
func (s *store) Exemplars(req *exemplarspb.ExemplarsRequest, srv grpc.ServerStreamingServer[exemplarspb.ExemplarsResponse]) error {
	expr, err := exemplarParser.ParseExpr(req.Query)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "parse exemplar query: %v", err)
	}
	ext := s.ext()
	var selectors []string
	for _, ms := range parser.ExtractSelectors(expr) {
		series, ok := storeapi.SplitExternalMatchers(ms, ext)
		if !ok || len(series) == 0 {
			continue
		}
		selectors = append(selectors, selectorString(series))
	}
	if len(selectors) == 0 {
		return nil
	}
	result, err := s.prom.Exemplars(srv.Context(), strings.Join(selectors, " or "), req.Start, req.End)
	if err != nil {
		return status.Errorf(codes.Unavailable, "read Prometheus' exemplars: %v", err)
	}
	var b labels.Builder
	for _, r := range result {
		lset := storeapi.AttachExternalLabels(&b, labels.FromMap(r.SeriesLabels), ext)
		data := &exemplarspb.ExemplarData{SeriesLabels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(lset)}}
		for _, e := range r.Exemplars {
			v, err := strconv.ParseFloat(e.Value, 64)
			if err != nil {
				return status.Errorf(codes.Internal, "Prometheus sent exemplar value %q: %v", e.Value, err)
			}
			data.Exemplars = append(data.Exemplars, &exemplarspb.Exemplar{
				Labels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(labels.FromMap(e.Labels))},
				Value:  v, Ts: int64(math.Round(e.Timestamp * 1000)),
			})
		}
		if err := srv.Send(&exemplarspb.ExemplarsResponse{Result: &exemplarspb.ExemplarsResponse_Data{Data: data}}); err != nil {
			return err
		}
	}
	return nil
}

// exemplarParser only extracts selectors: it accepts every language
// feature, whatever the asking querier has enabled.
var exemplarParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true, EnableBinopFillModifiers: true, EnableUnquotedUTF8Names: true})

// selectorString is a vector selector of the matchers, in PromQL.
func selectorString(ms []*labels.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
