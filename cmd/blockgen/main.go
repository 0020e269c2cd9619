// Command blockgen writes realistic Prometheus TSDB blocks (node-exporter and
// HTTP-service-like data of one or more HA replicas) into a Prometheus data
// directory or into a bucket with Thanos meta, for tests, benchmarks and the
// demo.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/bucket"
)

func main() {
	app := kingpin.New("blockgen", "Writes realistic Prometheus TSDB blocks into a Prometheus data directory or an object storage bucket.")
	app.Version(version.Print("strata-blockgen"))
	app.HelpFlag.Short('h')

	var (
		cfg       blockgen.Config
		outDir    string
		bktCfg    bucket.Config
		start     string
		end       string
		duration  time.Duration
		extLabels = map[string]string{}
	)
	app.Flag("output.dir", "Write blocks into this Prometheus data directory (one replica per subdirectory when --replicas > 1).").StringVar(&outDir)
	bucket.RegisterFlags(app, &bktCfg)
	app.Flag("targets", "Number of scraped hosts; each has about 47 series (49 with native histograms).").Default("100").IntVar(&cfg.Targets)
	app.Flag("start", "Start of the data, RFC3339 (default: --end minus --duration).").StringVar(&start)
	app.Flag("end", "End of the data (exclusive), RFC3339 (default: now).").StringVar(&end)
	app.Flag("duration", "Length of the data when --start is not given.").Default("24h").DurationVar(&duration)
	app.Flag("scrape-interval", "Scrape interval of the simulated Prometheus.").Default("15s").DurationVar(&cfg.ScrapeInterval)
	app.Flag("block-duration", "Range of each block; blocks are aligned to multiples of it.").Default("2h").DurationVar(&cfg.BlockDuration)
	app.Flag("replicas", "Number of HA replicas scraping the same targets.").Default("1").IntVar(&cfg.Replicas)
	app.Flag("replica-label", "External label that names the replica.").Default("replica").StringVar(&cfg.ReplicaLabel)
	app.Flag("external-label", "External label name=value for the thanos meta section (repeatable).").StringMapVar(&extLabels)
	app.Flag("seed", "Seed: the same seed and flags write the same bytes.").Default("1").Int64Var(&cfg.Seed)
	app.Flag("native-histograms", "Add a native histogram per HTTP handler.").Default("true").BoolVar(&cfg.NativeHistograms)
	app.Flag("concurrency", "Blocks written at once.").Default("2").IntVar(&cfg.Concurrency)
	kingpin.MustParse(app.Parse(os.Args[1:]))

	logger := promslog.New(&promslog.Config{})
	if err := run(logger, cfg, outDir, bktCfg, start, end, duration, extLabels); err != nil {
		logger.Error("blockgen failed", "err", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, cfg blockgen.Config, outDir string, bktCfg bucket.Config, start, end string, duration time.Duration, ext map[string]string) error {
	if (outDir == "") == bktCfg.Empty() {
		return fmt.Errorf("give exactly one of --output.dir or --objstore.config-file/--objstore.config")
	}
	endT := time.Now().Truncate(time.Second)
	if end != "" {
		t, err := time.Parse(time.RFC3339, end)
		if err != nil {
			return fmt.Errorf("--end: %w", err)
		}
		endT = t
	}
	startT := endT.Add(-duration)
	if start != "" {
		t, err := time.Parse(time.RFC3339, start)
		if err != nil {
			return fmt.Errorf("--start: %w", err)
		}
		startT = t
	}
	cfg.MinTime, cfg.MaxTime = startT.UnixMilli(), endT.UnixMilli()
	cfg.ExternalLabels = ext

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	began := time.Now()
	var (
		blocks []blockgen.BlockInfo
		err    error
		where  string
	)
	if outDir != "" {
		where = outDir
		blocks, err = blockgen.WriteDir(ctx, cfg, outDir)
	} else {
		where = "bucket"
		conf, lerr := bktCfg.Load()
		if lerr != nil {
			return lerr
		}
		bkt, berr := bucket.New(ctx, logger, nil, conf, "blockgen")
		if berr != nil {
			return berr
		}
		defer bkt.Close()
		blocks, err = blockgen.WriteBucket(ctx, logger, cfg, bkt)
	}
	if err != nil {
		return err
	}
	took := time.Since(began)
	for _, b := range blocks {
		fmt.Printf("%s\t%s=%s\t%s\t%s\tseries=%d\tsamples=%d\t%s\n", b.Meta.ULID, cfg.ReplicaLabel, b.Meta.Thanos.Labels[cfg.ReplicaLabel],
			time.UnixMilli(b.Meta.MinTime).UTC().Format(time.RFC3339), time.UnixMilli(b.Meta.MaxTime).UTC().Format(time.RFC3339),
			b.Meta.Stats.NumSeries, b.Meta.Stats.NumSamples, b.Dir)
	}
	samples := blockgen.Samples(blocks)
	logger.Info("wrote blocks", "to", where, "blocks", len(blocks), "replicas", max(cfg.Replicas, 1), "series_per_replica", cfg.SeriesCount(),
		"samples", samples, "took", took.Round(time.Millisecond), "samples_per_second", int64(float64(samples)/took.Seconds()))
	return nil
}
