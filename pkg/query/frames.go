package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// Series frames are decoded by hand, straight into what the querier keeps
// (labels and one arena of chunk data per series), instead of into
// protobuf messages that are converted and dropped: on wide queries the
// generic decoder's allocation per chunk was the querier's largest cost
// after PromQL itself.

// seriesFrame is one SeriesResponse as the querier keeps it.
type seriesFrame struct {
	series  []frameSeries
	warning string
	sb      labels.ScratchBuilder
	// buf is the frame's wire form, which raw chunks point into.
	buf []byte
	// bufs gives buf its memory; nil allocates.
	bufs *frameBuffers
	// reuse: every frame goes into scratch, for a reader done with each
	// frame before it asks for the next.
	reuse   bool
	scratch []byte
}

// frameSeries is one series of a frame: raw chunks compactly, or, when it
// has aggregates (downsampled data), the chunk messages.
type frameSeries struct {
	lset   labels.Labels
	raw    *rawChunks
	chunks []*storepb.AggrChunk
}

// seriesCodec decodes SeriesResponse frames into seriesFrame and leaves
// every other message to the proto codec. Its name is "proto", so the
// wire is unchanged.
type seriesCodec struct{}

func (seriesCodec) Name() string { return "proto" }

func (seriesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (seriesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*seriesFrame)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	// The frame gets a buffer of its own that its series' raw chunks point
	// into: PromQL holds every series until the query ends, so the frame
	// lives that long anyway, and copying each series' chunks out of it
	// was a quarter of the querier's CPU on wide queries.
	b := f.buffer(data.Len())
	data.CopyTo(b)
	return f.decode(b)
}

// readSeriesBuffers keeps ReadSeries' frame buffers for the next call: a
// fresh megabyte per call was zeroed and faulted in each time.
var readSeriesBuffers sync.Pool

// buffer returns memory for a frame of n bytes.
func (f *seriesFrame) buffer(n int) []byte {
	if !f.reuse {
		return f.bufs.alloc(n)
	}
	if cap(f.scratch) < n {
		f.scratch = make([]byte, n)
	}
	return f.scratch[:n]
}

var errTruncated = errors.New("truncated SeriesResponse")

// decode reads a SeriesResponse: series (1), warning (2), hints (3,
// ignored) or batch (4).
func (f *seriesFrame) decode(b []byte) error {
	clear(f.series)
	f.series, f.warning, f.buf = f.series[:0], "", b
	return forEachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			return f.addSeries(v)
		case 2:
			f.warning = string(v)
		case 4:
			return forEachField(v, func(num protowire.Number, v []byte) error {
				if num == 1 {
					return f.addSeries(v)
				}
				return nil
			})
		}
		return nil
	})
}

// forEachField calls fn with the number and contents of every
// length-delimited field of a message, skipping the others.
func forEachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errTruncated
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// rawChunkFields are the fields of an AggrChunk with only raw data.
type rawChunkFields struct {
	minT, maxT int64
	typ        storepb.Chunk_Encoding
	data       []byte
	rawOnly    bool
}

// parseAggrChunk reads an AggrChunk; rawOnly is false when it has
// aggregates or no raw chunk.
func parseAggrChunk(b []byte) (rawChunkFields, error) {
	var c rawChunkFields
	hasRaw, hasAggr := false, false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c, errTruncated
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return c, errTruncated
			}
			b = b[n:]
			if num == 1 {
				c.minT = int64(v)
			} else {
				c.maxT = int64(v)
			}
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return c, errTruncated
			}
			b = b[n:]
			hasRaw = true
			for len(v) > 0 {
				cnum, ctyp, n := protowire.ConsumeTag(v)
				if n < 0 {
					return c, errTruncated
				}
				v = v[n:]
				switch {
				case cnum == 1 && ctyp == protowire.VarintType:
					t, n := protowire.ConsumeVarint(v)
					if n < 0 {
						return c, errTruncated
					}
					v = v[n:]
					c.typ = storepb.Chunk_Encoding(t)
				case cnum == 2 && ctyp == protowire.BytesType:
					d, n := protowire.ConsumeBytes(v)
					if n < 0 {
						return c, errTruncated
					}
					v = v[n:]
					c.data = d
				default:
					n = protowire.ConsumeFieldValue(cnum, ctyp, v)
					if n < 0 {
						return c, errTruncated
					}
					v = v[n:]
				}
			}
		default:
			if num >= 4 && num <= 8 {
				hasAggr = true
			}
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return c, errTruncated
			}
			b = b[n:]
		}
	}
	c.rawOnly = hasRaw && !hasAggr
	if c.rawOnly {
		if _, err := storeapi.EncodingFromProto(c.typ); err != nil {
			c.rawOnly = false
		}
	}
	return c, nil
}

