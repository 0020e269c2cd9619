package storeapi

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

func TestLabelsAndMatchersRoundTrip(t *testing.T) {
	ls := labels.FromStrings("__name__", "up", "job", "api", "zone", "a")
	var b labels.ScratchBuilder
	if got := LabelsFromProto(&b, LabelsToProto(ls)); !labels.Equal(got, ls) {
		t.Fatalf("labels: %v", got)
	}
	// Unsorted wire labels come back sorted.
	got := LabelsFromProto(&b, []*labelpb.Label{{Name: "z", Value: "1"}, {Name: "a", Value: "2"}})
	if got.String() != `{a="2", z="1"}` {
		t.Fatalf("unsorted labels: %v", got)
	}
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, "a", "1"), labels.MustNewMatcher(labels.MatchNotEqual, "b", "2"),
		labels.MustNewMatcher(labels.MatchRegexp, "c", "x|y"), labels.MustNewMatcher(labels.MatchNotRegexp, "d", ".+"),
	}
	pms, err := MatchersToProto(ms)
	if err != nil {
		t.Fatal(err)
	}
	back, err := MatchersFromProto(pms)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		if back[i].String() != ms[i].String() {
			t.Fatalf("matcher %d: %v vs %v", i, back[i], ms[i])
		}
	}
	if _, err := MatchersFromProto([]*storepb.LabelMatcher{{Type: 9, Name: "x"}}); err == nil {
		t.Fatal("unknown matcher type accepted")
	}
	if _, err := MatchersFromProto([]*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "x", Value: "("}}); err == nil {
		t.Fatal("bad regex accepted")
	}
}

func TestExternalLabels(t *testing.T) {
	ext := labels.FromStrings("cluster", "eu", "replica", "a")
	m := func(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }
	if !MatchesExternalLabels([]*labels.Matcher{m(labels.MatchEqual, "cluster", "eu"), m(labels.MatchEqual, "job", "x")}, []labels.Labels{ext}) {
		t.Fatal("matching store excluded")
	}
	if MatchesExternalLabels([]*labels.Matcher{m(labels.MatchEqual, "cluster", "us")}, []labels.Labels{ext}) {
		t.Fatal("store of another cluster included")
	}
	if !MatchesExternalLabels([]*labels.Matcher{m(labels.MatchEqual, "cluster", "us")}, nil) {
		t.Fatal("a store without label sets may hold anything")
	}
	series, ok := SplitExternalMatchers([]*labels.Matcher{m(labels.MatchRegexp, "replica", "a|b"), m(labels.MatchEqual, "job", "x")}, ext)
	if !ok || len(series) != 1 || series[0].Name != "job" {
		t.Fatalf("split: %v %v", series, ok)
	}
	if _, ok := SplitExternalMatchers([]*labels.Matcher{m(labels.MatchEqual, "replica", "b")}, ext); ok {
		t.Fatal("replica b matcher must exclude replica a's store")
	}
	var b labels.Builder
	got := AttachExternalLabels(&b, labels.FromStrings("cluster", "series-value", "job", "x"), ext)
	if got.Get("cluster") != "eu" || got.Get("replica") != "a" || got.Get("job") != "x" {
		t.Fatalf("external labels must be attached and win: %v", got)
	}
	if got := WithoutLabels(&b, got, []string{"replica"}); got.Has("replica") || !got.Has("cluster") {
		t.Fatalf("without: %v", got)
	}
}

func TestEncodingsAndChunks(t *testing.T) {
	for _, e := range []chunkenc.Encoding{chunkenc.EncXOR, chunkenc.EncHistogram, chunkenc.EncFloatHistogram} {
		p, err := EncodingToProto(e)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := EncodingFromProto(p); err != nil || back != e {
			t.Fatalf("%v -> %v -> %v (%v)", e, p, back, err)
		}
	}
	if _, err := EncodingToProto(chunkenc.EncXOR2); err == nil {
		t.Fatal("an encoding the wire cannot carry was accepted")
	}
	var smp []chunks.Sample
	for i := int64(0); i < 300; i++ {
		smp = append(smp, sample{i * 1000, float64(i)})
	}
	cs := storage.NewSeriesToChunkEncoder(storage.NewListSeries(labels.FromStrings("a", "b"), smp))
	out, err := ChunksToProto(cs.Iterator(nil))
	if err != nil || len(out) != 3 || out[0].MinTime != 0 || out[2].MaxTime != 299_000 || out[0].Raw.Type != storepb.Chunk_XOR {
		t.Fatalf("chunks: %d %v", len(out), err)
	}
}
