package query

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

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

// TestCompactRawIteratesAsReceived: the compact form of raw chunks yields
// the samples of the protobuf chunks, overlapping chunks and Seek included.
func TestCompactRawIteratesAsReceived(t *testing.T) {
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
	raw := compactRaw(chks)
	if raw == nil || len(raw.chks) != 3 {
		t.Fatalf("compactRaw: %+v", raw)
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
	if compactRaw([]*storepb.AggrChunk{chks[0], {MinTime: 1, MaxTime: 2, Count: chks[1].Raw}}) != nil {
		t.Fatal("a series with an aggregate chunk must stay in the protobuf form")
	}
}
