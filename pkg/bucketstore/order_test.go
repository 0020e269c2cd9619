package bucketstore

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
)

// uploadBlock writes the series with samples at [from, from+n) ms as one
// block of the stream with external labels ext.
func uploadBlock(t *testing.T, bkt objstore.Bucket, ext map[string]string, from, n int, lsets ...labels.Labels) {
	t.Helper()
	var series []storage.Series
	for _, l := range lsets {
		series = append(series, storage.NewListSeries(l, chunks.GenerateSamples(from, n)))
	}
	dir, err := tsdb.CreateBlock(series, t.TempDir(), 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	m, err := block.ReadMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Thanos = block.Thanos{Version: 1, Labels: ext, Source: block.SourceTest}
	if err := block.UploadWithMeta(context.Background(), logger, bkt, dir, m); err != nil {
		t.Fatal(err)
	}
}

// TestSeriesOrderWithExternalLabels: a block lists {job="y"} before
// {job="y", node="n1"}, but with the external label replica attached the
// latter sorts first. The store sends every series once, with the chunks of
// both blocks of its stream, in the order of the labels it sends, replicas
// of one series next to each other.
func TestSeriesOrderWithExternalLabels(t *testing.T) {
	bkt := newBucket(t)
	short := labels.FromStrings("__name__", "x", "job", "y")
	n1 := labels.FromStrings("__name__", "x", "job", "y", "node", "n1")
	n2 := labels.FromStrings("__name__", "x", "job", "y", "node", "n2")
	z := labels.FromStrings("__name__", "x", "job", "z")
	a := map[string]string{"replica": "a"}
	uploadBlock(t, bkt, a, 0, 100, short, n1, n2, z)
	uploadBlock(t, bkt, a, 100, 100, short, n1, z)
	uploadBlock(t, bkt, map[string]string{"replica": "b"}, 0, 100, short, n2)
	client, _, _ := serve(t, bkt, Config{IndexCacheBytes: 1 << 20, ChunkCacheBytes: 1 << 20})

	req := &storepb.SeriesRequest{MinTime: 0, MaxTime: 1000,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "x"}}}
	got, order, err := series(t, client, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{__name__="x", job="y", node="n1", replica="a"}`,
		`{__name__="x", job="y", node="n2", replica="a"}`,
		`{__name__="x", job="y", node="n2", replica="b"}`,
		`{__name__="x", job="y", replica="a"}`,
		`{__name__="x", job="y", replica="b"}`,
		`{__name__="x", job="z", replica="a"}`,
	}
	if !slices.Equal(order, want) {
		t.Fatalf("series sent in the order\n%v\nwant\n%v", order, want)
	}
	for k, n := range map[string]int{want[0]: 200, want[1]: 100, want[2]: 100, want[3]: 200, want[4]: 100, want[5]: 200} {
		if len(got[k]) != n {
			t.Errorf("%s: %d samples, want %d", k, len(got[k]), n)
		}
	}

	// Without the replica label the replicas of one series come next to
	// each other, a before b.
	req.WithoutReplicaLabels = []string{"replica"}
	_, order, err = series(t, client, req)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		`{__name__="x", job="y"}`, `{__name__="x", job="y"}`,
		`{__name__="x", job="y", node="n1"}`,
		`{__name__="x", job="y", node="n2"}`, `{__name__="x", job="y", node="n2"}`,
		`{__name__="x", job="z"}`,
	}
	if !slices.Equal(order, want) {
		t.Fatalf("without replica labels, series sent in the order\n%v\nwant\n%v", order, want)
	}
}
