package queryapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/strata-metrics/strata/pkg/query"
)

// MetadataFunc fans a metadata request out to the endpoints.
type MetadataFunc func(ctx context.Context, metric string, limit, limitPerMetric int, partial bool) (map[string][]query.MetricMeta, []string, error)

// ExemplarsFunc fans an exemplars request out to the endpoints.
type ExemplarsFunc func(ctx context.Context, selectors [][]*labels.Matcher, start, end int64, opts query.Options) ([]exemplar.QueryResult, []string, error)

// success writes Prometheus' success envelope with data and warnings.
func success(w http.ResponseWriter, data any, warnings []string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Status   string   `json:"status"`
		Data     any      `json:"data"`
		Warnings []string `json:"warnings,omitempty"`
	}{"success", data, warnings})
}

// metadataHandler serves /api/v1/metadata from the endpoints' metadata APIs
// (Prometheus serves it from its scrape targets; the querier has none).
func (a *API) metadataHandler(w http.ResponseWriter, r *http.Request, opts query.Options) {
	limit, limitPerMetric := -1, -1
	for name, dst := range map[string]*int{"limit": &limit, "limit_per_metric": &limitPerMetric} {
		if s := r.Form.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("%s must be a number", name))
				return
			}
			*dst = n
		}
	}
	// As Prometheus: limit 0 answers nothing, limit_per_metric 0 has no
	// effect (it applies when positive).
	if limit == 0 {
		success(w, map[string][]query.MetricMeta{}, nil)
		return
	}
	if a.cfg.Metadata == nil {
		success(w, map[string][]query.MetricMeta{}, nil)
		return
	}
	ctx, cancel := a.timeout(r.Context())
	defer cancel()
	md, warnings, err := a.cfg.Metadata(ctx, r.Form.Get("metric"), max(limit, 0), max(limitPerMetric, 0), opts.PartialResponse)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "execution", fmt.Sprintf("read metric metadata: %v", err))
		return
	}
	success(w, md, warnings)
}

// exemplarsHandler serves /api/v1/query_exemplars from the endpoints'
// exemplars APIs, with the parameters and answer of Prometheus' endpoint
// and the Thanos parameters dedup and partial_response.
func (a *API) exemplarsHandler(w http.ResponseWriter, r *http.Request, opts query.Options) {
	start, err := parseTimeParam(r.Form.Get("start"), math.MinInt64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("invalid parameter \"start\": %v", err))
		return
	}
	end, err := parseTimeParam(r.Form.Get("end"), math.MaxInt64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("invalid parameter \"end\": %v", err))
		return
	}
	if end < start {
		writeError(w, http.StatusBadRequest, "bad_data", "end timestamp must not be before start timestamp")
		return
	}
	expr, err := a.cfg.Parser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("invalid parameter \"query\": %v", err))
		return
	}
	selectors := parser.ExtractSelectors(expr)
	if len(selectors) == 0 {
		// Prometheus answers a query without selectors with no content.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	out := []exemplarSeries{}
	if a.cfg.Exemplars == nil {
		success(w, out, nil)
		return
	}
	ctx, cancel := a.timeout(r.Context())
	defer cancel()
	res, warnings, err := a.cfg.Exemplars(ctx, selectors, start, end, opts)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "execution", fmt.Sprintf("read exemplars: %v", err))
		return
	}
	for _, r := range res {
		s := exemplarSeries{SeriesLabels: r.SeriesLabels, Exemplars: make([]exemplarJSON, 0, len(r.Exemplars))}
		for _, e := range r.Exemplars {
			s.Exemplars = append(s.Exemplars, exemplarJSON{Labels: e.Labels, Value: formatFloat(e.Value), Timestamp: seconds(e.Ts)})
		}
		out = append(out, s)
	}
	success(w, out, warnings)
}

// exemplarSeries and exemplarJSON are Prometheus' JSON of exemplars.
type exemplarSeries struct {
	SeriesLabels labels.Labels  `json:"seriesLabels"`
	Exemplars    []exemplarJSON `json:"exemplars"`
}

type exemplarJSON struct {
	Labels    labels.Labels `json:"labels"`
	Value     string        `json:"value"`
	Timestamp json.Number   `json:"timestamp"`
}

func (a *API) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.cfg.QueryTimeout > 0 {
		return context.WithTimeout(ctx, a.cfg.QueryTimeout)
	}
	return context.WithCancel(ctx)
}

// parseTimeParam reads a time as Prometheus does (Unix seconds, possibly
// fractional, or RFC 3339), in milliseconds; def when empty.
func parseTimeParam(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ms := math.Round(f * 1000)
		if ms >= math.MaxInt64 || ms <= math.MinInt64 {
			return 0, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		return int64(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid timestamp", s)
	}
	return t.UnixMilli(), nil
}
