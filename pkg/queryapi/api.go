package queryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/route"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/strata-metrics/strata/pkg/endpoint"
	"github.com/strata-metrics/strata/pkg/query"
)

// Config of the HTTP API.
type Config struct {
	Engine    promql.QueryEngine
	Queryable *query.Queryable
	// Parser parses PromQL with the enabled language features.
	Parser parser.Parser
	// Defaults are the options when a request does not set them.
	Defaults query.Options
	// AutoDownsampling picks max_source_resolution from the step when the
	// request does not give it.
	AutoDownsampling bool
	LookbackDelta    time.Duration
	QueryTimeout     time.Duration
	Logger           *slog.Logger
	Registerer       prometheus.Registerer
	Gatherer         prometheus.Gatherer
	// MaxConcurrent bounds the queries evaluated at once; more wait.
	MaxConcurrent int
	// Endpoints lists the endpoints for /api/v1/stores and /stores.
	Endpoints func() []endpoint.Status
	// Metadata and Exemplars answer /api/v1/metadata and
	// /api/v1/query_exemplars; nil answers empty.
	Metadata  MetadataFunc
	Exemplars ExemplarsFunc
}

// prometheusEndpoints are the Prometheus API paths the querier serves.
var prometheusEndpoints = map[string]bool{
	"/api/v1/query":            true,
	"/api/v1/query_range":      true,
	"/api/v1/query_exemplars":  true,
	"/api/v1/series":           true,
	"/api/v1/labels":           true,
	"/api/v1/metadata":         true,
	"/api/v1/status/buildinfo": true,
	"/api/v1/parse_query":      true,
	"/api/v1/format_query":     true,
}

// API serves the querier's HTTP endpoints.
type API struct {
	cfg    Config
	router *route.Router
	gate   chan struct{}
}

// New builds the API.
func New(cfg Config) *API {
	router := route.New()
	prom := v1.NewAPI(
		cfg.Engine,
		sampleAndChunkQueryable{cfg.Queryable},
		nil, // no remote write
		emptyExemplars{},
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return nil },
		func() config.Config { return config.Config{} },
		map[string]string{},
		v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		nil, "", false, false, 0,
		cfg.Logger,
		func(context.Context) v1.RulesRetriever { return nil },
		0, 1, 1<<20,
		false,
		regexp.MustCompile(".*"),
		func() (v1.RuntimeInfo, error) { return v1.RuntimeInfo{}, errors.New("not available on the querier") },
		&v1.PrometheusVersion{
			Version: version.Version, Revision: version.Revision, Branch: version.Branch,
			BuildUser: version.BuildUser, BuildDate: version.BuildDate, GoVersion: runtime.Version(),
		},
		nil, nil,
		cfg.Gatherer, cfg.Registerer,
		nil,
		false, nil,
		false, false, false,
		cfg.LookbackDelta,
		false, false,
		nil,
		nil,
		v1.OpenAPIOptions{},
		cfg.Parser,
		false,
		cfg.QueryTimeout,
	)
	prom.InstallCodec(histCodec{})
	prom.Register(router.WithPrefix("/api/v1"))
	a := &API{cfg: cfg, router: router}
	if cfg.MaxConcurrent > 0 {
		a.gate = make(chan struct{}, cfg.MaxConcurrent)
	}
	return a
}

// Register adds the API's handlers to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/stores", a.storesHandler)
	mux.HandleFunc("/stores", a.storesPageHandler)
	mux.Handle("/api/v1/", a)
}

// ServeHTTP serves the Prometheus endpoints the querier offers, with the
// Thanos query parameters applied.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if !prometheusEndpoints[p] && !(strings.HasPrefix(p, "/api/v1/label/") && strings.HasSuffix(p, "/values")) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s is not served by the querier", p))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("parse form: %v", err))
		return
	}
	// Only a range query has a step: Prometheus ignores one given to the
	// other endpoints, and so does auto-downsampling.
	form := r.Form
	if p != "/api/v1/query_range" && form.Has("step") {
		form = maps.Clone(form)
		form.Del("step")
	}
	opts, err := a.options(form)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	// An explicit resolution widens the lookback to it, as Thanos does.
	// Auto does below 1h only: over raw data answers must stay Prometheus'
	// own, and steps find the 5m aggregates within the default lookback;
	// but a step that is not on the hour finds no 1h aggregate (stamped at
	// the end of its hour) within 5m, and at steps of 5h and more, where
	// auto picks 1h, the wider lookback changes nothing else.
	if lb := a.lookbackFor(r.Form, opts); lb > 0 {
		r.Form.Set("lookback_delta", lb.String())
	}
	// --query.timeout bounds every request, not only PromQL's: the label
	// and series calls wait on stores too.
	if a.cfg.QueryTimeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.QueryTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	switch p {
	case "/api/v1/metadata":
		a.metadataHandler(w, r, opts)
		return
	case "/api/v1/query_exemplars":
		a.exemplarsHandler(w, r, opts)
		return
	}
	if a.gate != nil && (p == "/api/v1/query" || p == "/api/v1/query_range") {
		select {
		case a.gate <- struct{}{}:
			defer func() { <-a.gate }()
		case <-r.Context().Done():
			writeError(w, http.StatusServiceUnavailable, "unavailable", "request cancelled while waiting for a free query slot (--query.max-concurrent)")
			return
		}
	}
	a.router.ServeHTTP(w, r.WithContext(query.WithOptions(r.Context(), opts)))
}