// addSeries decodes a Series: labels (1) and chunks (2).
func (f *seriesFrame) addSeries(b []byte) error {
	f.sb.Reset()
	nchunks, rawOnly := 0, true
	err := forEachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			var name, value string
			if err := forEachField(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					name = string(v)
				case 2:
					value = string(v)
				}
				return nil
			}); err != nil {
				return err
			}
			f.sb.Add(name, value)
		case 2:
			c, err := parseAggrChunk(v)
			if err != nil {
				return err
			}
			nchunks++
			rawOnly = rawOnly && c.rawOnly
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.sb.Sort()
	s := frameSeries{lset: f.sb.Labels()}
	switch {
	case nchunks == 0:
	case rawOnly && len(f.buf) <= math.MaxUint32:
		s.raw = &rawChunks{arena: f.buf, chks: make([]rawChunk, 0, nchunks)}
		err = forEachField(b, func(num protowire.Number, v []byte) error {
			if num != 2 {
				return nil
			}
			c, err := parseAggrChunk(v)
			if err != nil {
				return err
			}
			enc, _ := storeapi.EncodingFromProto(c.typ)
			// c.data is a slice of f.buf: its offset is how much
			// capacity it has less (checked: a parser that capped
			// capacities would otherwise point chunks at wrong bytes).
			off := cap(f.buf) - cap(c.data)
			if len(c.data) > 0 && (off < 0 || off+len(c.data) > len(f.buf) || &f.buf[off] != &c.data[0]) {
				return errors.New("chunk data outside its frame")
			}
			s.raw.chks = append(s.raw.chks, rawChunk{minT: c.minT, maxT: c.maxT, off: uint32(off), end: uint32(off + len(c.data)), enc: enc})
			return nil
		})
	default:
		// Aggregates (or an encoding only decode can name): the generic
		// messages, rare enough not to matter.
		s.chunks = make([]*storepb.AggrChunk, 0, nchunks)
		err = forEachField(b, func(num protowire.Number, v []byte) error {
			if num != 2 {
				return nil
			}
			c := &storepb.AggrChunk{}
			if err := proto.Unmarshal(v, c); err != nil {
				return fmt.Errorf("decode chunk: %w", err)
			}
			s.chunks = append(s.chunks, c)
			return nil
		})
	}
	if err != nil {
		return err
	}
	f.series = append(f.series, s)
	return nil
}

// openSeries starts a Series request on cc whose frames seriesCodec
// decodes.
func openSeries(ctx context.Context, cc grpc.ClientConnInterface, req *storepb.SeriesRequest) (grpc.ClientStream, error) {
	stream, err := cc.NewStream(ctx, &storepb.Store_ServiceDesc.Streams[0], storepb.Store_Series_FullMethodName, grpc.ForceCodecV2(seriesCodec{}))
	if err == nil {
		err = stream.SendMsg(req)
	}
	if err == nil {
		err = stream.CloseSend()
	}
	return stream, err
}

// ReadSeries runs a Series request on cc and calls fn with each series'
// labels and raw chunks (the raw part of aggregate chunks too), decoded as
// the querier decodes them: for benchmarks and tools that want the
// querier's view of a store. A warning frame is returned as an error.
// Every frame is read into the same buffer, so the chunks fn is given are
// valid only until fn returns: a querier's PromQL path reuses the memory of
// its frames too (from pooled slabs, once the query ends), and a fresh
// buffer per frame made this reader cost more than the querier.
func ReadSeries(ctx context.Context, cc grpc.ClientConnInterface, req *storepb.SeriesRequest, fn func(labels.Labels, []chunkenc.Chunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := openSeries(ctx, cc, req)
	if err != nil {
		return err
	}
	f := seriesFrame{reuse: true}
	if b, ok := readSeriesBuffers.Get().(*[]byte); ok {
		f.scratch = *b
	}
	defer func() {
		// The stream is done with before its buffer is given back.
		cancel()
		if cap(f.scratch) <= 4<<20 {
			b := f.scratch[:0]
			readSeriesBuffers.Put(&b)
		}
	}()
	var chks []chunkenc.Chunk
	for {
		if err := stream.RecvMsg(&f); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if f.warning != "" {
			return errors.New(f.warning)
		}
		for _, s := range f.series {
			chks = chks[:0]
			if s.raw != nil {
				for _, c := range s.raw.chks {
					chk, err := chunkenc.FromData(c.enc, s.raw.arena[c.off:c.end])
					if err != nil {
						return err
					}
					chks = append(chks, chk)
				}
			}
			for _, c := range s.chunks {
				if c.Raw == nil {
					continue
				}
				enc, err := storeapi.EncodingFromProto(c.Raw.Type)
				if err != nil {
					return err
				}
				chk, err := chunkenc.FromData(enc, c.Raw.Data)
				if err != nil {
					return err
				}
				chks = append(chks, chk)
			}
			if err := fn(s.lset, chks); err != nil {
				return err
			}
		}
	}
}
