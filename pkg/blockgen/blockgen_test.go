package blockgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
)

func testConfig() Config {
	end := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	return Config{
		Seed:             42,
		Targets:          3,
		MinTime:          end - 7*time.Hour.Milliseconds(), // 3 full and one partial aligned block
		MaxTime:          end,
		Replicas:         2,
		NativeHistograms: true,
		ExternalLabels:   map[string]string{"cluster": "test"},
		// Replica b missed 20 minutes of scrapes.
		Outages: []Outage{{Replica: 1, Start: end - 4*time.Hour.Milliseconds(), End: end - 4*time.Hour.Milliseconds() + 20*time.Minute.Milliseconds()}},
	}
}

type point struct {
	t int64
	v float64
}

// readBlock returns every series of a block with its float samples, and
// checks native histogram samples are valid.
func readBlock(t *testing.T, dir string) map[string][]point {
	t.Helper()
	b, err := tsdb.OpenBlock(nil, dir, nil, nil)
	if err != nil {
		t.Fatalf("open block %s: %v", dir, err)
	}
	defer b.Close()
	q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string][]point{}
	maxSamples := 0
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		it = s.Iterator(it)
		var (
			pts   []point
			prevH *histogram.Histogram
		)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				pts = append(pts, point{ts, v})
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				if err := h.Validate(); err != nil {
					t.Fatalf("%s at %d: invalid histogram: %v", s.Labels(), ts, err)
				}
				// Buckets are counters: between real resets (the count
				// drops to a fraction) none of them may decrease.
				if prevH != nil && h.Count >= prevH.Count/2 && h.ToFloat(nil).DetectReset(prevH.ToFloat(nil)) {
					t.Fatalf("%s at %d: a bucket decreased without a reset: %v -> %v", s.Labels(), ts, prevH, h)
				}
				prevH = h
				pts = append(pts, point{ts, float64(h.Count)})
			default:
				t.Fatalf("unexpected value type %v", vt)
			}
			if pts[len(pts)-1].t < b.Meta().MinTime || pts[len(pts)-1].t >= b.Meta().MaxTime {
				t.Fatalf("sample at %d outside block [%d, %d)", pts[len(pts)-1].t, b.Meta().MinTime, b.Meta().MaxTime)
			}
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		out[s.Labels().String()] = pts
		maxSamples = max(maxSamples, len(pts))
	}
	if ss.Err() != nil {
		t.Fatal(ss.Err())
	}
	// Chunks are cut every 120 samples, and at the rare counter reset of a
	// native histogram; anything more means spurious cuts.
	m := b.Meta()
	if limit := m.Stats.NumSeries * uint64((maxSamples+119)/120+1); m.Stats.NumChunks > limit {
		t.Fatalf("block %s: %d chunks for %d series of at most %d samples", m.ULID, m.Stats.NumChunks, m.Stats.NumSeries, maxSamples)
	}
	return out
}

