package query

import (
	"slices"
	"sync"
	"time"
)

// Received series frames are kept until the query that read them ends:
// PromQL holds every selected series until then, and their chunks point
// into the frames. A wide query therefore touches as much fresh memory as
// it receives, and on a fresh heap every 4 KiB page of it is a page fault
// that the kernel zeroes: on count({__name__=~".+"}) over 20k series × 24h
// of an HA pair, 1 GB of frames and about a third of the querier's CPU.
// The querier therefore copies frames into slabs that go back to a pool when
// the query's storage.Querier is closed, and the next query reuses them
// without faulting.

// slabSize is the size of one pooled slab. Frames of a batch of 64 series
// are a few hundred KiB, so a slab holds several and wastes little at its
// end.
const slabSize = 4 << 20

// maxPooledFrame is the largest frame that is carved from a slab; larger
// ones get a buffer of their own. Stores close a batch frame once it
// reaches 1 MiB, so frames run a little past it: a quarter slab missed
// most frames of wide series.
const maxPooledFrame = slabSize / 2

// slabPool keeps free slabs between queries. Slabs that no query has needed
// for a trim interval are dropped, so an idle querier gives the memory back.
type slabPool struct {
	maxFree  int
	interval time.Duration

	mu        sync.Mutex
	free      [][]byte
	lowWater  int // fewest free slabs since the last trim
	scheduled bool
}

func newSlabPool(maxBytes int64, interval time.Duration) *slabPool {
	return &slabPool{maxFree: int(maxBytes / slabSize), interval: interval}
}

func (p *slabPool) get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.lowWater = min(p.lowWater, len(p.free))
		return s
	}
	return make([]byte, slabSize)
}

func (p *slabPool) put(slabs [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range slabs {
		if len(p.free) >= p.maxFree {
			break
		}
		p.free = append(p.free, s)
	}
	if len(p.free) > 0 && !p.scheduled {
		p.scheduled = true
		p.lowWater = len(p.free)
		time.AfterFunc(p.interval, p.trim)
	}
}

// trim drops the slabs that stayed free for the whole interval.
func (p *slabPool) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	// slices.Delete zeroes the tail, so no dropped slab stays reachable.
	p.free = slices.Delete(p.free, 0, p.lowWater)
	p.lowWater = len(p.free)
	if len(p.free) == 0 {
		p.scheduled = false
		return
	}
	time.AfterFunc(p.interval, p.trim)
}

// freeBytes is how much the pool holds.
func (p *slabPool) freeBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.free)) * slabSize
}

// frameBuffers hands out the buffers one querier's frames are copied into,
// and gives them back to the pool when the querier is closed. After that,
// nothing may read a frame of that querier: Close is only called once
// PromQL (or the API) is done with every series it selected.
type frameBuffers struct {
	pool *slabPool

	mu       sync.Mutex
	slabs    [][]byte
	rest     []byte // unused end of the last slab
	received int    // bytes handed out
	closed   bool
}

// ownBytes is what a querier receives into buffers of their own before it
// takes slabs: a small query does not hold a 4 MiB slab for a few KiB.
const ownBytes = 1 << 20

// alloc returns a buffer of n bytes, valid until release.
func (b *frameBuffers) alloc(n int) []byte {
	if b == nil || n > maxPooledFrame {
		return make([]byte, n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.received += n
	if b.closed || b.received <= ownBytes {
		// After Close, the buffer must not be one that another query
		// will reuse.
		return make([]byte, n)
	}
	if len(b.rest) < n {
		s := b.pool.get()
		b.slabs = append(b.slabs, s)
		b.rest = s
	}
	buf := b.rest[:n:n]
	b.rest = b.rest[n:]
	return buf
}

// release gives every slab back to the pool.
func (b *frameBuffers) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	slabs := b.slabs
	b.slabs, b.rest, b.closed = nil, nil, true
	b.mu.Unlock()
	b.pool.put(slabs)
}
