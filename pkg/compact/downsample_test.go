package compact

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/downsample"
)

// countAggregated sums the count aggregate of every series of a
// downsampled block: the number of raw samples it stands for.
func countAggregated(t *testing.T, dir string) map[string]float64 {
	t.Helper()
	b, err := tsdb.OpenBlock(nil, dir, downsample.NewPool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ir, _ := b.Index()
	cr, _ := b.Chunks()
	defer func() { ir.Close(); cr.Close(); b.Close() }()
	k, v := index.AllPostingsKey()
	p, _ := ir.Postings(context.Background(), k, v)
	out := map[string]float64{}
	var sb labels.ScratchBuilder
	var chks []chunks.Meta
	for p.Next() {
		if err := ir.Series(p.At(), &sb, &chks); err != nil {
			t.Fatal(err)
		}
		for _, c := range chks {
			chk, _, err := cr.ChunkOrIterable(c)
			if err != nil {
				t.Fatal(err)
			}
			cnt, err := chk.(*downsample.AggrChunk).Get(downsample.AggrCount)
			if err != nil {
				t.Fatal(err)
			}
			it := cnt.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				_, n := it.At()
				out[sb.Labels().String()] += n
			}
		}
	}
	return out
}

// TestDownsampleHAPair: after one run over 3 days of an HA pair, the 2d
// deduplicated block has a 5m block over the same range whose counts add
// up to exactly the raw samples of every series; a second run writes no
// more blocks.
func TestDownsampleHAPair(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 7, Targets: 1, MinTime: end - 3*24*3600_000, MaxTime: end, Replicas: 2,
		ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	c, _ := newCompactor(t, bkt, Config{ReplicaLabels: []string{"replica"}, Downsampling: true})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var raw, ds []*block.Meta
	for _, b := range live(t, bkt) {
		switch b.Thanos.Downsample.Resolution {
		case block.ResolutionRaw:
			raw = append(raw, b)
		case block.Resolution5m:
			ds = append(ds, b)
		default:
			t.Fatalf("block %s at resolution %d", b.ULID, b.Thanos.Downsample.Resolution)
		}
	}
	var big *block.Meta
	for _, b := range raw {
		if b.MaxTime-b.MinTime >= downsample.RawTo5mRange {
			if big != nil {
				t.Fatalf("two raw blocks of 40h or more: %s %s", big.ULID, b.ULID)
			}
			big = b
		}
	}
	if big == nil || len(ds) != 1 {
		t.Fatalf("want one 2d raw block and one 5m block, got raw %d (2d: %v), 5m %d", len(raw), big != nil, len(ds))
	}
	d := ds[0]
	if d.MinTime != big.MinTime || d.MaxTime != big.MaxTime || !subset(big.Compaction.Sources, d.Compaction.Sources) ||
		d.Thanos.Labels["replica"] != "" || d.Thanos.Labels["cluster"] != "c" || d.Thanos.Source != block.SourceCompactor {
		t.Fatalf("5m block %+v does not describe raw block %+v", d, big)
	}
	dir := t.TempDir()
	if _, err := block.Download(ctx, logger, bkt, d.ULID, dir); err != nil {
		t.Fatal(err)
	}
	counts := countAggregated(t, filepath.Join(dir, d.ULID.String()))
	all := labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")
	want := readSet(t, blockgen.SeriesSet(cfg, 0, big.MinTime, big.MaxTime-1, all))
	if len(counts) != len(want) {
		t.Fatalf("5m block has %d series, raw %d", len(counts), len(want))
	}
	for k, pts := range want {
		if counts[k] != float64(len(pts)) {
			t.Fatalf("%s: 5m counts add up to %v, raw has %d samples", k, counts[k], len(pts))
		}
	}
	if n := testutil.ToFloat64(c.m.downsamples.WithLabelValues("5m")); n != 1 {
		t.Fatalf("downsampled 5m blocks metric = %v", n)
	}

	before := len(live(t, bkt))
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(live(t, bkt)); after != before {
		t.Fatalf("second run: %d live blocks, was %d", after, before)
	}
}

// TestDownsampleTo1h: one raw block of 11 days becomes a 5m and then a 1h
// block in one run; a no-downsample mark keeps another block raw only.
func TestDownsampleTo1hAndNoDownsampleMark(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	writeBlocks(t, bkt, map[string]string{"a": "1"}, base, [2]int64{0, 11 * 24})
	marked := writeBlocks(t, bkt, map[string]string{"a": "2"}, base, [2]int64{0, 3 * 24})[0]
	if _, err := block.MarkForNoDownsample(ctx, logger, bkt, marked, block.NoDownsampleReason("manual"), "test"); err != nil {
		t.Fatal(err)
	}
	c, _ := newCompactor(t, bkt, Config{Downsampling: true})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	res := map[string][]int64{}
	for _, b := range live(t, bkt) {
		res[b.Thanos.Labels["a"]] = append(res[b.Thanos.Labels["a"]], b.Thanos.Downsample.Resolution)
	}
	if got := res["1"]; len(got) != 3 {
		t.Fatalf("stream a=1: resolutions %v, want raw, 5m and 1h", got)
	}
	if got := res["2"]; len(got) != 1 || got[0] != block.ResolutionRaw {
		t.Fatalf("stream a=2 (no-downsample mark): resolutions %v, want raw only", got)
	}
}

func TestRetentionGuards(t *testing.T) {
	for _, tc := range []struct {
		ret  map[int64]time.Duration
		ds   bool
		want string
	}{
		{map[int64]time.Duration{block.ResolutionRaw: 24 * time.Hour}, true, "retention.resolution-raw"},
		{map[int64]time.Duration{block.Resolution5m: 7 * 24 * time.Hour}, true, "retention.resolution-5m"},
		{map[int64]time.Duration{block.ResolutionRaw: 24 * time.Hour}, false, ""},
		{map[int64]time.Duration{block.ResolutionRaw: 0, block.Resolution5m: 10 * 24 * time.Hour}, true, ""},
	} {
		err := CheckRetention(tc.ret, tc.ds)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckRetention(%v, %v) = %v, want error naming %q", tc.ret, tc.ds, err, tc.want)
		}
	}
}
