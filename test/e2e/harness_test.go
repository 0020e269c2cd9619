package e2e_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/strata-metrics/strata/test/e2e"
)

func TestPrometheusStartsAndScrapes(t *testing.T) {
	p := e2e.StartPrometheus(t, e2e.PrometheusOptions{ExternalLabels: map[string]string{"replica": "a"}})
	api := p.API(t)
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		v, _, _, err := api.Query(e2e.QueryContext(t), `up{job="prometheus"}`, time.Now())
		if err != nil {
			return err
		}
		vec, ok := v.(model.Vector)
		if !ok || len(vec) != 1 || vec[0].Value != 1 {
			return fmt.Errorf("up = %v", v)
		}
		return nil
	})
	cfg, err := api.Config(e2e.QueryContext(t))
	if err != nil || !strings.Contains(cfg.YAML, "replica: a") {
		t.Fatalf("external labels not in the running config: %v %q", err, cfg.YAML)
	}
	if !strings.Contains(p.Logs(), "Server is ready") {
		t.Fatal("Prometheus' log was not captured")
	}
}

func TestMinIOKeepsDataAcrossRestart(t *testing.T) {
	m := e2e.StartMinIO(t)
	bkt := m.NewBucket(t)
	ctx := context.Background()
	if err := bkt.Upload(ctx, "dir/obj", strings.NewReader("payload")); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if !m.Exited() {
		t.Fatal("MinIO still running after Stop")
	}
	ctx2, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := bkt.Get(ctx2, "dir/obj"); err == nil {
		t.Fatal("read from a stopped MinIO succeeded")
	}
	m.Restart()
	e2e.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		r, err := bkt.Get(ctx, "dir/obj")
		if err != nil {
			return err
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		if string(b) != "payload" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	})
}