// lookbackFor is the lookback delta a request needs for the resolution it
// reads, or 0 to leave the request's or the default one.
func (a *API) lookbackFor(form url.Values, opts query.Options) time.Duration {
	if form.Get("lookback_delta") != "" {
		return 0
	}
	res := form.Get("max_source_resolution")
	auto := res == "auto" || (res == "" && a.cfg.AutoDownsampling)
	if (res != "" && !auto) || (auto && opts.MaxResolution >= time.Hour.Milliseconds()) {
		return resolutionLookback(opts.MaxResolution, a.cfg.LookbackDelta)
	}
	return 0
}

// options reads the Thanos parameters of a request.
func (a *API) options(form url.Values) (query.Options, error) {
	o := a.cfg.Defaults
	if v := form.Get("dedup"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("invalid parameter \"dedup\": %q is not a boolean", v)
		}
		o.Dedup = b
	}
	if v := form.Get("partial_response"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("invalid parameter \"partial_response\": %q is not a boolean", v)
		}
		o.PartialResponse = b
	}
	if rl := form["replicaLabels[]"]; len(rl) > 0 {
		o.ReplicaLabels = rl
	}
	res := form.Get("max_source_resolution")
	if res == "" && a.cfg.AutoDownsampling {
		res = "auto"
	}
	switch res {
	case "", "0", "0s", "raw":
		o.MaxResolution = 0
	case "auto":
		// Thanos' rule: a fifth of the step.
		if step := form.Get("step"); step != "" {
			d, err := parseDuration(step)
			if err != nil {
				return o, fmt.Errorf("invalid parameter \"step\": %v", err)
			}
			o.MaxResolution = d.Milliseconds() / 5
		}
	default:
		d, err := parseDuration(res)
		if err != nil {
			return o, fmt.Errorf("invalid parameter \"max_source_resolution\": %v (want auto, 0s, 5m or 1h)", err)
		}
		o.MaxResolution = d.Milliseconds()
	}
	return o, nil
}

// resolutionLookback is the lookback delta a query needs when it may read
// downsampled data: aggregates are a resolution apart, so a lookback shorter
// than the resolution would leave steps without a sample. It returns 0 when
// the default lookback is enough.
func resolutionLookback(maxRes int64, def time.Duration) time.Duration {
	var res time.Duration
	for _, r := range []time.Duration{time.Hour, 5 * time.Minute} {
		if maxRes >= r.Milliseconds() {
			res = r
			break
		}
	}
	if res > def {
		return res
	}
	return 0
}

// parseDuration accepts seconds as a float or a Prometheus duration, like
// Prometheus' step parameter.
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f*float64(time.Second) > math.MaxInt64 {
			return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
	}
	return time.Duration(d), nil
}

func writeError(w http.ResponseWriter, code int, typ, msg string) {
	// json.Marshal, not %q: Go's quoting has escapes JSON has not.
	b, err := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", typ, msg})
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"status":"error","errorType":"internal","error":"encode error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// sampleAndChunkQueryable adapts the querier's storage to what Prometheus'
// API takes; chunk queries (remote read) are not served.
type sampleAndChunkQueryable struct{ *query.Queryable }

func (sampleAndChunkQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("remote read is not served by the querier")
}

// noTargets answers the target-based endpoints: the querier scrapes nothing.
type noTargets struct{}

func (noTargets) TargetsActive() map[string][]*scrape.Target  { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int        { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errors.New("the querier has no scrape pools")
}
func (noTargets) ScrapePools() []string { return nil }

type emptyExemplars struct{}

func (emptyExemplars) ExemplarQuerier(context.Context) (storage.ExemplarQuerier, error) {
	return emptyExemplars{}, nil
}

func (emptyExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return []exemplar.QueryResult{}, nil
}
