package storeapi

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/proto"

	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

// TestSeriesFrameEncoder: a frame built by hand decodes, with the generated
// code, to the message it stands for.
func TestSeriesFrameEncoder(t *testing.T) {
	var e SeriesFrameEncoder
	if e.Frame() != nil {
		t.Fatal("an empty encoder has no frame")
	}
	big := make([]byte, 300)
	for i := range big {
		big[i] = byte(i)
	}
	e.Add(labels.FromStrings("__name__", "up", "job", "x"), []RawChunk{
		{MinTime: 0, MaxTime: 7, Type: storepb.Chunk_XOR, Data: []byte{1, 2, 3}},
		{MinTime: -5, MaxTime: 1 << 40, Type: storepb.Chunk_FLOAT_HISTOGRAM, Data: big},
	})
	e.Add(labels.FromStrings("__name__", "up", "job", ""), nil)
	if n, _ := e.Len(); n != 2 {
		t.Fatalf("Len: %d series", n)
	}
	var got storepb.SeriesResponse
	if err := proto.Unmarshal(e.Frame().Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := &storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: &storepb.SeriesBatch{Series: []*storepb.Series{
		{Labels: []*labelpb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}}, Chunks: []*storepb.AggrChunk{
			{MinTime: 0, MaxTime: 7, Raw: &storepb.Chunk{Type: storepb.Chunk_XOR, Data: []byte{1, 2, 3}}},
			{MinTime: -5, MaxTime: 1 << 40, Raw: &storepb.Chunk{Type: storepb.Chunk_FLOAT_HISTOGRAM, Data: big}},
		}},
		{Labels: []*labelpb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: ""}}},
	}}}}
	if !proto.Equal(&got, want) {
		t.Fatalf("decoded\n%v\nwant\n%v", &got, want)
	}
	if n, b := e.Len(); n != 0 || b != 0 || e.Frame() != nil {
		t.Fatal("Frame must reset the encoder")
	}
}
