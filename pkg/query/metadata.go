package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"

	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/promclient"
)

// Endpoint is an endpoint offering the metadata or exemplars API.
type Endpoint interface {
	Name() string
	Conn() grpc.ClientConnInterface
}

// MetricMeta is one metric's type, help and unit, as Prometheus' API
// gives them.
type MetricMeta = promclient.Metadata

// MetadataToProto is metadata by metric name as the Metadata API sends it.
func MetadataToProto(md map[string][]MetricMeta) *metadatapb.MetricMetadata {
	out := &metadatapb.MetricMetadata{Metadata: make(map[string]*metadatapb.MetricMetadataEntry, len(md))}
	for name, ms := range md {
		e := &metadatapb.MetricMetadataEntry{}
		for _, m := range ms {
			e.Metas = append(e.Metas, &metadatapb.Meta{Type: m.Type, Help: m.Help, Unit: m.Unit})
		}
		out.Metadata[name] = e
	}
	return out
}

// fanOut calls fn on every endpoint at once. A failing endpoint is an
// error naming it, or, with partial responses, a warning.
func fanOut[E Endpoint](ctx context.Context, eps []E, partial bool, fn func(context.Context, E) error) (warnings []string, err error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, e := range eps {
		wg.Go(func() {
			if err := fn(ctx, e); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("endpoint %s: %w", e.Name(), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) > 0 && !partial {
		return nil, errors.Join(errs...)
	}
	for _, e := range errs {
		warnings = append(warnings, e.Error())
	}
	return warnings, nil
}

// Metadata asks every endpoint for metric metadata (of one metric when
// metric is set) and merges the answers: per metric the distinct entries,
// sorted. limit bounds the number of metrics and
// limitPerMetric the entries of each (0 or less: no bound), as in
// Prometheus.
func Metadata[E Endpoint](ctx context.Context, eps []E, metric string, limit, limitPerMetric int, partial bool) (map[string][]MetricMeta, []string, error) {
	var (
		mu  sync.Mutex
		out = map[string][]MetricMeta{}
	)
	strategy := storepb.PartialResponseStrategy_ABORT
	if partial {
		strategy = storepb.PartialResponseStrategy_WARN
	}
	var remoteWarnings []string
	warnings, err := fanOut(ctx, eps, partial, func(ctx context.Context, e E) error {
		// Each endpoint is asked for up to limit metrics: together they may
		// have more, cut below. On the wire, as in Thanos, a negative
		// limit is none and 0 asks for nothing.
		wireLimit := int32(-1)
		if limit > 0 {
			wireLimit = int32(min(limit, math.MaxInt32))
		}
		stream, err := metadatapb.NewMetadataClient(e.Conn()).MetricMetadata(ctx, &metadatapb.MetricMetadataRequest{
			Metric: metric, Limit: wireLimit, PartialResponseStrategy: strategy})
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
			for name, entry := range resp.GetMetadata().GetMetadata() {
				for _, m := range entry.GetMetas() {
					mm := MetricMeta{Type: m.Type, Help: m.Help, Unit: m.Unit}
					if !containsMeta(out[name], mm) {
						out[name] = append(out[name], mm)
					}
				}
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, nil, err
	}
	// Endpoints answer at once: order each metric's entries so the answer
	// does not depend on who was first.
	for name, ms := range out {
		sort.SliceStable(ms, func(i, j int) bool {
			a, b := ms[i], ms[j]
			if a.Type != b.Type {
				return a.Type < b.Type
			}
			if a.Help != b.Help {
				return a.Help < b.Help
			}
			return a.Unit < b.Unit
		})
		if limitPerMetric > 0 && len(ms) > limitPerMetric {
			out[name] = ms[:limitPerMetric]
		}
	}
	if limit > 0 && len(out) > limit {
		names := make([]string, 0, len(out))
		for n := range out {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names[limit:] {
			delete(out, n)
		}
	}
	sort.Strings(remoteWarnings)
	return out, append(warnings, remoteWarnings...), nil
}

func containsMeta(ms []MetricMeta, m MetricMeta) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}