func TestBlocksAreRealisticAndReadable(t *testing.T) {
	cfg := testConfig()
	dir := t.TempDir()
	blocks, err := WriteDir(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 8 {
		t.Fatalf("want 4 blocks per replica, got %d", len(blocks))
	}
	twoHours := (2 * time.Hour).Milliseconds()
	for _, bi := range blocks {
		if bi.Meta.MaxTime%twoHours != 0 || (bi.Meta.MinTime%twoHours != 0 && bi.Meta.MinTime != cfg.MinTime) {
			t.Errorf("block %d-%d not aligned to 2h", bi.Meta.MinTime, bi.Meta.MaxTime)
		}
		if bi.Meta.Thanos.Labels["replica"] == "" || bi.Meta.Thanos.Labels["cluster"] != "test" {
			t.Errorf("external labels: %v", bi.Meta.Thanos.Labels)
		}
	}

	series := map[string][]point{}
	for _, bi := range blocks[:4] { // replica a
		for k, pts := range readBlock(t, bi.Dir) {
			series[k] = append(series[k], pts...)
		}
	}
	if want := 3 * SeriesPerTarget(true); len(series) != want {
		t.Fatalf("got %d series, want %d", len(series), want)
	}
	samples := 0
	for k, pts := range series {
		samples += len(pts)
		// 7h at 15s is 1680 scrapes.
		if len(pts) < 1675 || len(pts) > 1681 {
			t.Errorf("%s: %d samples over 7h at 15s", k, len(pts))
		}
		for i := 1; i < len(pts); i++ {
			if d := pts[i].t - pts[i-1].t; d < 15000-10 || d > 15000+10 {
				t.Fatalf("%s: scrape gap %dms", k, d)
			}
		}
		isCounter := strings.Contains(k, "_total") || strings.Contains(k, "_bucket") || strings.Contains(k, "_count") || strings.Contains(k, "native")
		if isCounter {
			for i := 1; i < len(pts); i++ {
				if pts[i].v < pts[i-1].v && pts[i].v > pts[i-1].v/2 {
					t.Fatalf("%s: counter went down without a reset: %v -> %v", k, pts[i-1].v, pts[i].v)
				}
			}
			if pts[len(pts)-1].v == pts[0].v {
				t.Errorf("%s: counter does not move", k)
			}
		}
	}
	// Classic histogram: buckets cumulative, +Inf equals _count.
	for k, inf := range series {
		if !strings.Contains(k, `le="+Inf"`) {
			continue
		}
		lower := series[strings.Replace(k, `le="+Inf"`, `le="0.5"`, 1)]
		count := series[strings.Replace(strings.Replace(k, `, le="+Inf"`, "", 1), "_bucket", "_count", 1)]
		if len(count) != len(inf) || len(lower) != len(inf) {
			t.Fatalf("histogram series of %s misaligned: %d %d %d", k, len(lower), len(inf), len(count))
		}
		for i := range inf {
			if inf[i].v != count[i].v || lower[i].v > inf[i].v {
				t.Fatalf("%s: bucket/count inconsistent at %d: le=0.5 %v, +Inf %v, count %v", k, i, lower[i].v, inf[i].v, count[i].v)
			}
		}
		// Between scrapes a bucket grows no more than the buckets above it
		// (each request counts in every bucket it fits), or rate()s of the
		// buckets would not be monotonic in le.
		var buckets [][]point
		for _, le := range bucketBounds {
			buckets = append(buckets, series[strings.Replace(k, `le="+Inf"`, fmt.Sprintf("le=%q", formatLe(le)), 1)])
		}
		buckets = append(buckets, inf)
		for i := 1; i < len(inf); i++ {
			if inf[i].v < inf[i-1].v {
				continue // a reset
			}
			for j := 1; j < len(buckets); j++ {
				lo, hi := buckets[j-1][i].v-buckets[j-1][i-1].v, buckets[j][i].v-buckets[j][i-1].v
				if lo > hi || lo < 0 {
					t.Fatalf("%s at %d: bucket %d grew by %v, the next one up by %v", k, inf[i].t, j-1, lo, hi)
				}
			}
		}
	}
	if samples == 0 {
		t.Fatal("no samples")
	}
}

func TestReplicasDifferSlightly(t *testing.T) {
	cfg := testConfig()
	cfg.MinTime = cfg.MaxTime - time.Hour.Milliseconds()
	blocks, err := WriteDir(context.Background(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := readBlock(t, blocks[0].Dir), readBlock(t, blocks[1].Dir)
	differentT := 0
	for k, pa := range a {
		pb := b[k]
		if len(pb) == 0 {
			t.Fatalf("%s missing in replica b", k)
		}
		n := min(len(pa), len(pb))
		for i := 0; i < n; i++ {
			if d := pa[i].t - pb[i].t; d > 10 || d < -10 {
				t.Fatalf("%s: replicas scraped %dms apart", k, d)
			}
			if pa[i].t != pb[i].t {
				differentT++
			}
		}
		if strings.Contains(k, "node_load1") {
			if d := math.Abs(pa[0].v - pb[0].v); d > 0.5 {
				t.Errorf("%s: replicas differ too much: %v vs %v", k, pa[0].v, pb[0].v)
			}
		}
	}
	if differentT == 0 {
		t.Fatal("replicas have identical timestamps; real HA pairs never do")
	}
}

func TestDeterministic(t *testing.T) {
	cfg := testConfig()
	cfg.Replicas, cfg.Outages = 1, nil
	d1, d2 := t.TempDir(), t.TempDir()
	if _, err := WriteDir(context.Background(), cfg, d1); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDir(context.Background(), cfg, d2); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(d1, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d1, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(d2, rel))
		if err != nil {
			t.Errorf("%s missing in second run: %v", rel, err)
			return nil
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs with the same seed", rel)
		}
		files++
		return nil
	})
	if err != nil || files < 12 {
		t.Fatalf("compared %d files: %v", files, err)
	}
	cfg.Seed++
	d3 := t.TempDir()
	blocks, err := WriteDir(context.Background(), cfg, d3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d1, blocks[0].Meta.ULID.String())); err == nil {
		t.Fatal("another seed gave the same block ULID")
	}
}

