package storeapi

import (
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

// LabelsFromProto converts wire labels into Prometheus labels. The builder
// is reused between calls to save allocations; labels come sorted on the wire
// but are sorted again to be safe against peers that do not sort.
func LabelsFromProto(b *labels.ScratchBuilder, ls []*labelpb.Label) labels.Labels {
	b.Reset()
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

// LabelsToProto converts Prometheus labels into wire labels.
func LabelsToProto(ls labels.Labels) []*labelpb.Label {
	out := make([]*labelpb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) {
		out = append(out, &labelpb.Label{Name: l.Name, Value: l.Value})
	})
	return out
}

// MatchersFromProto converts wire matchers into Prometheus matchers.
func MatchersFromProto(ms []*storepb.LabelMatcher) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		var t labels.MatchType
		switch m.Type {
		case storepb.LabelMatcher_EQ:
			t = labels.MatchEqual
		case storepb.LabelMatcher_NEQ:
			t = labels.MatchNotEqual
		case storepb.LabelMatcher_RE:
			t = labels.MatchRegexp
		case storepb.LabelMatcher_NRE:
			t = labels.MatchNotRegexp
		default:
			return nil, fmt.Errorf("unknown label matcher type %d for label %q", m.Type, m.Name)
		}
		pm, err := labels.NewMatcher(t, m.Name, m.Value)
		if err != nil {
			return nil, fmt.Errorf("label matcher %s: %w", m.Name, err)
		}
		out = append(out, pm)
	}
	return out, nil
}

// MatchersToProto converts Prometheus matchers into wire matchers.
func MatchersToProto(ms []*labels.Matcher) ([]*storepb.LabelMatcher, error) {
	out := make([]*storepb.LabelMatcher, 0, len(ms))
	for _, m := range ms {
		var t storepb.LabelMatcher_Type
		switch m.Type {
		case labels.MatchEqual:
			t = storepb.LabelMatcher_EQ
		case labels.MatchNotEqual:
			t = storepb.LabelMatcher_NEQ
		case labels.MatchRegexp:
			t = storepb.LabelMatcher_RE
		case labels.MatchNotRegexp:
			t = storepb.LabelMatcher_NRE
		default:
			return nil, fmt.Errorf("unknown label matcher type %v for label %q", m.Type, m.Name)
		}
		out = append(out, &storepb.LabelMatcher{Type: t, Name: m.Name, Value: m.Value})
	}
	return out, nil
}

// EncodingToProto maps a Prometheus chunk encoding to the wire's.
func EncodingToProto(e chunkenc.Encoding) (storepb.Chunk_Encoding, error) {
	switch e {
	case chunkenc.EncXOR:
		return storepb.Chunk_XOR, nil
	case chunkenc.EncHistogram:
		return storepb.Chunk_HISTOGRAM, nil
	case chunkenc.EncFloatHistogram:
		return storepb.Chunk_FLOAT_HISTOGRAM, nil
	}
	return 0, fmt.Errorf("chunk encoding %v has no StoreAPI equivalent", e)
}

// EncodingFromProto maps a wire chunk encoding to Prometheus'.
func EncodingFromProto(e storepb.Chunk_Encoding) (chunkenc.Encoding, error) {
	switch e {
	case storepb.Chunk_XOR:
		return chunkenc.EncXOR, nil
	case storepb.Chunk_HISTOGRAM:
		return chunkenc.EncHistogram, nil
	case storepb.Chunk_FLOAT_HISTOGRAM:
		return chunkenc.EncFloatHistogram, nil
	}
	return 0, fmt.Errorf("unknown StoreAPI chunk encoding %d", e)
}

// ChunksToProto converts a series' chunks into wire chunks, copying their
// bytes so they outlive the chunk source.
func ChunksToProto(it chunks.Iterator) ([]*storepb.AggrChunk, error) {
	var out []*storepb.AggrChunk
	for it.Next() {
		m := it.At()
		enc, err := EncodingToProto(m.Chunk.Encoding())
		if err != nil {
			return nil, err
		}
		out = append(out, &storepb.AggrChunk{MinTime: m.MinTime, MaxTime: m.MaxTime,
			Raw: &storepb.Chunk{Type: enc, Data: slices.Clone(m.Chunk.Bytes())}})
	}
	return out, it.Err()
}
