package bucket

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFilesystemBucketFromConfig(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	bkt, err := NewFromConfig(context.Background(), logger, reg,
		Config{Content: "type: FILESYSTEM\nconfig:\n  directory: " + dir + "\n"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := bkt.Upload(ctx, "a/b", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a", "b")); err != nil || string(b) != "hello" {
		t.Fatalf("object not on disk: %q %v", b, err)
	}
	r, err := bkt.Get(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
	if n := testutil.CollectAndCount(reg, "objstore_bucket_operations_total"); n == 0 {
		t.Fatal("no objstore operation metrics registered")
	}
	if !strings.Contains(logs.String(), "loading bucket configuration") {
		t.Fatalf("objstore's log line did not reach our logger: %q", logs.String())
	}
}

func TestConfigErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "empty.yml")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no object storage configured"},
		{Config{File: "x", Content: "y"}, "not both"},
		{Config{File: filepath.Join(t.TempDir(), "missing.yml")}, "read --objstore.config-file"},
		{Config{File: f}, "is empty"},
		{Config{Content: "type: NOPE\nconfig: {}\n"}, "not supported"},
		{Config{Content: "type: FILESYSTEM\nconfig:\n  directory: x\nbogus: 1\n"}, "parsing config YAML"},
	} {
		_, err := NewFromConfig(context.Background(), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), tc.cfg, "test")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	if !(Config{}).Empty() || (Config{Content: "x"}).Empty() {
		t.Error("Empty() is wrong")
	}
}
