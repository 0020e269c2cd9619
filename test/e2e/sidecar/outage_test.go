package sidecar_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/test/e2e"
)

var failures = regexp.MustCompile(`strata_shipper_upload_failures_total (\d+)`)

// TestBucketOutage: with MinIO down the sidecar keeps retrying; once it is
// back every block arrives.
func TestBucketOutage(t *testing.T) {
	ctx := context.Background()
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	data := t.TempDir()
	blocks, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 3, Targets: 2, MinTime: end.Add(-4 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli()}, data)
	if err != nil {
		t.Fatal(err)
	}
	prom := e2e.StartPrometheus(t, e2e.PrometheusOptions{DataDir: data, BlockDuration: 2 * time.Hour,
		ExternalLabels: map[string]string{"cluster": "e2e", "replica": "a"}})
	minio := e2e.StartMinIO(t)
	bkt := minio.NewBucket(t)
	cfgFile := filepath.Join(t.TempDir(), "objstore.yml")
	if err := os.WriteFile(cfgFile, []byte(minio.ObjstoreConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	minio.Stop()
	sc := e2e.StartStrata(t, "sidecar", true, "", "--prometheus.url="+prom.URL, "--tsdb.path="+data, "--objstore.config-file="+cfgFile, "--sync-interval=1s")
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		b, err := httpGet("http://" + sc.HTTPAddr + "/metrics")
		if err != nil {
			return err
		}
		m := failures.FindSubmatch(b)
		if m == nil {
			return fmt.Errorf("no failure metric yet")
		}
		if n, _ := strconv.Atoi(string(m[1])); n == 0 {
			return fmt.Errorf("no failed upload yet")
		}
		return nil
	})
	minio.Restart()
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		for _, b := range blocks {
			if ok, err := bkt.Exists(ctx, b.Meta.ULID.String()+"/meta.json"); err != nil || !ok {
				return fmt.Errorf("block %s not shipped yet (%v)", b.Meta.ULID, err)
			}
		}
		return nil
	})
}

// TestPrometheusHangs: a Prometheus that accepts connections but answers
// nothing (here stopped with SIGSTOP) makes the sidecar unready, but does
// not stop it from shipping new blocks.
func TestPrometheusHangs(t *testing.T) {
	ctx := context.Background()
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	data := t.TempDir()
	blocks, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 4, Targets: 1, MinTime: end.Add(-4 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli()}, data)
	if err != nil {
		t.Fatal(err)
	}
	prom := e2e.StartPrometheus(t, e2e.PrometheusOptions{DataDir: data, BlockDuration: 2 * time.Hour,
		ExternalLabels: map[string]string{"cluster": "e2e", "replica": "a"}})
	bucketDir := t.TempDir()
	bkt, err := filesystem.NewBucket(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	sc := e2e.StartStrata(t, "sidecar", true, "", "--prometheus.url="+prom.URL, "--tsdb.path="+data, "--sync-interval=1s",
		"--prometheus.get_config_timeout=1s", "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: "+bucketDir+"\n")
	shipped := func(bs ...blockgen.BlockInfo) func() error {
		return func() error {
			for _, b := range bs {
				if ok, err := bkt.Exists(ctx, b.Meta.ULID.String()+"/meta.json"); err != nil || !ok {
					return fmt.Errorf("block %s not shipped yet (%v)", b.Meta.ULID, err)
				}
			}
			return nil
		}
	}
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, shipped(blocks...))

	prom.Freeze()
	t.Cleanup(prom.Thaw)
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		resp, err := http.Get("http://" + sc.HTTPAddr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return fmt.Errorf("the sidecar is still ready with Prometheus hung")
		}
		return nil
	})
	// A block Prometheus finished just before it hung.
	stage := t.TempDir()
	next, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 5, Targets: 1, MinTime: end.UnixMilli(), MaxTime: end.Add(2 * time.Hour).UnixMilli()}, stage)
	if err != nil || len(next) != 1 {
		t.Fatalf("%d blocks, %v", len(next), err)
	}
	if err := os.Rename(next[0].Dir, filepath.Join(data, next[0].Meta.ULID.String())); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, shipped(next...))
}

// TestRefusals: the sidecar refuses, naming what to change, a Prometheus
// without external labels and one that compacts blocks itself; block
// durations are compared as durations (2h is 120m).
func TestRefusals(t *testing.T) {
	cases := []struct {
		name  string
		opts  e2e.PrometheusOptions
		wants string // empty: the sidecar becomes ready
	}{
		{"no external labels", e2e.PrometheusOptions{}, "global.external_labels"},
		{"local compaction", e2e.PrometheusOptions{ExternalLabels: map[string]string{"replica": "a"},
			ExtraArgs: []string{"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=6h"}}, "--shipper.upload-compacted"},
		{"2h and 120m", e2e.PrometheusOptions{ExternalLabels: map[string]string{"replica": "a"},
			ExtraArgs: []string{"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=120m"}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prom := e2e.StartPrometheus(t, c.opts)
			sc := e2e.StartStrataNoWait(t, "sidecar", true, "", "--prometheus.url="+prom.URL, "--tsdb.path="+prom.DataDir)
			if c.wants == "" {
				sc.WaitReady()
				return
			}
			e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
				if !sc.Exited() {
					return fmt.Errorf("the sidecar still runs")
				}
				return nil
			})
			if !strings.Contains(sc.Logs(), c.wants) {
				t.Fatalf("the sidecar's refusal does not name %q:\n%s", c.wants, sc.Logs())
			}
		})
	}
}