func TestWriteBucket(t *testing.T) {
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bkt := objstore.WrapWithMetrics(fs, nil, "test")
	cfg := testConfig()
	blocks, err := WriteBucket(context.Background(), slog.New(slog.DiscardHandler), cfg, bkt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := block.NewLister(bkt, 4).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Metas) != len(blocks) || len(res.Partial)+len(res.Corrupt) != 0 {
		t.Fatalf("bucket holds %d complete, %d partial, %d corrupt; wrote %d", len(res.Metas), len(res.Partial), len(res.Corrupt), len(blocks))
	}
	for _, bi := range blocks {
		m := res.Metas[bi.Meta.ULID]
		if m == nil || m.Thanos.Labels["replica"] != bi.Meta.Thanos.Labels["replica"] || m.Thanos.Source != SourceBlockgen || len(m.Thanos.Files) != 3 {
			t.Fatalf("block %s meta in bucket: %+v", bi.Meta.ULID, m)
		}
		if m.Thanos.Labels["cluster"] != "test" || m.Thanos.Downsample.Resolution != 0 || m.Compaction.Level != 1 {
			t.Fatalf("block %s thanos section: %+v", bi.Meta.ULID, m.Thanos)
		}
	}

	// The bucket holds the very bytes WriteDir writes.
	local, err := WriteDir(context.Background(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, bi := range local {
		for _, rel := range []string{"index", "chunks/000001"} {
			want, err := os.ReadFile(filepath.Join(bi.Dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			r, err := bkt.Get(context.Background(), bi.Meta.ULID.String()+"/"+rel)
			if err != nil {
				t.Fatalf("block %s in bucket: %v", bi.Meta.ULID, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("block %s %s: bucket copy differs from WriteDir's (err %v)", bi.Meta.ULID, rel, err)
			}
		}
	}
}

// TestCountersResetTogether: a restart resets every counter of a target's
// job at the same scrape, to zero, as a real process restart does.
func TestCountersResetTogether(t *testing.T) {
	cfg := testConfig()
	cfg.MinTime = cfg.MaxTime - 4*24*time.Hour.Milliseconds()
	ss := SeriesSet(cfg, 0, cfg.MinTime, cfg.MaxTime)
	resets := map[string][]int64{} // instance -> reset times of its first counter
	counters := 0
	for ss.Next() {
		s := ss.At()
		name := s.Labels().Get("__name__")
		if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_bucket") {
			continue
		}
		counters++
		var got []int64
		prev := math.Inf(-1)
		it := s.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			if v < prev {
				if v > prev/100 {
					t.Fatalf("%s at %d: reset to %v from %v, not to about zero", s.Labels(), ts, v, prev)
				}
				got = append(got, ts)
			}
			prev = v
		}
		inst := s.Labels().Get("instance")
		want, seen := resets[inst]
		if !seen {
			resets[inst] = got
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s resets at %v, other counters of %s at %v", s.Labels(), got, inst, want)
		}
	}
	total := 0
	for _, r := range resets {
		total += len(r)
	}
	if counters < 100 || total == 0 || len(resets) != 2*cfg.Targets {
		t.Fatalf("%d counters of %d instances, %d resets in 4 days", counters, len(resets), total)
	}
}

// TestCancelLeavesNoBlocks: a cancelled run returns the context's error and
// leaves no block directories, complete or half-written, behind.
func TestCancelLeavesNoBlocks(t *testing.T) {
	cfg := testConfig()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := WriteDir(ctx, cfg, dir); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	for _, r := range []string{"a", "b"} {
		entries, err := os.ReadDir(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("replica %s dir holds %d entries after cancel, e.g. %s", r, len(entries), entries[0].Name())
		}
	}
}

// TestShortRangeWritesNoEmptyBlocks: a range too short for every target to
// be scraped in each block writes only blocks that hold samples.
func TestShortRangeWritesNoEmptyBlocks(t *testing.T) {
	cfg := testConfig()
	cfg.Targets = 1
	cfg.Replicas, cfg.Outages = 1, nil
	// 2s on each side of a block boundary: at most one of the two blocks
	// can catch the target's scrape.
	boundary := cfg.MaxTime
	cfg.MinTime, cfg.MaxTime = boundary-2000, boundary+2000
	dir := t.TempDir()
	blocks, err := WriteDir(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(blocks) || len(blocks) > 1 {
		t.Fatalf("%d blocks reported, %d directories written", len(blocks), len(entries))
	}
	for _, b := range blocks {
		if b.Meta.Stats.NumSamples == 0 {
			t.Fatalf("empty block %s written", b.Meta.ULID)
		}
	}
}

// TestOutageLeavesGapInOneReplica: during an outage one replica has no
// samples and the other has them all; afterwards the counters carry on
// where they would have been.
func TestOutageLeavesGapInOneReplica(t *testing.T) {
	cfg := testConfig()
	o := cfg.Outages[0]
	inc := func(replica int, mint, maxt int64) (samples int, gap int64, increase float64) {
		ss := SeriesSet(cfg, replica, mint, maxt, labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total"),
			labels.MustNewMatcher(labels.MatchEqual, "instance", "host-00000:8080"), labels.MustNewMatcher(labels.MatchEqual, "code", "200"))
		for ss.Next() {
			it := ss.At().Iterator(nil)
			var prevT int64
			var first, last float64
			for n := 0; it.Next() == chunkenc.ValFloat; n++ {
				ts, v := it.At()
				if n == 0 {
					first = v
				} else {
					gap = max(gap, ts-prevT)
				}
				prevT, last = ts, v
				samples++
			}
			increase += last - first
		}
		return samples, gap, increase
	}
	const hour = int64(3600_000)
	aN, aGap, aInc := inc(0, o.Start-hour, o.End+hour)
	bN, bGap, bInc := inc(1, o.Start-hour, o.End+hour)
	if aGap > 15_100 || bGap < o.End-o.Start {
		t.Fatalf("longest gaps: replica a %dms, replica b %dms; the outage lasts %dms", aGap, bGap, o.End-o.Start)
	}
	if missing := aN - bN; missing < 4*78 || missing > 4*82 { // 4 series x 80 scrapes in 20m
		t.Fatalf("replica b has %d fewer samples than a, want about %d", missing, 4*80)
	}
	if math.Abs(aInc-bInc) > 0.01*aInc {
		t.Fatalf("counter increase over the span: a %v, b %v; counters must keep counting through an outage", aInc, bInc)
	}
	if n, _, _ := inc(1, o.Start, o.End-1); n != 0 {
		t.Fatalf("replica b has %d samples inside its outage", n)
	}
}
