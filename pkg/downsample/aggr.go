package downsample

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// ChunkEncAggr is the TSDB chunk encoding byte of an AggrChunk. Thanos took
// the highest value so that Prometheus' own encodings never collide with it.
const ChunkEncAggr = chunkenc.Encoding(0xff)

// AggrType is one aggregate of a downsampled chunk. The values are the
// positions of the aggregates in the encoded chunk; they must not change.
type AggrType uint8

// The aggregates, in their on-disk order.
const (
	AggrCount AggrType = iota
	AggrSum
	AggrMin
	AggrMax
	AggrCounter
	numAggr
)

func (t AggrType) String() string {
	switch t {
	case AggrCount:
		return "count"
	case AggrSum:
		return "sum"
	case AggrMin:
		return "min"
	case AggrMax:
		return "max"
	case AggrCounter:
		return "counter"
	}
	return fmt.Sprintf("aggr(%d)", uint8(t))
}

// ErrAggrNotExist is returned by Get for an aggregate the chunk does not hold
// (histogram chunks have no min and max).
var ErrAggrNotExist = errors.New("aggregate does not exist in chunk")

// AggrChunk is a downsampled chunk: for each aggregate in AggrType order,
// uvarint(len(data)), and when the length is not zero the sub-chunk's
// encoding byte and data. A zero length marks an absent aggregate.
type AggrChunk []byte

// EncodeAggrChunk encodes the sub-chunks, indexed by AggrType; nil ones are
// absent.
func EncodeAggrChunk(chks [5]chunkenc.Chunk) AggrChunk {
	n := 0
	for _, c := range chks {
		if c != nil {
			n += binary.MaxVarintLen64 + 1 + len(c.Bytes())
		} else {
			n++
		}
	}
	b := make([]byte, 0, n)
	for _, c := range chks {
		if c == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		data := c.Bytes()
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, byte(c.Encoding()))
		b = append(b, data...)
	}
	return AggrChunk(b)
}

// raw returns the encoding and data of aggregate t without decoding it.
func (c AggrChunk) raw(t AggrType) (chunkenc.Encoding, []byte, error) {
	if t >= numAggr {
		return 0, nil, fmt.Errorf("unknown aggregate %d", t)
	}
	b := []byte(c)
	for i := AggrType(0); ; i++ {
		l, n := binary.Uvarint(b)
		if n < 1 {
			return 0, nil, fmt.Errorf("aggregate chunk: bad length of %s", i)
		}
		b = b[n:]
		if l == 0 {
			if i == t {
				return 0, nil, ErrAggrNotExist
			}
			continue
		}
		if uint64(len(b)) < l+1 {
			return 0, nil, fmt.Errorf("aggregate chunk: %s needs %d bytes, %d left", i, l+1, len(b))
		}
		if i == t {
			return chunkenc.Encoding(b[0]), b[1 : l+1], nil
		}
		b = b[l+1:]
	}
}

// Get decodes aggregate t.
func (c AggrChunk) Get(t AggrType) (chunkenc.Chunk, error) {
	enc, data, err := c.raw(t)
	if err != nil {
		return nil, err
	}
	return chunkenc.FromData(enc, data)
}

// GetRaw returns the encoding and bytes of aggregate t without copying: what
// a store sends on the wire.
func (c AggrChunk) GetRaw(t AggrType) (chunkenc.Encoding, []byte, error) { return c.raw(t) }

// IsHistogram tells whether the chunk aggregates native histograms: its
// counter (or sum) is a histogram chunk.
func (c AggrChunk) IsHistogram() bool {
	for _, t := range []AggrType{AggrCounter, AggrSum} {
		if enc, _, err := c.raw(t); err == nil {
			return enc == chunkenc.EncHistogram || enc == chunkenc.EncFloatHistogram
		}
	}
	return false
}

// The chunkenc.Chunk methods let the TSDB chunk writer and readers (and so
// Prometheus' compactor) carry AggrChunks unchanged.

func (c AggrChunk) Bytes() []byte             { return c }
func (AggrChunk) Encoding() chunkenc.Encoding { return ChunkEncAggr }
func (AggrChunk) Compact()                    {}
func (c *AggrChunk) Reset(stream []byte)      { *c = stream }
func (AggrChunk) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	// An AggrChunk has no single sample stream; readers pick an aggregate.
	return chunkenc.NewNopIterator()
}

func (AggrChunk) Appender() (chunkenc.Appender, error) {
	return nil, errors.New("aggregate chunks are written whole, not appended to")
}

// NumSamples is the number of aggregated windows (samples of the count).
func (c AggrChunk) NumSamples() int {
	x, err := c.Get(AggrCount)
	if err != nil {
		return 0
	}
	return x.NumSamples()
}

// pool is a chunkenc.Pool that also knows AggrChunks, for opening
// downsampled blocks with Prometheus' block reader.
type pool struct {
	chunkenc.Pool
	aggr sync.Pool
}

// NewPool returns a chunk pool for raw and downsampled blocks.
func NewPool() chunkenc.Pool {
	return &pool{Pool: chunkenc.NewPool(), aggr: sync.Pool{New: func() any { return new(AggrChunk) }}}
}

func (p *pool) Get(e chunkenc.Encoding, b []byte) (chunkenc.Chunk, error) {
	if e == ChunkEncAggr {
		c := p.aggr.Get().(*AggrChunk)
		*c = b
		return c, nil
	}
	return p.Pool.Get(e, b)
}

func (p *pool) Put(c chunkenc.Chunk) error {
	if ac, ok := c.(*AggrChunk); ok {
		*ac = nil
		p.aggr.Put(ac)
		return nil
	}
	if c.Encoding() == ChunkEncAggr {
		return nil
	}
	return p.Pool.Put(c)
}
