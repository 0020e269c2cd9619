// Command querier is Strata's querier: the Prometheus HTTP API over every
// sidecar and store, with HA deduplication.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/querier"
)

func main() {
	// Prometheus runs with GOGC=50 since 2.53: little more CPU, far less
	// memory. A querier's heap is mostly series held by running queries,
	// so the same trade holds. GOGC in the environment still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(querier.DefaultGCPercent)
	}
	app, flags := component.NewApp("querier", "Querier: the Prometheus HTTP API over every sidecar and store, with HA deduplication.", true)
	var cfg querier.Config
	app.Flag("endpoint", "StoreAPI endpoint to query (repeatable): host:port, dns+host:port (A/AAAA lookup) or dnssrv+_grpc._tcp.name (SRV lookup, e.g. a Kubernetes headless service).").
		PlaceHolder("<endpoint>").StringsVar(&cfg.Endpoints)
	app.Flag("endpoint.sd-files", "File SD files listing endpoints (YAML or JSON: a list of {targets: [...]}); re-read at every refresh.").
		PlaceHolder("<path>").StringsVar(&cfg.EndpointSDFiles)
	app.Flag("endpoint.refresh-interval", "How often endpoints are resolved and asked for their Info.").Default("5s").DurationVar(&cfg.EndpointRefresh)
	app.Flag("query.replica-label", "Label that tells HA replicas apart (repeatable); series differing only in it are deduplicated.").
		StringsVar(&cfg.ReplicaLabels)
	app.Flag("query.timeout", "Maximum time to process a query.").Default("2m").DurationVar(&cfg.Timeout)
	app.Flag("query.max-concurrent", "Maximum number of queries evaluated at once; more wait for a slot.").Default("20").IntVar(&cfg.MaxConcurrent)
	app.Flag("query.lookback-delta", "How far back to look for a sample of a series at each evaluation step.").Default("5m").DurationVar(&cfg.LookbackDelta)
	app.Flag("query.max-samples", "Maximum number of samples a query may load into memory; beyond it the query fails instead of the process.").
		Default("50000000").IntVar(&cfg.MaxSamples)
	app.Flag("query.partial-response", "Answer with the stores that responded, plus a warning, when some fail (the partial_response parameter overrides it per request).").
		Default("true").BoolVar(&cfg.PartialResponse)
	app.Flag("query.auto-downsampling", "Use downsampled data when the request does not say (max_source_resolution=auto: a fifth of the step). On by default, unlike Thanos, so long-range dashboards get downsampled data.").
		Default("true").BoolVar(&cfg.AutoDownsampling)
	app.Flag("query.default-step", "Resolution of subqueries that give no step.").Default("1m").DurationVar(&cfg.DefaultStep)
	app.Flag("store.response-timeout", "Maximum time to wait for one store's answer before treating it as failed; 0 waits up to the query timeout.").
		Default("0s").DurationVar(&cfg.StoreTimeout)
	app.Flag("query.vertical-shards", "Split the series of a range query's aggregations into this many shards, evaluated one after another, so the querier holds a fraction of a wide query at a time; 1 evaluates queries whole. Only aggregations whose answer stays exact are split.").
		Default(strconv.Itoa(querier.DefaultVerticalShards)).IntVar(&cfg.VerticalShards)
	app.Flag("query.vertical-shards-min-range", "Range queries spanning less than this are evaluated whole: they hold little, and every shard costs a Series request to each store (a full remote read of Prometheus on a sidecar).").
		Default(querier.DefaultShardMinRange.String()).DurationVar(&cfg.ShardMinRange)
	app.Flag("query.vertical-shards-concurrency", "Shards of one query evaluated at once.").Default(strconv.Itoa(querier.DefaultShardConcurrency)).IntVar(&cfg.ShardConcurrency)
	app.Flag("enable-feature", "Enable a PromQL feature, as Prometheus' flag of the same name (repeatable or comma-separated): "+strings.Join(querier.PromQLFeatures, ", ")+".").
		StringsVar(&cfg.Features)
	tlsFlags := component.RegisterGRPCClientFlags(app)

	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-querier: %v\n", err)
		os.Exit(2)
	}
	creds, err := tlsFlags.TransportCredentials()
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-querier: %v\n", err)
		os.Exit(2)
	}
	cfg.DialOptions = append(cfg.DialOptions, creds)
	var features []string
	for _, f := range cfg.Features {
		features = append(features, strings.Split(f, ",")...)
	}
	cfg.Features = features
	rt, err := component.New(flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-querier: %v\n", err)
		os.Exit(1)
	}
	if _, err := querier.New(cfg, rt); err != nil {
		rt.Logger.Error("cannot start the querier", "err", err)
		os.Exit(1)
	}
	if err := rt.Run(context.Background()); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}
