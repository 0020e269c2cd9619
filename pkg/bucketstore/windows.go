package bucketstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Wide requests read their chunks through windows instead of the page
// cache: the chunks a request needs from one segment file are known before
// it sends anything, and come in the order it sends them, so one ranged
// read can cover many of them. A 180 MiB scan through 32 KiB pages cost
// 5,750 GETs and flushed the cache for nothing; through windows it costs a
// few hundred and leaves the cache to the small queries that repeat.
const (
	// maxWindow bounds one ranged read and what a window holds: a request
	// holds one window per block it reads, so 4 MiB made the store peak
	// at 741 MiB RSS on the bench query set, 1 MiB at 533 MiB, and faster.
	maxWindow = 1 << 20
	// maxWindowGap is the largest run of unneeded bytes a window reads
	// through rather than starting a new read.
	maxWindowGap = 64 << 10
	// chunkSlack is read past the start of a window's last chunk, whose
	// length is only known once read; a longer chunk is read on its own.
	chunkSlack = 4 << 10
)

// windowBytes is maxWindow, smaller in tests so that small blocks take
// many windows per segment.
var windowBytes = maxWindow

// segmentKey names one chunk segment file of one block.
type segmentKey struct {
	b   *bucketBlock
	seq int
}

// segmentPlan is what a request still reads from one segment, in order.
type segmentPlan struct {
	offs []int  // chunk offsets in the order the request reads them
	next int    // first offset not yet read
	win  []byte // the current window
	off  int    // its offset in the segment
}

// chunkWindows serves the chunks of one request from planned windows.
type chunkWindows struct {
	plans map[segmentKey]*segmentPlan
	// recycle lets windows be reused once replaced and released: set when
	// the caller copies each series' chunk data before asking for the
	// next series (encoded frames). A count over every series read a
	// gigabyte of fresh 1 MiB windows per query, and the store's garbage
	// collector and page faults were a fifth of its CPU.
	recycle bool
	retired [][]byte // replaced, possibly still referenced by the current series
	free    [][]byte
}

// windowPool keeps window buffers between requests.
var windowPool = sync.Pool{New: func() any { b := make([]byte, 0, maxWindow+chunkSlack); return &b }}

// buffer returns a window buffer of n bytes.
func (w *chunkWindows) buffer(n int) []byte {
	if n > maxWindow+chunkSlack {
		return make([]byte, n)
	}
	if k := len(w.free); k > 0 {
		b := w.free[k-1]
		w.free = w.free[:k-1]
		return b[:n]
	}
	return (*windowPool.Get().(*[]byte))[:n]
}

// release tells that no chunk data handed out so far is used any more: the
// windows replaced until now may be reused.
func (w *chunkWindows) release() {
	w.free = append(w.free, w.retired...)
	clear(w.retired)
	w.retired = w.retired[:0]
}

// close hands the request's idle windows to the next requests. The current
// windows stay with the request: chunk data from them may still be in use.
func (w *chunkWindows) close() {
	if !w.recycle {
		return
	}
	w.release()
	for _, b := range w.free {
		if cap(b) == maxWindow+chunkSlack {
			b = b[:0]
			windowPool.Put(&b)
		}
	}
	w.free = nil
}

// newChunkWindows plans the reads of the chunks of all, in send order.
func newChunkWindows(all []matched) *chunkWindows {
	w := &chunkWindows{plans: map[segmentKey]*segmentPlan{}}
	for _, m := range all {
		for _, c := range m.chks {
			seq, off := chunks.BlockChunkRef(c.ref).Unpack()
			k := segmentKey{c.b, seq}
			p := w.plans[k]
			if p == nil {
				p = &segmentPlan{}
				w.plans[k] = p
			}
			p.offs = append(p.offs, off)
		}
	}
	return w
}

// chunk returns the chunk at ref of block b, which must be the next one
// the plan of its segment expects.
func (w *chunkWindows) chunk(b *bucketBlock, ref chunks.ChunkRef) (chunkenc.Encoding, []byte, error) {
	seq, off := chunks.BlockChunkRef(ref).Unpack()
	p := w.plans[segmentKey{b, seq}]
	if p == nil || p.next >= len(p.offs) || p.offs[p.next] != off {
		// Not as planned: read it through the pages.
		return b.chunk(ref)
	}
	p.next++
	if off < p.off || off >= p.off+len(p.win) {
		if err := w.load(b, seq, p); err != nil {
			return 0, nil, err
		}
	}
	enc, data, ok, err := parseChunk(p.win[off-p.off:])
	if err != nil {
		return 0, nil, fmt.Errorf("block %s: chunk %d in segment %d: %w", b.meta.ULID, off, seq+1, err)
	}
	if !ok {
		// Longer than the slack left for it.
		return b.chunk(ref)
	}
	return enc, data, nil
}

// load reads the window that starts at the plan's next-but-just-taken
// chunk and covers as many of the following ones as maxWindow and
// maxWindowGap allow.
func (w *chunkWindows) load(b *bucketBlock, seq int, p *segmentPlan) error {
	seg, err := b.segment(seq)
	if err != nil {
		return err
	}
	start := p.offs[p.next-1]
	end := start
	for i := p.next; i < len(p.offs); i++ {
		o := p.offs[i]
		if o < end || o-end > maxWindowGap || o+chunkSlack-start > windowBytes {
			break
		}
		end = o
	}
	end = min(end+chunkSlack, int(seg.size))
	if start >= end {
		// An offset at or past the end of the segment (a truncated
		// file, a corrupt index).
		return fmt.Errorf("block %s: chunk at %d past the end of %s (%d bytes)", b.meta.ULID, start, seg.name, seg.size)
	}
	rc, err := b.bkt.GetRange(b.ctx, seg.name, int64(start), int64(end-start))
	if err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", seg.name, start, end, err)
	}
	defer rc.Close()
	var buf []byte
	if w.recycle {
		buf = w.buffer(end - start)
	} else {
		buf = make([]byte, end-start)
	}
	if _, err := io.ReadFull(rc, buf); err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", seg.name, start, end, err)
	}
	if w.recycle && p.win != nil {
		w.retired = append(w.retired, p.win)
	}
	p.win, p.off = buf, start
	return nil
}

// parseChunk decodes a chunk at the start of buf: uvarint length, encoding
// byte, data, CRC32. ok is false when buf ends before the chunk does.
func parseChunk(buf []byte) (enc chunkenc.Encoding, data []byte, ok bool, err error) {
	l, n := binary.Uvarint(buf)
	if n == 0 {
		return 0, nil, false, nil
	}
	if n < 0 || l > math.MaxInt32 {
		// Compared as uint64: a corrupt length must not overflow into
		// a slice bound that passes the check below.
		return 0, nil, false, fmt.Errorf("bad length")
	}
	total := n + 1 + int(l) + crc32.Size
	if total > len(buf) {
		return 0, nil, false, nil
	}
	body := buf[n:total]
	data = body[1 : 1+int(l)]
	if crc32.Checksum(body[:1+int(l)], castagnoli) != binary.BigEndian.Uint32(body[1+int(l):]) {
		return 0, nil, false, fmt.Errorf("checksum mismatch")
	}
	return chunkenc.Encoding(body[0]), data, true, nil
}
