package querier

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/endpoint"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/queryapi"
	"github.com/strata-metrics/strata/pkg/queryshard"
)

// Config is the querier's configuration, from its flags.
type Config struct {
	Endpoints        []string
	EndpointSDFiles  []string
	EndpointRefresh  time.Duration
	ReplicaLabels    []string
	Timeout          time.Duration
	MaxConcurrent    int
	LookbackDelta    time.Duration
	MaxSamples       int
	PartialResponse  bool
	AutoDownsampling bool
	DefaultStep      time.Duration
	StoreTimeout     time.Duration
	DialOptions      []grpc.DialOption
	// Features are Prometheus' --enable-feature values for PromQL.
	Features []string
	// VerticalShards splits the series of a range query's aggregations
	// into this many shards evaluated ShardConcurrency at a time; below 2
	// queries are evaluated whole.
	VerticalShards   int
	ShardConcurrency int
	// ShardMinRange is the shortest query range that is sharded.
	ShardMinRange time.Duration
}

// The defaults of --query.vertical-shards and its concurrency: on 20k
// series × 24h of an HA pair, 16 shards two at a time cut count({__name__=~".+"})
// from 1.6 GiB of querier RSS to under 0.5, and were faster than one
// evaluation, which runs on one core.
const (
	DefaultVerticalShards   = 16
	DefaultShardConcurrency = 2
	// Shorter ranges are mostly recent data, served by sidecars, which
	// read everything from Prometheus once per shard.
	DefaultShardMinRange = 6 * time.Hour
)

// DefaultGCPercent is the querier's GOGC when the environment sets none,
// Prometheus' own default since 2.53.
const DefaultGCPercent = 50

// PromQLFeatures are the --enable-feature values the querier understands,
// named as in Prometheus.
var PromQLFeatures = []string{
	"promql-experimental-functions",
	"promql-binop-fill-modifiers",
	"promql-delayed-name-removal",
	"promql-per-step-stats",
	"utf8-names",
	"start-timestamps",
}

// engineOptions turns the enabled features into parser and engine options.
func engineOptions(features []string) (parser.Options, promql.EngineOpts, error) {
	var (
		po parser.Options
		eo promql.EngineOpts
	)
	for _, f := range features {
		switch f {
		case "promql-experimental-functions":
			po.EnableExperimentalFunctions = true
		case "promql-binop-fill-modifiers":
			po.EnableBinopFillModifiers = true
		case "promql-delayed-name-removal":
			eo.EnableDelayedNameRemoval = true
		case "promql-per-step-stats":
			eo.EnablePerStepStats = true
		case "utf8-names":
			po.EnableUnquotedUTF8Names = true
		case "start-timestamps":
			eo.UseStartTimestamps = true
		default:
			return po, eo, fmt.Errorf("unknown --enable-feature %q; known: %v", f, PromQLFeatures)
		}
	}
	return po, eo, nil
}

// Querier is a configured querier.
type Querier struct {
	cfg       Config
	rt        *component.Runtime
	endpoints *endpoint.Set
	Queryable *query.Queryable
	// Engine evaluates PromQL as the HTTP API does: range queries
	// sharded by --query.vertical-shards.
	Engine promql.QueryEngine
}

// New builds the querier on rt and registers its HTTP API.
func New(cfg Config, rt *component.Runtime) (*Querier, error) {
	if cfg.MaxConcurrent < 1 {
		return nil, fmt.Errorf("--query.max-concurrent must be at least 1, got %d", cfg.MaxConcurrent)
	}
	eps, err := endpoint.NewSet(endpoint.Config{
		Endpoints:   cfg.Endpoints,
		SDFiles:     cfg.EndpointSDFiles,
		Refresh:     cfg.EndpointRefresh,
		DialOptions: cfg.DialOptions,
		Logger:      rt.Logger,
	})
	if err != nil {
		return nil, err
	}
	defaults := query.Options{Dedup: true, ReplicaLabels: cfg.ReplicaLabels, PartialResponse: cfg.PartialResponse}
	q := &query.Queryable{Stores: eps.Stores, Defaults: defaults, StoreTimeout: cfg.StoreTimeout, Logger: rt.Logger}
	po, eo, err := engineOptions(cfg.Features)
	if err != nil {
		return nil, err
	}
	p := parser.NewParser(po)
	eo.Logger = rt.Logger.With("subsystem", "engine")
	eo.Reg = rt.Registry
	eo.MaxSamples = cfg.MaxSamples
	eo.Timeout = cfg.Timeout
	eo.LookbackDelta = cfg.LookbackDelta
	eo.EnableAtModifier = true
	eo.EnableNegativeOffset = true
	eo.NoStepSubqueryIntervalFn = func(int64) int64 { return cfg.DefaultStep.Milliseconds() }
	eo.Parser = p
	engine := queryshard.New(queryshard.Config{Engine: promql.NewEngine(eo), Parser: p, Shards: cfg.VerticalShards,
		Concurrency: cfg.ShardConcurrency, MinRange: cfg.ShardMinRange, Defaults: defaults, Registerer: rt.Registry})
	api := queryapi.New(queryapi.Config{
		Engine:           engine,
		Queryable:        q,
		Parser:           p,
		Defaults:         defaults,
		AutoDownsampling: cfg.AutoDownsampling,
		LookbackDelta:    cfg.LookbackDelta,
		QueryTimeout:     cfg.Timeout,
		MaxConcurrent:    cfg.MaxConcurrent,
		Logger:           rt.Logger,
		Registerer:       rt.Registry,
		Gatherer:         rt.Registry,
		Endpoints:        eps.Status,
		Metadata: func(ctx context.Context, metric string, limit, limitPerMetric int, partial bool) (map[string][]query.MetricMeta, []string, error) {
			return query.Metadata(ctx, eps.MetadataEndpoints(), metric, limit, limitPerMetric, partial)
		},
		Exemplars: func(ctx context.Context, selectors [][]*labels.Matcher, start, end int64, opts query.Options) ([]exemplar.QueryResult, []string, error) {
			return query.Exemplars(ctx, eps.ExemplarEndpoints(), selectors, start, end, opts)
		},
	})
	api.Register(rt.Mux)
	if rt.GRPC != nil {
		(&storeServer{q: q, stores: eps.Stores, eps: eps, parser: p}).register(rt.GRPC)
	}
	if rt.Registry != nil {
		rt.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strata_querier_frame_pool_bytes",
			Help: "Memory kept after queries for the series frames of the next ones; dropped after a minute unused.",
		}, func() float64 { return float64(q.FramePoolBytes()) }))
	}
	qr := &Querier{cfg: cfg, rt: rt, endpoints: eps, Queryable: q, Engine: engine}
	rt.AddService("endpoints", func(ctx context.Context) error {
		// The first refresh decides readiness: the querier can answer once
		// it knows its endpoints, even if some are down.
		eps.Refresh(ctx)
		rt.Readiness.SetReady()
		return eps.Run(ctx)
	})
	return qr, nil
}
