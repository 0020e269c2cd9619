package storeapi

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

// Encoded is a message already in wire form; ServerCodec sends it as it is.
// A frame from SeriesFrameEncoder keeps its buffer for the next frame once
// gRPC has written it.
type Encoded struct {
	buf  *[]byte
	pool mem.BufferPool
}

// EncodedBytes wraps a message in wire form that is not pooled.
func EncodedBytes(b []byte) *Encoded { return &Encoded{buf: &b} }

// Bytes is the message in wire form.
func (e *Encoded) Bytes() []byte { return *e.buf }

// ServerCodec is the proto codec, except that it sends Encoded messages
// without marshalling: a server that builds its frames by hand (the
// sidecar's Series) skips the generic encoder's per-field work. Its name is
// "proto", so clients see no difference.
type ServerCodec struct{}

func (ServerCodec) Name() string { return "proto" }

func (ServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*Encoded); ok {
		// gRPC frees the buffer once the transport has written it, which
		// hands it back to the pool: a new 1 MiB frame for every send was
		// a tenth of the sidecar's CPU in zeroing alone.
		return mem.BufferSlice{mem.NewBuffer(e.buf, e.pool)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (ServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

// RawChunk is a raw chunk to encode.
type RawChunk struct {
	MinTime, MaxTime int64
	Type             storepb.Chunk_Encoding
	Data             []byte
}

// framePrefix is room at the start of a frame for the SeriesResponse's batch
// tag and length, written once the length is known.
const framePrefix = 1 + 5

// SeriesFrameEncoder builds one SeriesResponse with a batch of series in
// wire form, copying each chunk's data once.
type SeriesFrameEncoder struct {
	// SizeHint is the capacity a new frame starts with: set it to the
	// size at which the caller sends frames, or appends regrow the frame
	// again and again (a third of the sidecar's CPU when they did).
	SizeHint int
	buf      []byte
	full     *[]byte // the pooled buffer buf was taken from
	series   int
	scratch  []labels.Label
}

// Len is the number of series and bytes in the frame so far.
func (e *SeriesFrameEncoder) Len() (series, bytes int) {
	return e.series, max(len(e.buf)-framePrefix, 0)
}

// Add appends a series with raw chunks.
func (e *SeriesFrameEncoder) Add(lset labels.Labels, chunks []RawChunk) {
	e.scratch = e.scratch[:0]
	lset.Range(func(l labels.Label) { e.scratch = append(e.scratch, l) })
	e.AddLabels(e.scratch, chunks)
}

// AddLabels appends a series given as sorted labels with raw chunks. The
// labels' strings are copied: they may point into a buffer the caller
// reuses.
func (e *SeriesFrameEncoder) AddLabels(ls []labels.Label, chunks []RawChunk) {
	if len(e.buf) == 0 {
		e.full = framePool.Get(max(e.SizeHint, 0) + framePrefix)
		e.buf = (*e.full)[:framePrefix]
	}
	size := seriesSize(ls, chunks)
	b := protowire.AppendTag(e.buf, 1, protowire.BytesType) // SeriesBatch.series
	b = protowire.AppendVarint(b, uint64(size))
	for _, l := range ls {
		b = protowire.AppendTag(b, 1, protowire.BytesType) // Series.labels
		b = protowire.AppendVarint(b, uint64(labelSize(l)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, l.Name)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, l.Value)
	}
	for _, c := range chunks {
		b = protowire.AppendTag(b, 2, protowire.BytesType) // Series.chunks
		b = protowire.AppendVarint(b, uint64(aggrSize(c)))
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(c.MinTime))
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(c.MaxTime))
		b = protowire.AppendTag(b, 3, protowire.BytesType) // AggrChunk.raw
		b = protowire.AppendVarint(b, uint64(chunkSize(c)))
		if c.Type != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(c.Type))
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, c.Data)
	}
	e.buf = b
	e.series++
}

func seriesSize(ls []labels.Label, chunks []RawChunk) int {
	size := 0
	for _, l := range ls {
		n := labelSize(l)
		size += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	for _, c := range chunks {
		n := aggrSize(c)
		size += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	return size
}

// Fits tells whether the frame as sent stays within limit bytes with the
// series added, or is empty: callers send the frame first when it
// does not, so frames stay within the limit unless one series alone is
// larger. A querier that keeps frames in fixed-size buffers packs them
// without waste.
func (e *SeriesFrameEncoder) Fits(ls []labels.Label, chunks []RawChunk, limit int) bool {
	if e.series == 0 {
		return true
	}
	n := seriesSize(ls, chunks)
	_, cur := e.Len()
	return framePrefix+cur+1+protowire.SizeVarint(uint64(n))+n <= limit
}

// FitsLabels is Fits for a labels.Labels.
func (e *SeriesFrameEncoder) FitsLabels(lset labels.Labels, chunks []RawChunk, limit int) bool {
	e.scratch = e.scratch[:0]
	lset.Range(func(l labels.Label) { e.scratch = append(e.scratch, l) })
	return e.Fits(e.scratch, chunks, limit)
}

// Frame returns the frame (nil when empty) and resets the encoder. Sent
// through ServerCodec, its buffer comes back for later frames; otherwise it
// is the caller's.
func (e *SeriesFrameEncoder) Frame() *Encoded {
	if e.series == 0 {
		return nil
	}
	n := len(e.buf) - framePrefix
	var p [framePrefix]byte
	pre := protowire.AppendTag(p[:0], 4, protowire.BytesType) // SeriesResponse.batch
	pre = protowire.AppendVarint(pre, uint64(n))
	start := framePrefix - len(pre)
	copy(e.buf[start:], pre)
	out := e.buf[start:]
	// The frame starts a few bytes into its buffer; the whole buffer,
	// grown by appends or not, is what goes back to the pool.
	full := e.full
	*full = e.buf[:0]
	e.buf, e.full, e.series = nil, nil, 0
	return &Encoded{buf: &out, pool: frameReturn{full}}
}

// frameBuffers recycles frame buffers: gRPC puts them back once written.
type frameBuffers struct{ p sync.Pool }

var framePool frameBuffers

// Get returns a buffer of at least n bytes' capacity.
func (f *frameBuffers) Get(n int) *[]byte {
	if b, ok := f.p.Get().(*[]byte); ok {
		if cap(*b) >= n {
			*b = (*b)[:0]
			return b
		}
	}
	b := make([]byte, 0, n)
	return &b
}

// frameReturn is the pool gRPC frees one frame to: it puts back the whole
// buffer the frame was cut from, not the frame (which starts a few bytes
// in and would shrink the buffer with every use).
type frameReturn struct{ full *[]byte }

func (r frameReturn) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (r frameReturn) Put(*[]byte) { framePool.p.Put(r.full) }

func labelSize(l labels.Label) int {
	return 1 + protowire.SizeBytes(len(l.Name)) + 1 + protowire.SizeBytes(len(l.Value))
}

func chunkSize(c RawChunk) int {
	n := 1 + protowire.SizeBytes(len(c.Data))
	if c.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(c.Type))
	}
	return n
}

func aggrSize(c RawChunk) int {
	n := chunkSize(c)
	return 1 + protowire.SizeVarint(uint64(c.MinTime)) + 1 + protowire.SizeVarint(uint64(c.MaxTime)) + 1 + protowire.SizeVarint(uint64(n)) + n
}
