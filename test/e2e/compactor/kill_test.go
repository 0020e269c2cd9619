// Package compactor_test kills the compactor process at random points and
// checks that a final clean run leaves complete, non-overlapping data; and
// runs it side by side with a real Thanos.
package compactor_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/test/e2e"
)

func TestKilledCompactorLosesNothing(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	fs, err := filesystem.NewBucket(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	bkt := objstore.WrapWithMetrics(fs, nil, "test")
	end := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	cfg := blockgen.Config{Seed: 17, Targets: 20, MinTime: end - 72*3600_000, MaxTime: end, Replicas: 2, ExternalLabels: map[string]string{"cluster": "k"}}
	if _, err := blockgen.WriteBucket(ctx, logger, cfg, bkt); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "objstore.yml")
	if err := os.WriteFile(conf, []byte("type: FILESYSTEM\nconfig:\n  directory: "+filepath.Join(dir, "bucket")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--objstore.config-file=" + conf, "--data-dir=" + filepath.Join(dir, "work"), "--consistency-delay=0s",
		"--delete-delay=0s", "--deduplication.replica-label=replica"}

	rng := rand.New(rand.NewPCG(1, 2))
	killed := 0
	for i := 0; i < 6; i++ {
		c := e2e.StartStrataNoWait(t, "compactor", false, "", args...)
		// Kill it somewhere in its run: a fault injected at a random time.
		select {
		case <-time.After(time.Duration(50+rng.IntN(1500)) * time.Millisecond):
		case <-exited(c):
		}
		if !c.Exited() {
			killed++
		}
		c.Kill()
	}
	if killed == 0 {
		t.Fatal("no run was killed mid-way: the kill points test nothing")
	}
	final := e2e.StartStrataNoWait(t, "compactor", false, "", args...)
	e2e.Eventually(t, 3*time.Minute, 200*time.Millisecond, func() error {
		if !final.Exited() {
			return fmt.Errorf("final compactor run still going")
		}
		return nil
	})
	if !strings.Contains(final.Logs(), "compaction done") {
		t.Fatalf("the final run did not finish cleanly:\n%s", final.Logs())
	}

	l, err := block.NewLister(bkt, 8).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Raw blocks tile the range once; downsampled ones (killed runs may have
	// left partial uploads, never a second complete one) are one per
	// source range.
	var live []*block.Meta
	fiveMin := map[int64]int{}
	for id, m := range l.Metas {
		if l.DeletionMarks[id] != nil {
			continue
		}
		if m.Thanos.Downsample.Resolution != block.ResolutionRaw {
			fiveMin[m.MinTime]++
			continue
		}
		live = append(live, m)
	}
	if len(fiveMin) == 0 {
		t.Fatalf("no downsampled block after the final run:\n%s", final.Logs())
	}
	for mint, n := range fiveMin {
		if n != 1 {
			t.Fatalf("%d downsampled blocks start at %d", n, mint)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].MinTime < live[j].MinTime })
	next := cfg.MinTime
	for _, m := range live {
		if m.MinTime != next || m.Thanos.Labels["replica"] != "" {
			t.Fatalf("live blocks do not tile the range once, deduplicated: block %s [%d,%d) %v after %d\n%s", m.ULID, m.MinTime, m.MaxTime, m.Thanos.Labels, next, final.Logs())
		}
		next = m.MaxTime
	}
	if next != cfg.MaxTime {
		t.Fatalf("live blocks end at %d, data at %d", next, cfg.MaxTime)
	}

	// Every sample of replica a is there exactly once.
	all := labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")
	want := read(t, blockgen.SeriesSet(cfg, 0, math.MinInt64, math.MaxInt64, all))
	got := map[string]int{}
	dl := filepath.Join(dir, "dl")
	for _, m := range live {
		if _, err := block.Download(ctx, logger, bkt, m.ULID, dl); err != nil {
			t.Fatal(err)
		}
		b, err := tsdb.OpenBlock(nil, filepath.Join(dl, m.ULID.String()), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range read(t, q.Select(ctx, true, nil, all)) {
			got[k] += n
		}
		q.Close()
		b.Close()
	}
	if len(got) != len(want) {
		t.Fatalf("%d series after the kills, %d generated", len(got), len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("series %s: %d samples, generated %d", k, got[k], n)
		}
	}
}

func exited(p *e2e.Strata) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for i := 0; i < 3000 && !p.Exited(); i++ {
			time.Sleep(time.Millisecond) // bounded poll of the process state
		}
		close(ch)
	}()
	return ch
}

func read(t *testing.T, ss storage.SeriesSet) map[string]int {
	t.Helper()
	out := map[string]int{}
	for ss.Next() {
		it := ss.At().Iterator(nil)
		n := 0
		for it.Next() != chunkenc.ValNone {
			n++
		}
		out[ss.At().Labels().String()] = n
	}
	if ss.Err() != nil {
		t.Fatal(ss.Err())
	}
	return out
}
