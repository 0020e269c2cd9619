package bucketstore

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// TestServeDownsampled: two of three raw 2h blocks also exist at 5m. With
// max_resolution_window=0 the store sends raw chunks only; with 5m it sends
// the requested aggregates for the downsampled time and raw chunks for the
// rest, and every raw sample is accounted for exactly once by the counts.
func TestServeDownsampled(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	end := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 9, Targets: 1, MinTime: end - 6*3600_000, MaxTime: end, Replicas: 1, ReplicaValues: []string{"a"},
		ExternalLabels: map[string]string{"cluster": "c"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	l, err := block.NewLister(bkt, 4).List(ctx)
	if err != nil || len(l.Metas) != 3 {
		t.Fatalf("%d blocks, err %v", len(l.Metas), err)
	}
	dir := t.TempDir()
	var downsampledUntil int64
	for _, m := range l.Metas {
		if m.MinTime >= end-2*3600_000 {
			continue // the newest block stays raw only
		}
		if _, err := block.Download(ctx, logger, bkt, m.ULID, dir); err != nil {
			t.Fatal(err)
		}
		nm, err := downsample.Block(ctx, logger, m, filepath.Join(dir, m.ULID.String()), filepath.Join(dir, "out"), block.Resolution5m)
		if err != nil {
			t.Fatal(err)
		}
		if err := block.UploadWithMeta(ctx, logger, bkt, filepath.Join(dir, "out", nm.ULID.String()), nm); err != nil {
			t.Fatal(err)
		}
		downsampledUntil = max(downsampledUntil, nm.MaxTime)
	}
	client, _, _ := serve(t, bkt, Config{MaxTime: end * 2})
	all := []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}}
	want := expected(t, cfg, cfg.MinTime, cfg.MaxTime, []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")})

	// Raw: exactly the raw samples, no aggregates.
	got, _, err := series(t, client, &storepb.SeriesRequest{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime, Matchers: all, Aggregates: []storepb.Aggr{storepb.Aggr_RAW}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("raw: %d series, want %d", len(got), len(want))
	}
	for k, ss := range want {
		if len(got[k]) != len(ss) {
			t.Fatalf("raw %s: %d samples, want %d", k, len(got[k]), len(ss))
		}
	}

	// 5m with count: aggregates up to downsampledUntil, raw after.
	stream, err := client.Series(ctx, &storepb.SeriesRequest{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime, Matchers: all,
		MaxResolutionWindow: block.Resolution5m, Aggregates: []storepb.Aggr{storepb.Aggr_COUNT}})
	if err != nil {
		t.Fatal(err)
	}
	var sb labels.ScratchBuilder
	nseries := 0
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
		nseries++
		key := storeapi.LabelsFromProto(&sb, s.Labels).String()
		var n float64
		for _, c := range s.Chunks {
			switch {
			case c.Raw != nil:
				if c.MinTime < downsampledUntil || c.Count != nil {
					t.Fatalf("%s: raw chunk [%d,%d] where 5m data exist (until %d)", key, c.MinTime, c.MaxTime, downsampledUntil)
				}
				chk, _ := chunkenc.FromData(chunkenc.EncXOR, c.Raw.Data)
				n += float64(chk.NumSamples())
			case c.Count != nil:
				if c.Sum != nil || c.Min != nil || c.Max != nil || c.Counter != nil || c.MaxTime >= downsampledUntil {
					t.Fatalf("%s: aggregate chunk %v: only count was asked for, before %d", key, c, downsampledUntil)
				}
				chk, _ := chunkenc.FromData(chunkenc.EncXOR, c.Count.Data)
				it := chk.Iterator(nil)
				for it.Next() == chunkenc.ValFloat {
					_, v := it.At()
					n += v
				}
			default:
				t.Fatalf("%s: empty chunk %v", key, c)
			}
		}
		if int(n) != len(want[key]) {
			t.Fatalf("%s: counts and raw samples add up to %v, want %d", key, n, len(want[key]))
		}
	}
	if nseries != len(want) {
		t.Fatalf("5m: %d series, want %d", nseries, len(want))
	}

	// Raw only from downsampled blocks is an error that says what to ask.
	_, _, err = series(t, client, &storepb.SeriesRequest{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime, Matchers: all,
		MaxResolutionWindow: block.Resolution1h, Aggregates: []storepb.Aggr{storepb.Aggr_RAW}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("raw aggregate from a 5m block: %v", err)
	}
}

func TestBlocksFor(t *testing.T) {
	const day = 24 * 3600_000
	mk := func(name string, res, mint, maxt int64) *bucketBlock {
		m := &block.Meta{}
		m.MinTime, m.MaxTime = mint*day, maxt*day
		m.Thanos.Downsample.Resolution = res
		m.Thanos.Labels = map[string]string{"cluster": "c", "name": name}
		b := &bucketBlock{meta: m}
		b.ext = labels.FromStrings("cluster", "c")
		return b
	}
	var blocks []*bucketBlock
	for d := int64(0); d < 14; d += 2 {
		blocks = append(blocks, mk(fmt.Sprintf("raw%d", d), 0, d, d+2))
	}
	blocks = append(blocks, mk("1h", block.Resolution1h, 0, 10), mk("5m", block.Resolution5m, 10, 12))
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].meta.MinTime < blocks[j].meta.MinTime })
	names := func(bs []*bucketBlock) string {
		var s []string
		for _, b := range bs {
			s = append(s, b.meta.Thanos.Labels["name"])
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		maxRes     int64
		mint, maxt int64
		want       string
	}{
		{0, 0, 14*day - 1, "raw0 raw2 raw4 raw6 raw8 raw10 raw12"},
		{block.Resolution5m, 0, 14*day - 1, "raw0 raw2 raw4 raw6 raw8 5m raw12"},
		{block.Resolution1h, 0, 14*day - 1, "1h 5m raw12"},
		{block.Resolution1h, 11 * day, 13 * day, "5m raw12"},
		{block.Resolution1h, 3 * day, 4 * day, "1h"},
	} {
		if got := names(blocksFor(blocks, tc.mint, tc.maxt, tc.maxRes)); got != tc.want {
			t.Errorf("blocksFor(%d, %d, %d) = %q, want %q", tc.mint, tc.maxt, tc.maxRes, got, tc.want)
		}
	}

	// Blocks of one resolution that overlap (a compaction's result and
	// its sources, an out-of-order block) are all served, whatever order
	// they come in; the finer resolutions fill only what none covers.
	over := []*bucketBlock{mk("big", 0, 0, 8), mk("oo", 0, 2, 4), mk("tail", 0, 6, 10), mk("1h", block.Resolution1h, 0, 12)}
	for range 10 {
		rand.Shuffle(len(over), func(i, j int) { over[i], over[j] = over[j], over[i] })
		if got, want := names(blocksFor(over, 0, 12*day-1, 0)), "big oo tail"; got != want {
			t.Fatalf("raw, overlapping: %q, want %q", got, want)
		}
		if got, want := names(blocksFor(over, 0, 12*day-1, block.Resolution1h)), "1h"; got != want {
			t.Fatalf("1h over overlapping raw blocks: %q, want %q", got, want)
		}
	}
	over = over[:0]
	over = append(over, mk("5m", block.Resolution5m, 0, 8), mk("5m-oo", block.Resolution5m, 2, 4), mk("raw", 0, 0, 12))
	if got, want := names(blocksFor(over, 0, 12*day-1, block.Resolution5m)), "5m 5m-oo raw"; got != want {
		t.Fatalf("5m, overlapping, raw after: %q, want %q", got, want)
	}
}
