// Package sidecar_test runs the sidecar against a real Prometheus and a real
// MinIO.
package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/shipper"
	"github.com/strata-metrics/strata/test/e2e"
)

func TestSidecarShipsAndServes(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	data := t.TempDir()
	blocks, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 9, Targets: 3, MinTime: end.Add(-6 * time.Hour).UnixMilli(), MaxTime: end.UnixMilli(), NativeHistograms: true}, data)
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
	args := []string{"--prometheus.url=" + prom.URL, "--tsdb.path=" + data, "--objstore.config-file=" + cfgFile, "--sync-interval=1s"}
	sc := e2e.StartStrata(t, "sidecar", true, "", args...)

	// Every generated block arrives, chunks and index byte-identical, with
	// the thanos section.
	e2e.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		for _, b := range blocks {
			if ok, err := bkt.Exists(ctx, b.Meta.ULID.String()+"/meta.json"); err != nil || !ok {
				return fmt.Errorf("block %s not shipped yet (%v)", b.Meta.ULID, err)
			}
		}
		return nil
	})
	dl := t.TempDir()
	uploadTimes := map[string]time.Time{}
	for _, b := range blocks {
		m, err := block.Download(ctx, logger, bkt, b.Meta.ULID, dl)
		if err != nil {
			t.Fatal(err)
		}
		if m.Thanos.Source != block.SourceSidecar || m.Thanos.Labels["cluster"] != "e2e" || m.Thanos.Labels["replica"] != "a" || m.Thanos.Downsample.Resolution != 0 {
			t.Fatalf("block %s meta: %+v", m.ULID, m.Thanos)
		}
		uploadTimes[m.ULID.String()] = m.Thanos.UploadTime
		for _, rel := range []string{"index", "chunks/000001"} {
			want, _ := os.ReadFile(filepath.Join(b.Dir, rel))
			got, err := os.ReadFile(filepath.Join(dl, m.ULID.String(), rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("block %s %s differs in the bucket", m.ULID, rel)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, shipper.StateFilename)); err != nil {
		t.Fatalf("no shipper state file: %v", err)
	}

	// Killed and restarted, the sidecar uploads nothing twice.
	sc.Kill()
	sc.Restart()
	e2e.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		resp, err := httpGet("http://" + sc.HTTPAddr + "/metrics")
		if err != nil {
			return err
		}
		if !bytes.Contains(resp, []byte("strata_shipper_upload_failures_total 0")) {
			return fmt.Errorf("shipper metrics not there yet")
		}
		return nil
	})
	for id, ut := range uploadTimes {
		m, err := block.ReadMetaFromBucket(ctx, bkt, mustULID(t, id))
		if err != nil || !m.Thanos.UploadTime.Equal(ut) {
			t.Fatalf("block %s uploaded again after restart (%v)", id, err)
		}
	}

	// The StoreAPI answers what Prometheus answers.
	conn, err := grpc.NewClient(sc.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := infopb.NewInfoClient(conn).Info(ctx, &infopb.InfoRequest{})
	if err != nil || info.Store == nil || info.Store.MinTime > blocks[0].Meta.MinTime || info.ComponentType != "sidecar" {
		t.Fatalf("Info: %v %v", info, err)
	}
	mint, maxt := end.Add(-6*time.Hour).UnixMilli(), end.UnixMilli()
	stream, err := storepb.NewStoreClient(conn).Series(ctx, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "node_load1"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]model.SamplePair{}
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := r.GetSeries()
		if s == nil {
			continue
		}
		m := model.Metric{}
		for _, l := range s.Labels {
			m[model.LabelName(l.Name)] = model.LabelValue(l.Value)
		}
		for _, c := range s.Chunks {
			chk, err := chunkenc.FromData(chunkenc.EncXOR, c.Raw.Data)
			if err != nil {
				t.Fatal(err)
			}
			it := chk.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if ts >= mint && ts <= maxt {
					got[m.String()] = append(got[m.String()], model.SamplePair{Timestamp: model.Time(ts), Value: model.SampleValue(v)})
				}
			}
		}
	}
	v, _, _, err := prom.API(t).Query(e2e.QueryContext(t), fmt.Sprintf("node_load1[%ds]", (maxt-mint)/1000), end)
	if err != nil {
		t.Fatal(err)
	}
	want := v.(model.Matrix)
	if len(want) != 3 || len(got) != 3 {
		t.Fatalf("series: Prometheus %d, sidecar %d", len(want), len(got))
	}
	for _, s := range want {
		s.Metric["cluster"], s.Metric["replica"] = "e2e", "a"
		g := got[s.Metric.String()]
		// Prometheus' range selector excludes the left edge.
		if len(g) > 0 && g[0].Timestamp == model.Time(mint) {
			g = g[1:]
		}
		if len(g) != len(s.Values) {
			t.Fatalf("%s: sidecar %d samples, Prometheus %d", s.Metric, len(g), len(s.Values))
		}
		for i := range g {
			if g[i] != s.Values[i] {
				t.Fatalf("%s sample %d: sidecar %v, Prometheus %v", s.Metric, i, g[i], s.Values[i])
			}
		}
	}
}
