package bucketstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/pkg/block"
)

// bucketBlock is one block served from the bucket.
type bucketBlock struct {
	meta    *block.Meta
	ext     labels.Labels
	bkt     objstore.BucketReader
	ctx     context.Context
	chunks  *pageCache
	dataDir string

	mu       sync.Mutex
	ir       *index.Reader
	irSource *indexFile
	syms     *index.Symbols // nil: series are read through ir
	segments []*objectReader
	// openErr is why the index last failed to open, at openErrAt: for
	// indexRetry requests get it without fetching the header again.
	openErr   error
	openErrAt time.Time
}

// indexRetry is how long a block whose index failed to open is not tried
// again: a corrupt header fetched by every request would be a request storm.
const indexRetry = time.Minute

func newBucketBlock(ctx context.Context, m *block.Meta, bkt objstore.BucketReader, chunkPages *pageCache, dataDir string) *bucketBlock {
	return &bucketBlock{meta: m, ext: m.LabelSet(), bkt: bkt, ctx: ctx, chunks: chunkPages, dataDir: dataDir}
}

// objectSize is the object's size from meta.json, or from the bucket.
func (b *bucketBlock) objectSize(rel string) (int64, error) {
	for _, f := range b.meta.Thanos.Files {
		if f.RelPath == rel && f.SizeBytes > 0 {
			return f.SizeBytes, nil
		}
	}
	attrs, err := b.bkt.Attributes(b.ctx, path.Join(b.meta.ULID.String(), rel))
	if err != nil {
		return 0, fmt.Errorf("block %s: object %s: %w", b.meta.ULID, rel, err)
	}
	return attrs.Size, nil
}

// unmapDelay is how long a dropped block's index stays mapped.
const unmapDelay = 10 * time.Minute

// index opens the block's index on first use: Prometheus' index reader over
// the block's sparse local copy of the index (see indexFile).
func (b *bucketBlock) index() (*index.Reader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ir != nil {
		return b.ir, nil
	}
	if b.openErr != nil && time.Since(b.openErrAt) < indexRetry {
		return nil, b.openErr
	}
	ir, err := b.openIndex()
	if err != nil {
		b.openErr, b.openErrAt = err, time.Now()
		return nil, err
	}
	b.openErr = nil
	return ir, nil
}

// openIndex opens the index; b.mu is held.
func (b *bucketBlock) openIndex() (*index.Reader, error) {
	size, err := b.objectSize(block.IndexFilename)
	if err != nil {
		return nil, err
	}
	id := b.meta.ULID.String()
	// Earlier versions kept the pages read at open in this file.
	_ = os.Remove(filepath.Join(b.dataDir, id+".index-header"))
	var (
		src *indexFile
		ir  *index.Reader
	)
	for {
		src, err = openIndexFile(b.ctx, b.bkt, path.Join(id, block.IndexFilename), size, b.dataDir, id)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.meta.ULID, err)
		}
		ir, err = index.NewReader(src, index.DecodePostingsRaw)
		if err == nil {
			break
		}
		if rerr := src.Err(); rerr != nil {
			err = rerr
		}
		loaded := src.loaded
		_ = src.close(true)
		if !loaded {
			return nil, fmt.Errorf("block %s: open index: %w", b.meta.ULID, err)
		}
		// The kept copy is damaged (a crash before its pages reached
		// the disk): start it over from the bucket.
	}
	// What opening read is the header: keep its pages for restarts. Best
	// effort: without it a restart only costs requests.
	_ = src.saveState()
	b.ir, b.irSource = ir, src
	// Without the symbol table's offsets series are read through ir,
	// only slower.
	b.syms, _ = openSymbols(ir, src)
	// The mapping goes some time after the block does: requests hold the
	// block while they read its index, but Prometheus' reader hands out
	// label values that point into the mapping, which a finished request
	// may have left in a buffer a little longer.
	runtime.AddCleanup(b, func(x *indexFile) {
		time.AfterFunc(unmapDelay, func() { _ = x.close(false) })
	}, src)
	return ir, nil
}

