package sidecar

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

type parsedSeries struct {
	labels labels.Labels
	chunks []storeapi.RawChunk
}

func parseAll(t *testing.T, frame []byte, skipChunks bool) ([]parsedSeries, error) {
	t.Helper()
	var (
		p   frameParser
		out []parsedSeries
	)
	err := p.each(frame, skipChunks, func(ls []labels.Label, chunks []storeapi.RawChunk) error {
		s := parsedSeries{labels: labels.New(ls...)}
		for _, c := range chunks {
			c.Data = append([]byte(nil), c.Data...)
			s.chunks = append(s.chunks, c)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// TestFrameParser: the wire walk reads what the gogo types write, including
// labels out of order, empty values and every chunk encoding; broken frames
// are errors, never a silent short answer.
func TestFrameParser(t *testing.T) {
	resp := &prompb.ChunkedReadResponse{QueryIndex: 3, ChunkedSeries: []*prompb.ChunkedSeries{
		{
			Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "node"}, {Name: "replica", Value: "a"}},
			Chunks: []prompb.Chunk{
				{MinTimeMs: -5, MaxTimeMs: 1 << 40, Type: prompb.Chunk_XOR, Data: []byte{1, 2, 3}},
				{MinTimeMs: 10, MaxTimeMs: 20, Type: prompb.Chunk_HISTOGRAM, Data: []byte{4}},
				{MinTimeMs: 30, MaxTimeMs: 40, Type: prompb.Chunk_FLOAT_HISTOGRAM, Data: []byte{5, 6}},
			},
		},
		{
			// Out of order and an empty value: sorted on the way out.
			Labels: []prompb.Label{{Name: "zone", Value: ""}, {Name: "__name__", Value: "down"}},
			Chunks: []prompb.Chunk{{MinTimeMs: 0, MaxTimeMs: 1, Type: prompb.Chunk_XOR, Data: []byte{7}}},
		},
	}}
	frame, err := resp.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseAll(t, frame, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []parsedSeries{
		{labels.FromStrings("__name__", "up", "job", "node", "replica", "a"), []storeapi.RawChunk{
			{MinTime: -5, MaxTime: 1 << 40, Type: storepb.Chunk_XOR, Data: []byte{1, 2, 3}},
			{MinTime: 10, MaxTime: 20, Type: storepb.Chunk_HISTOGRAM, Data: []byte{4}},
			{MinTime: 30, MaxTime: 40, Type: storepb.Chunk_FLOAT_HISTOGRAM, Data: []byte{5, 6}},
		}},
		{labels.FromStrings("__name__", "down", "zone", ""), []storeapi.RawChunk{{MinTime: 0, MaxTime: 1, Type: storepb.Chunk_XOR, Data: []byte{7}}}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d", len(got), len(want))
	}
	for i := range want {
		if !labels.Equal(got[i].labels, want[i].labels) {
			t.Fatalf("series %d: labels %s, want %s", i, got[i].labels, want[i].labels)
		}
		if len(got[i].chunks) != len(want[i].chunks) {
			t.Fatalf("series %d: %d chunks, want %d", i, len(got[i].chunks), len(want[i].chunks))
		}
		for j, c := range want[i].chunks {
			g := got[i].chunks[j]
			if g.MinTime != c.MinTime || g.MaxTime != c.MaxTime || g.Type != c.Type || string(g.Data) != string(c.Data) {
				t.Fatalf("series %d chunk %d: %+v, want %+v", i, j, g, c)
			}
		}
	}

	if got, err := parseAll(t, frame, true); err != nil || len(got) != 2 || len(got[0].chunks) != 0 {
		t.Fatalf("skip chunks: %d series, %v", len(got), err)
	}
	// Every cut inside the frame's last series is an error (the frame
	// ends with the two bytes of query_index, skipped as unknown).
	for cut := 1; cut < 20; cut++ {
		if _, err := parseAll(t, frame[:len(frame)-2-cut], false); err == nil {
			t.Fatalf("frame cut by %d bytes parsed without an error", cut)
		}
	}
	bad := &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{
		Labels: []prompb.Label{{Name: "a", Value: "b"}},
		Chunks: []prompb.Chunk{{Type: prompb.Chunk_UNKNOWN, Data: []byte{1}}},
	}}}
	raw, _ := bad.Marshal()
	if _, err := parseAll(t, raw, false); err == nil || !strings.Contains(err.Error(), "encoding") {
		t.Fatalf("unknown chunk encoding: %v", err)
	}
}

// TestWithExternal: external labels are merged in order and win over a
// series label of the same name.
func TestWithExternal(t *testing.T) {
	ls := []labels.Label{{Name: "__name__", Value: "up"}, {Name: "replica", Value: "x"}, {Name: "zone", Value: "z"}}
	ext := []labels.Label{{Name: "cluster", Value: "c"}, {Name: "replica", Value: "a"}}
	got := labels.New(withExternal(nil, ls, ext)...)
	want := labels.FromStrings("__name__", "up", "cluster", "c", "replica", "a", "zone", "z")
	if !labels.Equal(got, want) {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := labels.New(withExternal(nil, ls, nil)...); !labels.Equal(got, labels.New(ls...)) {
		t.Fatalf("no external labels: %s", got)
	}
}
