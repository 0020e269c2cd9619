// Command store is Strata's store gateway: it serves the blocks in the
// bucket over the StoreAPI.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/pkg/bucket"
	"github.com/strata-metrics/strata/pkg/bucketstore"
	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

func main() {
	app, flags := component.NewApp("store", "Store gateway: serves the blocks in the bucket over the StoreAPI.", true)
	var (
		cfg                         bucketstore.Config
		bkt                         bucket.Config
		dataDir                     string
		syncInterval                time.Duration
		minTime, maxTime            string
		relabelFile, relabelContent string
		ignoreDelay, consistency    model.Duration
		indexCache, chunkPool       units.Base2Bytes
	)
	bucket.RegisterFlags(app, &bkt)
	app.Flag("data-dir", "Local directory for what the store derives from the bucket: the index headers of the blocks, so that a restart needs no request to open them.").Default("./data").StringVar(&dataDir)
	app.Flag("sync-block-duration", "How often to list the bucket for new and removed blocks.").Default("15m").DurationVar(&syncInterval)
	app.Flag("block-sync-concurrency", "Blocks whose metadata is read at once during a sync.").Default("20").IntVar(&cfg.SyncConcurrency)
	app.Flag("min-time", "Serve only blocks with data after this time: RFC3339, or a duration before now like -2w. For time-based sharding.").
		Default("0000-01-01T00:00:00Z").StringVar(&minTime)
	app.Flag("max-time", "Serve only blocks with data before this time: RFC3339, or a duration before now like -2w.").
		Default("9999-12-31T23:59:59Z").StringVar(&maxTime)
	app.Flag("selector.relabel-config-file", "File with relabel configs applied to each block's external labels; dropped blocks are not served. For label-based sharding.").
		StringVar(&relabelFile)
	app.Flag("selector.relabel-config", "Relabel configs as YAML, instead of --selector.relabel-config-file.").StringVar(&relabelContent)
	app.Flag("ignore-deletion-marks-delay", "Stop serving a block this long after it was marked for deletion.").Default("24h").SetValue(&ignoreDelay)
	app.Flag("consistency-delay", "Do not serve blocks younger than this: their upload may still be settling.").Default("0s").SetValue(&consistency)
	app.Flag("index-cache-size", "Accepted for Thanos compatibility, no effect: index pages live in memory-mapped local copies in --data-dir, cached by the kernel, not in the Go heap.").Default("250MB").BytesVar(&indexCache)
	app.Flag("chunk-pool-size", "Size of the in-memory cache of chunk pages. Large scans do not fit any cache, so the default is small; raise it on S3 to save GETs of panels that read the same few series again.").Default("64MB").BytesVar(&chunkPool)
	app.Flag("store.limits.request-series", "Most series one Series request may select; 0 is no limit.").Default("0").Int64Var(&cfg.LimitSeries)
	app.Flag("store.limits.request-samples", "Most samples one Series request may read (estimated at 120 per chunk); 0 is no limit.").Default("0").Int64Var(&cfg.LimitSamples)
	app.Flag("store.grpc.series-max-concurrency", "Series requests served at once; more wait.").Default("20").IntVar(&cfg.MaxConcurrency)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-store: %v\n", err)
		os.Exit(2)
	}
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "strata-store: %v\n", err)
		os.Exit(2)
	}
	var err error
	if cfg.MinTime, cfg.MinTimeAgo, err = parseTime("--min-time", minTime); err != nil {
		fail(err)
	}
	if cfg.MaxTime, cfg.MaxTimeAgo, err = parseTime("--max-time", maxTime); err != nil {
		fail(err)
	}
	if cfg.Relabel, err = loadRelabel(relabelFile, relabelContent); err != nil {
		fail(err)
	}
	cfg.IgnoreDeletionMarksDelay, cfg.ConsistencyDelay = time.Duration(ignoreDelay), time.Duration(consistency)
	cfg.IndexCacheBytes, cfg.ChunkCacheBytes = int64(indexCache), int64(chunkPool)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		fail(fmt.Errorf("--data-dir: %w", err))
	}
	cfg.DataDir = dataDir

	// Series frames of raw data are built by hand and sent as they are.
	cfg.EncodedFrames = true
	rt, err := component.New(flags, grpc.ForceServerCodecV2(storeapi.ServerCodec{}))
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bucket.NewFromConfig(ctx, rt.Logger, rt.Registry, bkt, "store")
	if err != nil {
		rt.Logger.Error("cannot open the bucket", "err", err)
		os.Exit(1)
	}
	store := bucketstore.New(ctx, cfg, b, rt.Logger, rt.Registry)
	store.Register(rt.GRPC)
	rt.Readiness.SetNotReady("first bucket sync not done")
	rt.AddService("store", func(ctx context.Context) error {
		// Ready once the first sync has loaded what it can.
		for {
			err := store.Sync(ctx)
			if err == nil {
				break
			}
			rt.Readiness.SetNotReady("first bucket sync failed: " + err.Error())
			rt.Logger.Error("first bucket sync failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
		rt.Readiness.SetReady()
		return store.Run(ctx, syncInterval)
	})
	if err := rt.Run(ctx); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}

// parseTime reads an RFC3339 time, or a negative duration before now,
// which the store evaluates again at each use (as Thanos does).
func parseTime(flag, s string) (int64, time.Duration, error) {
	if strings.HasPrefix(s, "-") {
		d, err := model.ParseDuration(s[1:])
		if err != nil {
			return 0, 0, fmt.Errorf("%s %q: %w", flag, s, err)
		}
		if d == 0 {
			return 0, 0, fmt.Errorf("%s %q: a duration before now must not be zero", flag, s)
		}
		return 0, time.Duration(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %q: want RFC3339 or a duration like -2w: %w", flag, s, err)
	}
	return t.UnixMilli(), 0, nil
}

func loadRelabel(file, content string) ([]*relabel.Config, error) {
	if file != "" && content != "" {
		return nil, fmt.Errorf("give either --selector.relabel-config-file or --selector.relabel-config, not both")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--selector.relabel-config-file: %w", err)
		}
		content = string(b)
	}
	if strings.TrimSpace(content) == "" {
		return nil, nil
	}
	var cfgs []*relabel.Config
	if err := yaml.UnmarshalStrict([]byte(content), &cfgs); err != nil {
		return nil, fmt.Errorf("selector relabel config: %w", err)
	}
	return cfgs, nil
}
