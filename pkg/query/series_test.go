package query

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/protobuf/proto"

	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

func TestAggregatesFor(t *testing.T) {
	avg := []storepb.Aggr{storepb.Aggr_COUNT, storepb.Aggr_SUM}
	for fn, want := range map[string][]storepb.Aggr{
		"max_over_time":   {storepb.Aggr_MAX},
		"min":             {storepb.Aggr_MIN},
		"count_over_time": {storepb.Aggr_COUNT},
		"sum_over_time":   {storepb.Aggr_SUM},
		"sum":             avg, // sum() adds samples across series
		"rate":            {storepb.Aggr_COUNTER},
		"increase":        {storepb.Aggr_COUNTER},
		"xrate":           {storepb.Aggr_COUNTER},
		"avg_over_time":   avg,
		"":                avg,
	} {
		if got := aggregatesFor(fn); !slices.Equal(got, want) {
			t.Errorf("aggregatesFor(%q) = %v, want %v", fn, got, want)
		}
	}
}

// TestFramesDecodeAsReceived: frames decoded by hand hold what the
// protobuf messages hold, and the compact form of raw chunks yields the
// samples of the protobuf chunks, overlapping chunks and Seek included.
func TestFramesDecodeAsReceived(t *testing.T) {
	mk := func(from, to, step int64) *storepb.AggrChunk {
		c := chunkenc.NewXORChunk()
		app, err := c.Appender()
		if err != nil {
			t.Fatal(err)
		}
		for ts := from; ts <= to; ts += step {
			app.Append(0, ts, float64(ts)/7)
		}
		return &storepb.AggrChunk{MinTime: from, MaxTime: to, Raw: &storepb.Chunk{Type: storepb.Chunk_XOR, Data: c.Bytes()}}
	}
	// The second chunk overlaps the first (two blocks of one stream).
	chks := []*storepb.AggrChunk{mk(0, 1000, 10), mk(900, 2000, 10), mk(2010, 3000, 30)}
	aggr := &storepb.AggrChunk{MinTime: 3010, MaxTime: 4000, Count: chks[2].Raw, Sum: chks[2].Raw}
	lbls := []*labelpb.Label{{Name: "__name__", Value: "m"}, {Name: "job", Value: "j"}}
	frame := func(t *testing.T, resp *storepb.SeriesResponse) *seriesFrame {
		t.Helper()
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		f := &seriesFrame{}
		if err := f.decode(b); err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := frame(t, &storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: &storepb.SeriesBatch{Series: []*storepb.Series{
		{Labels: lbls, Chunks: chks},
		{Labels: lbls, Chunks: append(slices.Clone(chks), aggr)},
	}}}})
	if len(f.series) != 2 || f.series[0].lset.String() != `{__name__="m", job="j"}` {
		t.Fatalf("decoded batch: %+v", f.series)
	}
	raw := f.series[0].raw
	if raw == nil || len(raw.chks) != 3 || f.series[0].chunks != nil {
		t.Fatalf("raw-only series must decode compactly: %+v", f.series[0])
	}
	if f.series[1].raw != nil || len(f.series[1].chunks) != 4 || !proto.Equal(f.series[1].chunks[3], aggr) {
		t.Fatalf("a series with an aggregate chunk must keep the messages: %+v", f.series[1])
	}
	if w := frame(t, &storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: "store b down"}}); w.warning != "store b down" || len(w.series) != 0 {
		t.Fatalf("decoded warning: %+v", w)
	}
	if one := frame(t, &storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: &storepb.Series{Labels: lbls, Chunks: chks[:1]}}}); len(one.series) != 1 || len(one.series[0].raw.chks) != 1 {
		t.Fatalf("decoded single series: %+v", one)
	}
	if err := (&seriesFrame{}).decode([]byte{0x22, 0x05, 0x0a}); err == nil {
		t.Fatal("a truncated frame must fail")
	}
	read := func(s *chunkSeries, seek int64) []int64 {
		it := s.Iterator(nil)
		var ts []int64
		vt := it.Next()
		if seek > 0 {
			vt = it.Seek(seek)
		}
		for ; vt != chunkenc.ValNone; vt = it.Next() {
			tt, v := it.At()
			if v != float64(tt)/7 {
				t.Fatalf("sample at %d: %v", tt, v)
			}
			ts = append(ts, tt)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for _, seek := range []int64{0, 555, 1995, 2500, 5000} {
		want := read(&chunkSeries{chunks: chks}, seek)
		got := read(&chunkSeries{raw: raw}, seek)
		if !slices.Equal(got, want) {
			t.Fatalf("seek %d: compact form gives %d samples, protobuf form %d", seek, len(got), len(want))
		}
		if seek == 0 && len(want) != 101+100+34 {
			t.Fatalf("protobuf form gives %d samples, want %d", len(want), 101+100+34)
		}
	}
}
