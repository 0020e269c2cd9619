package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
)

// Listing is what a bucket holds, block by block. A block is in exactly one
// of Metas, Partial, Corrupt and Failed; its marks are listed on the side.
type Listing struct {
	// Metas of the complete blocks (meta.json present and valid), marked or not.
	Metas map[ulid.ULID]*Meta
	// Partial blocks have no meta.json: an upload in progress or cut off, or
	// a delete in progress.
	Partial map[ulid.ULID]bool
	// Corrupt blocks have a meta.json that cannot be used, with the reason.
	Corrupt map[ulid.ULID]error
	// Failed blocks could not be read because the bucket failed, so their
	// state is unknown: a caller that acts on the absence of blocks (the
	// compactor) must retry rather than treat them as gone.
	Failed map[ulid.ULID]error
	// DeletionMarks, NoCompactMarks and NoDownsampleMarks of the blocks that
	// have them.
	DeletionMarks     map[ulid.ULID]*DeletionMark
	NoCompactMarks    map[ulid.ULID]*NoCompactMark
	NoDownsampleMarks map[ulid.ULID]*NoDownsampleMark
	// BadMarks are marks that are not valid JSON (a cut-off upload) or of an
	// unknown version. Like Thanos, the block is treated as unmarked: a mark
	// without a time must not make a block deletable at once.
	BadMarks map[ulid.ULID]error
}

// Lister lists the blocks of a bucket. meta.json files are immutable, so it
// remembers the ones it has read and fetches only new blocks' metas on the
// next listing: a sync of an unchanged bucket costs one LIST per block, not
// a GET per block.
type Lister struct {
	bkt         objstore.InstrumentedBucketReader
	concurrency int

	mu    sync.Mutex
	metas map[ulid.ULID]*Meta
	// cacheDir, when set, keeps the metas on disk too, so that a restarted
	// process does not GET every meta.json again.
	cacheDir string
}

// WithMetaCache keeps the metas read in dir/<ULID>.json as well: a
// restarted store gateway or compactor then needs one LIST per block, not
// also a GET. Metas of blocks gone from the bucket are removed from dir.
func (l *Lister) WithMetaCache(dir string) *Lister {
	l.cacheDir = dir
	return l
}

func (l *Lister) cachePath(id ulid.ULID) string {
	return filepath.Join(l.cacheDir, id.String()+".json")
}

// cachedMeta returns the meta of id from the disk cache, if valid.
func (l *Lister) cachedMeta(id ulid.ULID) *Meta {
	if l.cacheDir == "" {
		return nil
	}
	f, err := os.Open(l.cachePath(id))
	if err != nil {
		return nil
	}
	defer f.Close()
	m, err := DecodeMeta(f)
	if err != nil || m.ULID != id {
		return nil
	}
	return m
}

// cacheMeta writes m to the disk cache; failing to is not an error, only a
// slower restart.
func (l *Lister) cacheMeta(m *Meta) {
	if l.cacheDir == "" {
		return
	}
	if err := os.MkdirAll(l.cacheDir, 0o755); err != nil {
		return
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return
	}
	tmp := l.cachePath(m.ULID) + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return
	}
	_ = os.Rename(tmp, l.cachePath(m.ULID))
}

// NewLister returns a Lister fetching up to concurrency blocks at a time.
func NewLister(bkt objstore.InstrumentedBucketReader, concurrency int) *Lister {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Lister{bkt: bkt, concurrency: concurrency, metas: map[ulid.ULID]*Meta{}}
}