// seriesReader opens the index and returns a reader of its series for one
// request.
func (b *bucketBlock) seriesReader() (*seriesReader, error) {
	ir, err := b.index()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return newSeriesReader(ir, b.irSource, b.syms), nil
}

// indexErr is the read error behind a failed index operation, if any.
func (b *bucketBlock) indexErr(err error) error {
	b.mu.Lock()
	src := b.irSource
	b.mu.Unlock()
	if src != nil {
		if rerr := src.Err(); rerr != nil {
			return fmt.Errorf("block %s: %w", b.meta.ULID, rerr)
		}
	}
	if strings.HasPrefix(err.Error(), "block "+b.meta.ULID.String()) {
		return err // named already (index() names its block)
	}
	return fmt.Errorf("block %s: %w", b.meta.ULID, err)
}

// segment returns the reader of chunk segment file i (0 is chunks/000001).
func (b *bucketBlock) segment(i int) (*objectReader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.segments == nil {
		var segs []string
		for _, f := range b.meta.Thanos.Files {
			if len(f.RelPath) > len(block.ChunksDirname) && f.RelPath[:len(block.ChunksDirname)+1] == block.ChunksDirname+"/" {
				segs = append(segs, f.RelPath)
			}
		}
		if len(segs) == 0 {
			if err := b.bkt.Iter(b.ctx, b.meta.ULID.String()+"/"+block.ChunksDirname+"/", func(name string) error {
				segs = append(segs, name[len(b.meta.ULID.String())+1:])
				return nil
			}); err != nil {
				return nil, fmt.Errorf("block %s: list chunk files: %w", b.meta.ULID, err)
			}
		}
		sort.Strings(segs)
		b.segments = make([]*objectReader, len(segs))
		for j, rel := range segs {
			b.segments[j] = &objectReader{ctx: b.ctx, bkt: b.bkt, name: path.Join(b.meta.ULID.String(), rel), size: -1, cache: b.chunks}
			_ = rel
		}
	}
	if i >= len(b.segments) {
		return nil, fmt.Errorf("block %s: chunk segment %d does not exist", b.meta.ULID, i+1)
	}
	seg := b.segments[i]
	if seg.size < 0 {
		size, err := b.objectSize(seg.name[len(b.meta.ULID.String())+1:])
		if err != nil {
			return nil, err
		}
		seg.size = size
	}
	return seg, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunk reads one chunk: uvarint length, encoding byte, data, CRC32.
func (b *bucketBlock) chunk(ref chunks.ChunkRef) (chunkenc.Encoding, []byte, error) {
	seq, off := chunks.BlockChunkRef(ref).Unpack()
	seg, err := b.segment(seq)
	if err != nil {
		return 0, nil, err
	}
	head := seg.Range(off, min(off+binary.MaxVarintLen32+1, seg.Len()))
	if err := seg.Err(); err != nil {
		return 0, nil, fmt.Errorf("block %s: %w", b.meta.ULID, err)
	}
	l, n := binary.Uvarint(head)
	if n <= 0 || l > uint64(seg.Len()) || off+n+1+int(l)+crc32.Size > seg.Len() {
		return 0, nil, fmt.Errorf("block %s: chunk %d in %s: bad length", b.meta.ULID, off, seg.name)
	}
	body := seg.Range(off+n, off+n+1+int(l)+crc32.Size)
	if err := seg.Err(); err != nil {
		return 0, nil, fmt.Errorf("block %s: %w", b.meta.ULID, err)
	}
	data := body[1 : 1+int(l)]
	if crc32.Checksum(body[:1+int(l)], castagnoli) != binary.BigEndian.Uint32(body[1+int(l):]) {
		return 0, nil, fmt.Errorf("block %s: chunk %d in %s: checksum mismatch", b.meta.ULID, off, seg.name)
	}
	return chunkenc.Encoding(body[0]), data, nil
}
