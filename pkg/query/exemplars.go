package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// ExemplarEndpoint is an endpoint offering the exemplars API.
type ExemplarEndpoint interface {
	Endpoint
	// LabelSets are the endpoint's external label sets.
	LabelSets() []labels.Labels
	// ExemplarsTimeRange is the range of exemplars it may hold.
	ExemplarsTimeRange() (mint, maxt int64)
}

// Exemplars asks the endpoints that may hold exemplars of the selectors in
// [start, end] (ms) and merges their answers by series. With dedup, the
// replica labels are dropped from the series labels first, so an HA pair's
// exemplars show once per series; identical exemplars from both replicas
// show once. The result is sorted by series labels, each series' exemplars
// by time.
func Exemplars[E ExemplarEndpoint](ctx context.Context, eps []E, selectors [][]*labels.Matcher, start, end int64, opts Options) ([]exemplar.QueryResult, []string, error) {
	var asked []E
	for _, e := range eps {
		mint, maxt := e.ExemplarsTimeRange()
		if mint > end || maxt < start {
			continue
		}
		for _, ms := range selectors {
			if storeapi.MatchesExternalLabels(ms, e.LabelSets()) {
				asked = append(asked, e)
				break
			}
		}
	}
	if len(asked) == 0 {
		return []exemplar.QueryResult{}, nil, nil
	}
	q := selectorsQuery(selectors)
	strategy := storepb.PartialResponseStrategy_ABORT
	if opts.PartialResponse {
		strategy = storepb.PartialResponseStrategy_WARN
	}
	var (
		mu             sync.Mutex
		bySeries       = map[string]*exemplar.QueryResult{}
		remoteWarnings []string
		b              labels.ScratchBuilder
		lb             labels.Builder
	)
	warnings, err := fanOut(ctx, asked, opts.PartialResponse, func(ctx context.Context, e E) error {
		stream, err := exemplarspb.NewExemplarsClient(e.Conn()).Exemplars(ctx, &exemplarspb.ExemplarsRequest{
			Query: q, Start: start, End: end, PartialResponseStrategy: strategy})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			mu.Lock()
			if w := resp.GetWarning(); w != "" {
				remoteWarnings = append(remoteWarnings, fmt.Sprintf("endpoint %s: %s", e.Name(), w))
			}
			if d := resp.GetData(); d != nil {
				lset := storeapi.LabelsFromProto(&b, d.GetSeriesLabels().GetLabels())
				if opts.Dedup {
					lset = storeapi.WithoutLabels(&lb, lset, opts.ReplicaLabels)
				}
				key := lset.String()
				r, ok := bySeries[key]
				if !ok {
					r = &exemplar.QueryResult{SeriesLabels: lset}
					bySeries[key] = r
				}
				for _, ex := range d.Exemplars {
					r.Exemplars = append(r.Exemplars, exemplar.Exemplar{
						Labels: storeapi.LabelsFromProto(&b, ex.GetLabels().GetLabels()), Value: ex.Value, Ts: ex.Ts, HasTs: true})
				}
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]exemplar.QueryResult, 0, len(bySeries))
	for _, r := range bySeries {
		// Identical exemplars (both replicas of a pair) end up side by side.
		sort.Slice(r.Exemplars, func(i, j int) bool {
			a, b := r.Exemplars[i], r.Exemplars[j]
			if a.Ts != b.Ts {
				return a.Ts < b.Ts
			}
			if a.Value != b.Value {
				return a.Value < b.Value
			}
			return labels.Compare(a.Labels, b.Labels) < 0
		})
		kept := r.Exemplars[:0]
		for _, ex := range r.Exemplars {
			if n := len(kept); n > 0 && kept[n-1].Ts == ex.Ts && kept[n-1].Value == ex.Value && labels.Equal(kept[n-1].Labels, ex.Labels) {
				continue
			}
			kept = append(kept, ex)
		}
		r.Exemplars = kept
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].SeriesLabels, out[j].SeriesLabels) < 0 })
	sort.Strings(remoteWarnings)
	return out, append(warnings, remoteWarnings...), nil
}

// selectorsQuery is the PromQL the exemplars API takes for the selectors:
// each one as a vector selector, joined with or.
func selectorsQuery(selectors [][]*labels.Matcher) string {
	parts := make([]string, 0, len(selectors))
	for _, ms := range selectors {
		s := make([]string, len(ms))
		for i, m := range ms {
			s[i] = m.String()
		}
		parts = append(parts, "{"+strings.Join(s, ", ")+"}")
	}
	return strings.Join(parts, " or ")
}
