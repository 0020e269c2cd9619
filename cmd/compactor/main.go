// Command compactor is Strata's compactor: it compacts, deduplicates and
// applies retention to the blocks in the bucket.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/common/model"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/bucket"
	"github.com/strata-metrics/strata/pkg/compact"
	"github.com/strata-metrics/strata/pkg/component"
)

func main() {
	app, flags := component.NewApp("compactor", "Compactor: compacts, deduplicates, downsamples and applies retention to the blocks in the bucket.", false)
	var (
		cfg                      compact.Config
		bkt                      bucket.Config
		wait, downsamplingOff    bool
		waitInterval             time.Duration
		retRaw, ret5m, ret1h     model.Duration
		deleteDelay, consistency model.Duration
	)
	bucket.RegisterFlags(app, &bkt)
	app.Flag("data-dir", "Directory for the blocks being compacted; safe to wipe between runs.").Default("./data").StringVar(&cfg.DataDir)
	app.Flag("wait", "Keep running and compact every --wait-interval, instead of running once and exiting.").Default("false").BoolVar(&wait)
	app.Flag("wait-interval", "Time between runs with --wait.").Default("5m").DurationVar(&waitInterval)
	app.Flag("retention.resolution-raw", "How long to keep raw blocks; 0d keeps them forever.").Default("0d").SetValue(&retRaw)
	app.Flag("retention.resolution-5m", "How long to keep 5m downsampled blocks; 0d keeps them forever.").Default("0d").SetValue(&ret5m)
	app.Flag("retention.resolution-1h", "How long to keep 1h downsampled blocks; 0d keeps them forever.").Default("0d").SetValue(&ret1h)
	app.Flag("downsampling.disable", "Do not downsample. By default raw blocks spanning 40h or more get a 5m block and 5m blocks spanning 10d or more a 1h block, so that long-range queries read aggregates.").Default("false").BoolVar(&downsamplingOff)
	app.Flag("compact.concurrency", "Groups compacted at once.").Default("1").IntVar(&cfg.Concurrency)
	app.Flag("downsample.concurrency", "Blocks downsampled at once.").Default("1").IntVar(&cfg.DownsampleConcurrency)
	app.Flag("delete-delay", "How long a block marked for deletion stays before it is deleted, so store gateways switch to its replacement first.").Default("48h").SetValue(&deleteDelay)
	app.Flag("consistency-delay", "Leave blocks younger than this alone: their upload may still be settling.").Default("30m").SetValue(&consistency)
	app.Flag("compact.enable-vertical-compaction", "Merge overlapping blocks of a group instead of halting it.").Default("false").BoolVar(&cfg.VerticalCompaction)
	app.Flag("deduplication.replica-label", "Label telling HA replicas apart (repeatable): their blocks are merged into deduplicated blocks without it.").
		StringsVar(&cfg.ReplicaLabels)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-compactor: %v\n", err)
		os.Exit(2)
	}
	cfg.Retention = map[int64]time.Duration{
		block.ResolutionRaw: time.Duration(retRaw), block.Resolution5m: time.Duration(ret5m), block.Resolution1h: time.Duration(ret1h),
	}
	cfg.Downsampling = !downsamplingOff
	if err := compact.CheckRetention(cfg.Retention, cfg.Downsampling); err != nil {
		fmt.Fprintf(os.Stderr, "strata-compactor: %v\n", err)
		os.Exit(2)
	}
	cfg.DeleteDelay, cfg.ConsistencyDelay = time.Duration(deleteDelay), time.Duration(consistency)

	rt, err := component.New(flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-compactor: %v\n", err)
		os.Exit(1)
	}
	ctx := context.Background()
	b, err := bucket.NewFromConfig(ctx, rt.Logger, rt.Registry, bkt, "compactor")
	if err != nil {
		rt.Logger.Error("cannot open the bucket", "err", err)
		os.Exit(1)
	}
	c, err := compact.New(cfg, b, rt.Logger, rt.Registry)
	if err != nil {
		rt.Logger.Error("cannot start the compactor", "err", err)
		os.Exit(1)
	}
	rt.Readiness.SetReady()
	if !wait {
		if err := c.RunOnce(ctx); err != nil {
			rt.Logger.Error("compaction failed", "err", err)
			os.Exit(1)
		}
		rt.Logger.Info("compaction done")
		return
	}
	rt.AddService("compactor", func(ctx context.Context) error { return c.Run(ctx, waitInterval) })
	if err := rt.Run(ctx); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}
