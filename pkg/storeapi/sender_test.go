package storeapi

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

// frames records what a Series handler sends.
type frames struct {
	grpc.ServerStream
	sent [][]string // series names per frame
}

func (f *frames) Send(r *storepb.SeriesResponse) error {
	var names []string
	if s := r.GetSeries(); s != nil {
		names = append(names, s.Labels[0].Value)
	}
	for _, s := range r.GetBatch().GetSeries() {
		names = append(names, s.Labels[0].Value)
	}
	f.sent = append(f.sent, names)
	return nil
}

func series(name string, dataBytes int) *storepb.Series {
	return &storepb.Series{Labels: []*labelpb.Label{{Name: "__name__", Value: name}},
		Chunks: []*storepb.AggrChunk{{Raw: &storepb.Chunk{Data: make([]byte, dataBytes)}}}}
}

func TestSeriesSenderBatches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		batch     int64
		dataBytes int
		want      []int // series per frame
	}{
		{"one per frame without batching", 0, 10, []int{1, 1, 1, 1, 1}},
		{"batches of two, the rest flushed", 2, 10, []int{2, 2, 1}},
		{"large series close a batch early", 100, 600 << 10, []int{2, 2, 1}},
	} {
		f := &frames{}
		s := NewSeriesSender(f, tc.batch)
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			if err := s.Send(series(n, tc.dataBytes)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []int
		var order []string
		for _, fr := range f.sent {
			got = append(got, len(fr))
			order = append(order, fr...)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: frames %v, want sizes %v", tc.name, f.sent, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: frames %v, want sizes %v", tc.name, f.sent, tc.want)
			}
		}
		if len(order) != 5 || order[0] != "a" || order[4] != "e" {
			t.Fatalf("%s: series sent %v, want a..e in order", tc.name, order)
		}
	}
}
