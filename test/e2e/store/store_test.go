// Package store_test runs the store gateway and a querier as processes over
// a real MinIO bucket.
package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/test/e2e"
)

func TestStoreGatewayOverMinIO(t *testing.T) {
	ctx := context.Background()
	minio := e2e.StartMinIO(t)
	bkt := minio.NewBucket(t)
	end := time.Now().Add(-48 * time.Hour).Truncate(2 * time.Hour)
	cfg := blockgen.Config{Seed: 4, Targets: 6, MinTime: end.Add(-8 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(), Replicas: 2,
		ExternalLabels: map[string]string{"cluster": "e2e"}}
	if _, err := blockgen.WriteBucket(ctx, slog.New(slog.DiscardHandler), cfg, bkt); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "objstore.yml")
	if err := os.WriteFile(conf, []byte(minio.ObjstoreConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	store := e2e.StartStrata(t, "store", true, "", "--objstore.config-file="+conf, "--data-dir="+t.TempDir())
	q := e2e.StartStrata(t, "querier", true, "", "--endpoint="+store.GRPCAddr, "--query.replica-label=replica", "--endpoint.refresh-interval=1s")
	api := e2e.NewAPI(t, "http://"+q.HTTPAddr)
	at := end.Add(-3 * time.Hour)
	e2e.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		v, _, _, err := api.Query(e2e.QueryContext(t), `count(node_load1)`, at)
		if err != nil {
			return err
		}
		if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || vec[0].Value != 6 {
			return fmt.Errorf("count(node_load1) = %v, want the 6 targets once", v)
		}
		return nil
	})
	v, _, _, err := api.QueryRange(e2e.QueryContext(t), `sum(rate(http_requests_total[5m]))`, promRange(end))
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(model.Matrix); len(m) != 1 || len(m[0].Values) < 90 {
		t.Fatalf("range query over the bucket: %v", v)
	}
}
