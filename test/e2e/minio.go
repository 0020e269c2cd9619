package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/pkg/bucket"
)

// MinIO is a running real MinIO server with one bucket.
type MinIO struct {
	*Process
	Endpoint  string
	AccessKey string
	SecretKey string
	Bucket    string
}

// StartMinIO starts the real MinIO from .tools/bin on a fresh data
// directory, waits until it is ready and creates a bucket.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := ToolBinary(t, "minio")
	work := t.TempDir()
	addr, console := FreeAddr(t), FreeAddr(t)
	m := &MinIO{Endpoint: addr, AccessKey: "strata-test", SecretKey: "strata-test-secret", Bucket: "strata"}
	env := []string{
		"MINIO_ROOT_USER=" + m.AccessKey,
		"MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	}
	m.Process = StartProcess(t, "minio", work, env, bin,
		"server", filepath.Join(work, "data"), "--address", addr, "--console-address", console, "--quiet")
	m.WaitReady()

	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, m.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket in MinIO: %v", err)
	}
	return m
}

// WaitReady waits until MinIO answers its readiness probe.
func (m *MinIO) WaitReady() { m.WaitHTTP("http://"+m.Endpoint+"/minio/health/ready", ReadyTimeout) }

// Restart starts MinIO again on the same address and data after Stop.
func (m *MinIO) Restart() {
	m.t.Helper()
	if err := m.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.WaitReady()
}

// ObjstoreConfig is the objstore YAML for the bucket.
func (m *MinIO) ObjstoreConfig() string {
	return fmt.Sprintf(`type: S3
config:
  bucket: %s
  endpoint: %s
  access_key: %s
  secret_key: %s
  insecure: true
`, m.Bucket, m.Endpoint, m.AccessKey, m.SecretKey)
}

// NewBucket returns an objstore client for the bucket, for tests to write
// fixtures and check results.
func (m *MinIO) NewBucket(t testing.TB) objstore.InstrumentedBucket {
	t.Helper()
	bkt, err := bucket.New(context.Background(), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), []byte(m.ObjstoreConfig()), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bkt.Close() })
	return bkt
}
