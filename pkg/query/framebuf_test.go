package query

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"
)

func TestFrameBuffersReuseSlabsAfterClose(t *testing.T) {
	pool := newSlabPool(3*slabSize, time.Hour)
	first := &frameBuffers{pool: pool}
	// A small query's frames get buffers of their own.
	for range 4 {
		first.alloc(ownBytes / 4)
	}
	if len(first.slabs) != 0 {
		t.Fatalf("the first %d bytes took %d slabs", ownBytes, len(first.slabs))
	}
	var bufs [][]byte
	for range 9 {
		b := first.alloc(slabSize / 4)
		for i := range b {
			b[i] = 1
		}
		bufs = append(bufs, b)
	}
	// Nine frames of a quarter slab: three slabs, no two frames sharing a
	// byte (each was filled in full: a shared byte would be written twice).
	if len(first.slabs) != 3 {
		t.Fatalf("%d slabs for 9 quarter-slab frames, want 3", len(first.slabs))
	}
	for i, a := range bufs {
		if len(a) != slabSize/4 || cap(a) != slabSize/4 {
			t.Fatalf("frame %d: len %d cap %d; its capacity must end where the next frame starts", i, len(a), cap(a))
		}
		for j, b := range bufs[:i] {
			pa, pb := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
			if pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a)) {
				t.Fatalf("frames %d and %d overlap", j, i)
			}
		}
	}
	if big := first.alloc(maxPooledFrame + 1); len(big) != maxPooledFrame+1 || len(first.slabs) != 3 {
		t.Fatalf("a frame over %d bytes must not come from a slab", maxPooledFrame)
	}
	slab0 := &first.slabs[0][0]

	first.release()
	if got := pool.freeBytes(); got != 3*slabSize {
		t.Fatalf("pool holds %d bytes after release, want %d", got, 3*slabSize)
	}
	// A frame read after Close must not take a pooled slab.
	if late := first.alloc(10); len(late) != 10 || pool.freeBytes() != 3*slabSize {
		t.Fatal("an allocation after release took a slab from the pool")
	}

	// The next querier gets the same memory back, without a new slab.
	second := &frameBuffers{pool: pool}
	second.alloc(ownBytes)
	seen := false
	for range 13 {
		b := second.alloc(slabSize / 4)
		seen = seen || &b[0] == slab0
	}
	if !seen || pool.freeBytes() != 0 || len(second.slabs) != 4 {
		t.Fatalf("the second querier did not reuse the released slabs (pool left with %d bytes)", pool.freeBytes())
	}
	// A fourth slab is new; the pool keeps at most three.
	second.release()
	if got := pool.freeBytes(); got != 3*slabSize {
		t.Fatalf("pool holds %d bytes, its limit is %d", got, 3*slabSize)
	}
}

func TestSlabPoolDropsIdleSlabs(t *testing.T) {
	pool := newSlabPool(8*slabSize, time.Hour) // trim is called by hand
	b := &frameBuffers{pool: pool}
	b.alloc(ownBytes)
	for range 4 {
		for range slabSize / maxPooledFrame { // one slab's worth
			b.alloc(maxPooledFrame)
		}
	}
	b.release()
	if pool.freeBytes() != 4*slabSize {
		t.Fatalf("pool holds %d bytes, want 4 slabs", pool.freeBytes())
	}
	// One slab is used during the interval: the three that were not are
	// dropped, the busy one stays for the next interval.
	used := &frameBuffers{pool: pool}
	used.alloc(ownBytes)
	used.alloc(1)
	used.release()
	pool.trim()
	if pool.freeBytes() != slabSize {
		t.Fatalf("after a trim the pool holds %d bytes, want the one slab used since the last", pool.freeBytes())
	}
	// Dropped slabs must not stay reachable from the free list's array.
	for i, s := range pool.free[len(pool.free):cap(pool.free)] {
		if s != nil {
			t.Fatalf("slot %d past the free list still holds a dropped slab", len(pool.free)+i)
		}
	}
	pool.trim()
	if pool.freeBytes() != 0 {
		t.Fatalf("an idle pool must end empty, holds %d bytes", pool.freeBytes())
	}
}

func TestClosedQuerier(t *testing.T) {
	q := &Queryable{Stores: func() []Store { return nil }}
	if sq := q.StreamingQuerier(0, 1).(*querier); sq.bufs != nil {
		t.Fatal("a streaming querier must not keep its frames")
	}
	pq, err := q.Querier(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := pq.Close(); err != nil {
		t.Fatal(err)
	}
	if set := pq.Select(context.Background(), true, nil); set.Next() || !errors.Is(set.Err(), errClosed) {
		t.Fatalf("select after Close: %v, want %v", set.Err(), errClosed)
	}
	if err := pq.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}
