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

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
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
	// Thanos' metric names, so its dashboards and alerts work unchanged.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	uploads := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "thanos_objstore_bucket_operations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["operation"] == "upload" && l["bucket"] == bkt.Name() {
				uploads = m.GetCounter().GetValue()
			}
		}
	}
	if uploads != 1 {
		t.Fatalf("thanos_objstore_bucket_operations_total{operation=upload,bucket=%q} = %v, want 1", bkt.Name(), uploads)
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
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "no object storage configured"},
		{"blank content", Config{Content: " \n"}, "no object storage configured"},
		{"both flags", Config{File: "x", Content: "y"}, "not both"},
		{"missing file", Config{File: filepath.Join(t.TempDir(), "missing.yml")}, "read --objstore.config-file"},
		{"empty file", Config{File: f}, "is empty"},
		{"unknown type", Config{Content: "type: NOPE\nconfig: {}\n"}, "type NOPE is not supported"},
		{"unknown field", Config{Content: "type: FILESYSTEM\nconfig:\n  directory: x\nbogus: 1\n"}, "parsing config YAML"},
		{"bad YAML", Config{Content: "type: [FILESYSTEM\n"}, "parsing config YAML"},
		{"no directory", Config{Content: "type: FILESYSTEM\nconfig: {}\n"}, "missing directory"},
		{"S3 without endpoint", Config{Content: "type: S3\nconfig:\n  bucket: b\n"}, "no s3 endpoint"},
	} {
		_, err := NewFromConfig(context.Background(), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), tc.cfg, "test")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if !(Config{}).Empty() || !(Config{Content: "\n"}).Empty() || (Config{Content: "x"}).Empty() || (Config{File: "x"}).Empty() {
		t.Error("Empty() is wrong")
	}
}

func TestConfigFromFileFlag(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(t.TempDir(), "bucket.yml")
	if err := os.WriteFile(f, []byte("type: FILESYSTEM\nconfig:\n  directory: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("test", "")
	var c Config
	RegisterFlags(app, &c)
	if _, err := app.Parse([]string{"--objstore.config-file=" + f}); err != nil {
		t.Fatal(err)
	}
	if c.File != f || c.Empty() {
		t.Fatalf("flag not bound: %+v", c)
	}
	bkt, err := NewFromConfig(context.Background(), slog.New(slog.DiscardHandler), nil, c, "test")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := bkt.Exists(context.Background(), "x"); ok || err != nil {
		t.Fatalf("exists on an empty bucket: %v %v", ok, err)
	}
	app = kingpin.New("test", "")
	c = Config{}
	RegisterFlags(app, &c)
	if _, err := app.Parse([]string{"--objstore.config=type: FILESYSTEM"}); err != nil || c.Content != "type: FILESYSTEM" {
		t.Fatalf("--objstore.config not bound: %v %+v", err, c)
	}
}

// objstore's providers log through go-kit; levels must survive the adapter.
func TestGoKitLoggerLevels(t *testing.T) {
	var logs bytes.Buffer
	l := goKitLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	_ = level.Debug(l).Log("msg", "d", "k", 1)
	_ = level.Warn(l).Log("msg", "w")
	_ = level.Error(l).Log("msg", "e", "err", io.EOF)
	_ = l.Log("msg", "plain", "odd") // a dangling key is dropped, not a panic
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{"level=DEBUG msg=d k=1", "level=WARN msg=w", "level=ERROR msg=e err=EOF", "level=INFO msg=plain"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines: %q", len(lines), logs.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want suffix %q", i, lines[i], w)
		}
	}
}
