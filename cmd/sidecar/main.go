// Command sidecar is Strata's sidecar: it runs next to Prometheus, ships its
// blocks to the bucket and serves its recent data over the StoreAPI.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/thanos-io/objstore"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/pkg/bucket"
	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/sidecar"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

func main() {
	// One core unless GOMAXPROCS says otherwise. The sidecar passes
	// Prometheus' remote read frames on; Prometheus does the work, on the
	// same node's cores. One core streams some 50M samples/s, more than a
	// remote read produces, and more threads only took cores from
	// Prometheus' own: on two cores the sidecar path ran at 0.83-0.89x of
	// remote read with two, 0.92-1.01x with one. (In a container with a
	// CPU limit of one core or less, Go picks one anyway.)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	app, flags := component.NewApp("sidecar", "Runs next to Prometheus: ships its blocks to the bucket and serves its recent data over the StoreAPI.", true)
	var (
		cfg sidecar.Config
		bkt bucket.Config
	)
	app.Flag("prometheus.url", "URL of the Prometheus this sidecar runs next to.").Default("http://localhost:9090").StringVar(&cfg.PrometheusURL)
	app.Flag("tsdb.path", "Prometheus' data directory (its --storage.tsdb.path), shared with the sidecar.").Default("./data").StringVar(&cfg.TSDBPath)
	app.Flag("shipper.upload-compacted", "Also upload blocks Prometheus compacted locally (needed when its min and max block durations differ).").
		Default("false").BoolVar(&cfg.UploadCompacted)
	app.Flag("prometheus.ready_timeout", "How long to wait for Prometheus at start before giving up; 0 waits forever.").Default("10m").DurationVar(&cfg.ReadyTimeout)
	app.Flag("prometheus.get_config_timeout", "Timeout for one reading of Prometheus' external labels, flags and time range; a Prometheus that does not answer within it is retried, and shipping goes on meanwhile.").
		Default("30s").DurationVar(&cfg.GetConfigTimeout)
	app.Flag("sync-interval", "How often to look for new blocks and re-read Prometheus' external labels.").Default("30s").DurationVar(&cfg.Refresh)
	bucket.RegisterFlags(app, &bkt)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-sidecar: %v\n", err)
		os.Exit(2)
	}
	// Series frames built by hand go out as they are (see pkg/sidecar).
	rt, err := component.New(flags, grpc.ForceServerCodecV2(storeapi.ServerCodec{}), grpc.WriteBufferSize(256<<10))
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-sidecar: %v\n", err)
		os.Exit(1)
	}
	var b objstore.Bucket
	if !bkt.Empty() {
		ib, err := bucket.NewFromConfig(context.Background(), rt.Logger, rt.Registry, bkt, "sidecar")
		if err != nil {
			rt.Logger.Error("cannot open the bucket", "err", err)
			os.Exit(1)
		}
		b = ib
	}
	if _, err := sidecar.New(cfg, rt, b); err != nil {
		rt.Logger.Error("cannot start the sidecar", "err", err)
		os.Exit(1)
	}
	if err := rt.Run(context.Background()); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}
