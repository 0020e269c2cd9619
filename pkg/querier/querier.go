package querier

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/endpoint"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/queryapi"
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
}

// Querier is a configured querier.
type Querier struct {
	cfg       Config
	rt        *component.Runtime
	endpoints *endpoint.Set
	Queryable *query.Queryable
	Engine    *promql.Engine
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
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               rt.Logger.With("subsystem", "engine"),
		Reg:                  rt.Registry,
		MaxSamples:           cfg.MaxSamples,
		Timeout:              cfg.Timeout,
		LookbackDelta:        cfg.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		EnablePerStepStats:   true,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return cfg.DefaultStep.Milliseconds()
		},
		Parser: p,
	})
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
	})
	api.Register(rt.Mux)
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
