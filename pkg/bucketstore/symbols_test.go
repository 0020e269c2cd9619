package bucketstore

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/strata-metrics/strata/pkg/blockgen"
)

type memIndex []byte

func (b memIndex) Len() int                    { return len(b) }
func (b memIndex) Range(start, end int) []byte { return b[start:end] }

// TestSeriesReaderEqualsIndexReader: the store's series reader, with its
// symbol cache, reads every series of a block exactly as Prometheus' index
// reader does, with the cache full or not.
func TestSeriesReaderEqualsIndexReader(t *testing.T) {
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	dir := t.TempDir()
	blocks, err := blockgen.WriteDir(context.Background(), blockgen.Config{Seed: 4, Targets: 5, MinTime: end - 2*3600_000, MaxTime: end, NativeHistograms: true}, dir)
	if err != nil || len(blocks) != 1 {
		t.Fatalf("%d blocks, %v", len(blocks), err)
	}
	raw, err := os.ReadFile(filepath.Join(blocks[0].Dir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	src := memIndex(raw)
	ir, err := index.NewReader(src, index.DecodePostingsRaw)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := openSymbols(ir, src)
	if err != nil || syms == nil {
		t.Fatalf("symbols of a version 2 index: %v, %v", syms, err)
	}
	for _, full := range []bool{false, true} {
		sr := newSeriesReader(ir, src, syms)
		if full {
			// A full cache: lookups past it go to the table.
			for o := uint32(0); len(sr.cache) < maxCachedSymbols; o++ {
				sr.cache[o+1<<30] = "never looked up"
			}
		}
		name, value := index.AllPostingsKey()
		p, err := ir.Postings(context.Background(), name, value)
		if err != nil {
			t.Fatal(err)
		}
		var (
			sbWant, sbGot     labels.ScratchBuilder
			chksWant, chksGot []chunks.Meta
			n                 int
		)
		for p.Next() {
			if err := ir.Series(p.At(), &sbWant, &chksWant); err != nil {
				t.Fatal(err)
			}
			if err := sr.series(p.At(), &sbGot, &chksGot); err != nil {
				t.Fatal(err)
			}
			want, got := sbWant.Labels(), sbGot.Labels()
			if !labels.Equal(want, got) || !slices.Equal(chksWant, chksGot) || len(chksGot) == 0 {
				t.Fatalf("series %d: %s %v, index reader %s %v", p.At(), got, chksGot, want, chksWant)
			}
			n++
		}
		if n != blockgen.SeriesPerTarget(true)*5 {
			t.Fatalf("read %d series", n)
		}
		if !full && (len(sr.cache) == 0 || len(sr.cache) > 2*n) {
			t.Fatalf("the cache holds %d symbols after %d series", len(sr.cache), n)
		}
		if full && len(sr.cache) != maxCachedSymbols {
			t.Fatalf("a full cache grew to %d", len(sr.cache))
		}
	}
	if _, err := (&seriesReader{syms: syms, cache: map[uint32]string{}}).lookup(context.Background(), 1<<31); err == nil {
		t.Fatal("an unknown symbol must be an error")
	}
}