// List lists every block of the bucket. Entries that are not block
// directories are ignored. A failure to read one block is recorded in the
// listing; only a failure to list the bucket itself is an error.
func (l *Lister) List(ctx context.Context) (*Listing, error) {
	var ids []ulid.ULID
	err := l.bkt.Iter(ctx, "", func(name string) error {
		id, err := ulid.Parse(strings.TrimSuffix(name, "/"))
		if err == nil && strings.HasSuffix(name, "/") {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list bucket: %w", err)
	}

	res := &Listing{
		Metas:             map[ulid.ULID]*Meta{},
		Partial:           map[ulid.ULID]bool{},
		Corrupt:           map[ulid.ULID]error{},
		Failed:            map[ulid.ULID]error{},
		DeletionMarks:     map[ulid.ULID]*DeletionMark{},
		NoCompactMarks:    map[ulid.ULID]*NoCompactMark{},
		NoDownsampleMarks: map[ulid.ULID]*NoDownsampleMark{},
		BadMarks:          map[ulid.ULID]error{},
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.concurrency)
	for _, id := range ids {
		g.Go(func() error {
			st := l.inspect(gctx, id)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case st.failed != nil:
				res.Failed[id] = st.failed
			case st.corrupt != nil:
				res.Corrupt[id] = st.corrupt
			case st.meta == nil:
				res.Partial[id] = true
			default:
				res.Metas[id] = st.meta
			}
			if st.deletion != nil {
				res.DeletionMarks[id] = st.deletion
			}
			if st.noCompact != nil {
				res.NoCompactMarks[id] = st.noCompact
			}
			if st.noDownsample != nil {
				res.NoDownsampleMarks[id] = st.noDownsample
			}
			if st.badMark != nil {
				res.BadMarks[id] = st.badMark
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("list bucket: %w", err)
	}

	// Forget metas of blocks that are gone so memory follows the bucket.
	l.mu.Lock()
	for id := range l.metas {
		if _, ok := res.Metas[id]; !ok {
			delete(l.metas, id)
		}
	}
	l.mu.Unlock()
	if l.cacheDir != "" {
		entries, _ := os.ReadDir(l.cacheDir)
		for _, e := range entries {
			id, err := ulid.Parse(strings.TrimSuffix(e.Name(), ".json"))
			if err == nil && res.Metas[id] == nil && !res.Partial[id] && res.Failed[id] == nil {
				_ = os.Remove(filepath.Join(l.cacheDir, e.Name()))
			}
		}
	}
	return res, nil
}

type blockState struct {
	meta         *Meta
	corrupt      error
	failed       error
	deletion     *DeletionMark
	noCompact    *NoCompactMark
	noDownsample *NoDownsampleMark
	badMark      error
}

// readMark reads the mark M of block id when the block's listing shows one.
// An invalid mark is recorded in st and otherwise ignored.
func readMark[M marker](ctx context.Context, bkt objstore.BucketReader, id ulid.ULID, objects map[string]bool, st *blockState) (*M, error) {
	var m M
	if !objects[m.filename()] {
		return nil, nil
	}
	got, err := ReadMarker[M](ctx, bkt, id)
	switch {
	case err == nil:
		return got, nil
	case errors.Is(err, ErrMarkerNotFound):
		return nil, nil // removed since the listing.
	case errors.Is(err, ErrUnmarshalMarker) || errors.Is(err, errMarkerVersion):
		st.badMark = err
		return nil, nil
	}
	return nil, err
}

func (l *Lister) inspect(ctx context.Context, id ulid.ULID) blockState {
	var st blockState
	objects := map[string]bool{}
	if err := l.bkt.Iter(ctx, id.String()+"/", func(name string) error {
		objects[strings.TrimPrefix(name, id.String()+"/")] = true
		return nil
	}); err != nil {
		st.failed = fmt.Errorf("list objects of block %s: %w", id, err)
		return st
	}
	var err error
	if st.deletion, err = readMark[DeletionMark](ctx, l.bkt, id, objects, &st); err != nil {
		st.failed = err
		return st
	}
	if st.noCompact, err = readMark[NoCompactMark](ctx, l.bkt, id, objects, &st); err != nil {
		st.failed = err
		return st
	}
	if st.noDownsample, err = readMark[NoDownsampleMark](ctx, l.bkt, id, objects, &st); err != nil {
		st.failed = err
		return st
	}
	if !objects[MetaFilename] {
		return st
	}
	l.mu.Lock()
	m, ok := l.metas[id]
	l.mu.Unlock()
	if ok {
		st.meta = m
		return st
	}
	if m := l.cachedMeta(id); m != nil {
		l.mu.Lock()
		l.metas[id] = m
		l.mu.Unlock()
		st.meta = m
		return st
	}
	m, err = l.readMeta(ctx, id)
	switch {
	case errors.Is(err, errMetaGone):
		return st // deleted between LIST and GET: partial now.
	case errors.Is(err, errMetaCorrupt):
		st.corrupt = err
		return st
	case err != nil:
		st.failed = err
		return st
	}
	l.mu.Lock()
	l.metas[id] = m
	l.mu.Unlock()
	l.cacheMeta(m)
	st.meta = m
	return st
}

var (
	errMetaGone    = errors.New("meta.json not found")
	errMetaCorrupt = errors.New("corrupt meta.json")
)

// readMeta tells a bucket failure (retry) from a meta.json that is there
// but unusable (corrupt).
func (l *Lister) readMeta(ctx context.Context, id ulid.ULID) (*Meta, error) {
	name := id.String() + "/" + MetaFilename
	r, err := l.bkt.ReaderWithExpectedErrs(l.bkt.IsObjNotFoundErr).Get(ctx, name)
	if err != nil {
		if l.bkt.IsObjNotFoundErr(err) {
			return nil, errMetaGone
		}
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	m, err := DecodeMeta(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("block %s: %w: %w", id, errMetaCorrupt, err)
	}
	if m.ULID != id {
		return nil, fmt.Errorf("block %s: %w: it names block %s", id, errMetaCorrupt, m.ULID)
	}
	return m, nil
}
