// Command blockgen writes realistic Prometheus TSDB blocks (node-exporter and
// HTTP-service-like data of one or more HA replicas) into a Prometheus data
// directory or into a bucket with Thanos meta, for tests, benchmarks and the
// demo.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/bucket"
)

// options are the parsed flags.
type options struct {
	cfg        blockgen.Config
	outDir     string
	bucket     bucket.Config
	start, end string
	duration   time.Duration
	extLabels  map[string]string
	outages    []string
}

func parseFlags(args []string) (*options, error) {
	app := kingpin.New("blockgen", "Writes realistic Prometheus TSDB blocks into a Prometheus data directory or an object storage bucket.")
	app.Version(version.Print("strata-blockgen"))
	app.HelpFlag.Short('h')

	o := &options{extLabels: map[string]string{}}
	app.Flag("output.dir", "Write blocks into this Prometheus data directory (one replica per subdirectory when --replicas > 1).").StringVar(&o.outDir)
	bucket.RegisterFlags(app, &o.bucket)
	app.Flag("targets", fmt.Sprintf("Number of scraped hosts; each has %d series (%d with native histograms).",
		blockgen.SeriesPerTarget(false), blockgen.SeriesPerTarget(true))).Default("100").IntVar(&o.cfg.Targets)
	app.Flag("start", "Start of the data, RFC3339 (default: --end minus --duration).").StringVar(&o.start)
	app.Flag("end", "End of the data (exclusive), RFC3339 (default: now).").StringVar(&o.end)
	app.Flag("duration", "Length of the data when --start is not given.").Default("24h").DurationVar(&o.duration)
	app.Flag("scrape-interval", "Scrape interval of the simulated Prometheus.").Default("15s").DurationVar(&o.cfg.ScrapeInterval)
	app.Flag("block-duration", "Range of each block; blocks are aligned to multiples of it since the epoch.").Default("2h").DurationVar(&o.cfg.BlockDuration)
	app.Flag("replicas", "Number of HA replicas scraping the same targets.").Default("1").IntVar(&o.cfg.Replicas)
	app.Flag("replica-label", "External label that names the replica (values a, b, ...).").Default("replica").StringVar(&o.cfg.ReplicaLabel)
	app.Flag("external-label", "External label name=value for the thanos meta section (repeatable).").StringMapVar(&o.extLabels)
	app.Flag("seed", "Seed: the same seed and flags write the same bytes.").Default("1").Int64Var(&o.cfg.Seed)
	app.Flag("native-histograms", "Add a native histogram per HTTP handler.").Default("true").BoolVar(&o.cfg.NativeHistograms)
	app.Flag("outage", "A span without scrapes by one replica, as <replica>@<RFC3339 start>+<duration>, e.g. b@2026-03-01T10:00:00Z+30m (repeatable).").StringsVar(&o.outages)
	app.Flag("concurrency", "Cores to use.").Default("2").IntVar(&o.cfg.Concurrency)
	if _, err := app.Parse(args); err != nil {
		return nil, err
	}
	if (o.outDir == "") == o.bucket.Empty() {
		return nil, fmt.Errorf("give exactly one of --output.dir or --objstore.config-file/--objstore.config")
	}
	endT := time.Now().Truncate(time.Second)
	if o.end != "" {
		t, err := time.Parse(time.RFC3339, o.end)
		if err != nil {
			return nil, fmt.Errorf("--end: %w", err)
		}
		endT = t
	}
	startT := endT.Add(-o.duration)
	if o.start != "" {
		t, err := time.Parse(time.RFC3339, o.start)
		if err != nil {
			return nil, fmt.Errorf("--start: %w", err)
		}
		startT = t
	}
	o.cfg.MinTime, o.cfg.MaxTime = startT.UnixMilli(), endT.UnixMilli()
	o.cfg.ExternalLabels = o.extLabels
	for _, s := range o.outages {
		out, err := parseOutage(s, o.cfg)
		if err != nil {
			return nil, fmt.Errorf("--outage %q: %w", s, err)
		}
		o.cfg.Outages = append(o.cfg.Outages, out)
	}
	return o, nil
}

// parseOutage parses <replica>@<RFC3339 start>+<duration>.
func parseOutage(s string, cfg blockgen.Config) (blockgen.Outage, error) {
	name, span, ok := strings.Cut(s, "@")
	plus := strings.LastIndex(span, "+")
	if !ok || plus < 0 {
		return blockgen.Outage{}, fmt.Errorf("want <replica>@<start>+<duration>")
	}
	start, err := time.Parse(time.RFC3339, span[:plus])
	if err != nil {
		return blockgen.Outage{}, err
	}
	d, err := time.ParseDuration(span[plus+1:])
	if err != nil {
		return blockgen.Outage{}, err
	}
	cfg.Defaults()
	for i, v := range cfg.ReplicaValues[:cfg.Replicas] {
		if v == name {
			return blockgen.Outage{Replica: i, Start: start.UnixMilli(), End: start.Add(d).UnixMilli()}, nil
		}
	}
	return blockgen.Outage{}, fmt.Errorf("no replica %q among %q", name, cfg.ReplicaValues[:cfg.Replicas])
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "blockgen:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	logger := promslog.New(&promslog.Config{})
	if err := run(ctx, logger, o, os.Stdout); err != nil {
		logger.Error("blockgen failed", "err", err)
		os.Exit(1)
	}
}

// run writes the blocks and prints one line per block to out.
func run(ctx context.Context, logger *slog.Logger, o *options, out io.Writer) error {
	began := time.Now()
	var (
		blocks []blockgen.BlockInfo
		err    error
		where  = o.outDir
	)
	if o.outDir != "" {
		blocks, err = blockgen.WriteDir(ctx, o.cfg, o.outDir)
	} else {
		where = "bucket"
		bkt, berr := bucket.NewFromConfig(ctx, logger, nil, o.bucket, "blockgen")
		if berr != nil {
			return berr
		}
		defer bkt.Close()
		blocks, err = blockgen.WriteBucket(ctx, logger, o.cfg, bkt)
	}
	if err != nil {
		return err
	}
	took := time.Since(began)
	cfg := o.cfg
	cfg.Defaults()
	for _, b := range blocks {
		fmt.Fprintf(out, "%s\t%s=%s\t%s\t%s\tseries=%d\tsamples=%d\t%s\n", b.Meta.ULID, cfg.ReplicaLabel, b.Meta.Thanos.Labels[cfg.ReplicaLabel],
			time.UnixMilli(b.Meta.MinTime).UTC().Format(time.RFC3339), time.UnixMilli(b.Meta.MaxTime).UTC().Format(time.RFC3339),
			b.Meta.Stats.NumSeries, b.Meta.Stats.NumSamples, b.Dir)
	}
	samples := blockgen.Samples(blocks)
	logger.Info("wrote blocks", "to", where, "blocks", len(blocks), "replicas", cfg.Replicas, "series_per_replica", cfg.SeriesCount(),
		"samples", samples, "took", took.Round(time.Millisecond), "samples_per_second", int64(float64(samples)/took.Seconds()))
	return nil
}
