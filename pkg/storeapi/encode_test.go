package storeapi

import (
	"strconv"
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

// TestFrameFits: frames closed when the next series does not fit stay
// within the limit as sent, prefix included; a series larger than the
// limit alone still goes out, in a frame of its own.
func TestFrameFits(t *testing.T) {
	const limit = 4096
	var enc SeriesFrameEncoder
	data := make([]byte, 300)
	frames := 0
	send := func() {
		f := enc.Frame()
		if f == nil {
			return
		}
		frames++
		if n := len(*f.buf); n > limit {
			t.Fatalf("frame %d is %d bytes, over the %d limit", frames, n, limit)
		}
	}
	for i := range 100 {
		ls := []labels.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: strconv.Itoa(i)}}
		chunks := []RawChunk{{MinTime: 1, MaxTime: 2, Type: 1, Data: data}}
		if !enc.Fits(ls, chunks, limit) {
			send()
		}
		enc.AddLabels(ls, chunks)
	}
	send()
	if frames < 100*300/limit {
		t.Fatalf("%d frames for 30 KB in frames of at most 4 KiB", frames)
	}
	big := []RawChunk{{MinTime: 1, MaxTime: 2, Type: 1, Data: make([]byte, 2*limit)}}
	if !enc.Fits([]labels.Label{{Name: "a", Value: "b"}}, big, limit) {
		t.Fatal("an empty frame must take a series of any size")
	}
}
