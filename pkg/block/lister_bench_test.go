package block

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/oklog/ulid/v2"
)

// BenchmarkListerList lists a FILESYSTEM bucket of 500 blocks: "cold" reads
// every meta.json, "cached" is a resync of an unchanged bucket. The numbers
// are what the store gateway and compactor pay per sync, before network.
func BenchmarkListerList(b *testing.B) {
	const blocks = 500
	ctx := context.Background()
	root := b.TempDir()
	for i := range blocks {
		id := ulid.MustNew(uint64(i+1), nil)
		dir := filepath.Join(root, id.String())
		if err := os.MkdirAll(filepath.Join(dir, ChunksDirname), 0o755); err != nil {
			b.Fatal(err)
		}
		for _, f := range []string{"chunks/000001", "index"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		m := &Meta{}
		m.ULID, m.Version, m.MinTime, m.MaxTime = id, 1, int64(i)*7200000, int64(i+1)*7200000
		m.Thanos.Labels = map[string]string{"cluster": "eu", "replica": fmt.Sprint(i % 2)}
		m.Thanos.Files = []File{{RelPath: "chunks/000001", SizeBytes: 1}, {RelPath: "index", SizeBytes: 1}, {RelPath: MetaFilename}}
		if err := m.WriteMeta(dir); err != nil {
			b.Fatal(err)
		}
	}
	bkt := newBucketAt(b, root)
	for _, tc := range []struct {
		name   string
		cached bool
	}{{"cold", false}, {"cached", true}} {
		b.Run(tc.name, func(b *testing.B) {
			l := NewLister(bkt, 8)
			b.ReportAllocs()
			for b.Loop() {
				if !tc.cached {
					l = NewLister(bkt, 8)
				}
				res, err := l.List(ctx)
				if err != nil || len(res.Metas) != blocks {
					b.Fatalf("%v: %d metas", err, len(res.Metas))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*blocks), "ns/block")
		})
	}
}
