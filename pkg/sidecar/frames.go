package sidecar

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-metrics/strata/pkg/storeapi"
)

// frameParser walks remote read frames (prompb.ChunkedReadResponse) in wire
// form. Decoding them into gogo messages cost the sidecar an allocation per
// label and chunk and most of its CPU; the walk hands out views into the
// frame instead, which the frame encoder copies from once.
type frameParser struct {
	labels []labels.Label
	chunks []storeapi.RawChunk
}

// each calls fn for every series of the frame with its labels, sorted by
// name, and its chunks (none when skipChunks). Both are views into frame,
// valid only during the call.
func (p *frameParser) each(frame []byte, skipChunks bool, fn func([]labels.Label, []storeapi.RawChunk) error) error {
	for len(frame) > 0 {
		num, typ, n := protowire.ConsumeTag(frame)
		if n < 0 {
			return fmt.Errorf("remote read frame: %w", protowire.ParseError(n))
		}
		frame = frame[n:]
		if num == 1 && typ == protowire.BytesType { // ChunkedReadResponse.chunked_series
			series, n := protowire.ConsumeBytes(frame)
			if n < 0 {
				return fmt.Errorf("remote read frame: series: %w", protowire.ParseError(n))
			}
			frame = frame[n:]
			if err := p.series(series, skipChunks); err != nil {
				return fmt.Errorf("remote read frame: %w", err)
			}
			if err := fn(p.labels, p.chunks); err != nil {
				return err
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, frame)
		if n < 0 {
			return fmt.Errorf("remote read frame: field %d: %w", num, protowire.ParseError(n))
		}
		frame = frame[n:]
	}
	return nil
}

// series parses one prompb.ChunkedSeries into p.labels and p.chunks.
func (p *frameParser) series(b []byte, skipChunks bool) error {
	p.labels, p.chunks = p.labels[:0], p.chunks[:0]
	sorted := true
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		field, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 {
			l, err := parseLabel(field)
			if err != nil {
				return fmt.Errorf("label: %w", err)
			}
			if k := len(p.labels); k > 0 && p.labels[k-1].Name >= l.Name {
				sorted = false
			}
			p.labels = append(p.labels, l)
			continue
		}
		if skipChunks {
			continue
		}
		c, err := parseChunk(field)
		if err != nil {
			return fmt.Errorf("chunk: %w", err)
		}
		p.chunks = append(p.chunks, c)
	}
	if !sorted {
		slices.SortFunc(p.labels, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
	}
	return nil
}

// view is a string over b without a copy; it lives as long as b's frame.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func parseLabel(b []byte) (labels.Label, error) {
	var l labels.Label
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			b = b[n:]
			if num == 1 {
				l.Name = view(v)
			} else {
				l.Value = view(v)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return l, nil
}

func parseChunk(b []byte) (storeapi.RawChunk, error) {
	var (
		c   storeapi.RawChunk
		enc prompb.Chunk_Encoding
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num <= 3: // min_time_ms, max_time_ms, type
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return c, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 1:
				c.MinTime = int64(v)
			case 2:
				c.MaxTime = int64(v)
			case 3:
				enc = prompb.Chunk_Encoding(v)
			}
		case typ == protowire.BytesType && num == 4: // data
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return c, protowire.ParseError(n)
			}
			b = b[n:]
			c.Data = v
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return c, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	t, err := chunkType(enc)
	if err != nil {
		return c, err
	}
	c.Type = t
	return c, nil
}

// withExternal merges the series' sorted labels with the sorted external
// labels into dst; external labels win over series labels of the same name,
// as in Thanos (Prometheus has already added its own, the same ones).
func withExternal(dst, ls, ext []labels.Label) []labels.Label {
	dst = dst[:0]
	i, j := 0, 0
	for i < len(ls) && j < len(ext) {
		switch c := strings.Compare(ls[i].Name, ext[j].Name); {
		case c < 0:
			dst = append(dst, ls[i])
			i++
		case c > 0:
			dst = append(dst, ext[j])
			j++
		default:
			dst = append(dst, ext[j])
			i++
			j++
		}
	}
	dst = append(dst, ls[i:]...)
	return append(dst, ext[j:]...)
}
