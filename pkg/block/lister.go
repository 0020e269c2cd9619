package block

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
)

// Listing is what a bucket holds, block by block.
type Listing struct {
	// Metas of the complete blocks (meta.json present and valid), marked or not.
	Metas map[ulid.ULID]*Meta
	// Partial blocks have no meta.json: an upload in progress or cut off.
	Partial map[ulid.ULID]bool
	// Corrupt blocks have a meta.json that cannot be read, with the reason.
	Corrupt map[ulid.ULID]error
	// DeletionMarks and NoCompactMarks of the blocks that have them.
	DeletionMarks  map[ulid.ULID]*DeletionMark
	NoCompactMarks map[ulid.ULID]*NoCompactMark
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
		Metas:          map[ulid.ULID]*Meta{},
		Partial:        map[ulid.ULID]bool{},
		Corrupt:        map[ulid.ULID]error{},
		DeletionMarks:  map[ulid.ULID]*DeletionMark{},
		NoCompactMarks: map[ulid.ULID]*NoCompactMark{},
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
			case st.err != nil:
				res.Corrupt[id] = st.err
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
	return res, nil
}

type blockState struct {
	meta      *Meta
	err       error
	deletion  *DeletionMark
	noCompact *NoCompactMark
}

func (l *Lister) inspect(ctx context.Context, id ulid.ULID) blockState {
	var st blockState
	objects := map[string]bool{}
	if err := l.bkt.Iter(ctx, id.String()+"/", func(name string) error {
		objects[strings.TrimPrefix(name, id.String()+"/")] = true
		return nil
	}); err != nil {
		st.err = fmt.Errorf("list objects of block %s: %w", id, err)
		return st
	}
	if objects[DeletionMarkFilename] {
		m, err := ReadMarker[DeletionMark](ctx, l.bkt.ReaderWithExpectedErrs(l.bkt.IsObjNotFoundErr), id)
		if err == nil {
			st.deletion = m
		} else if !errors.Is(err, ErrMarkerNotFound) {
			// A half-written mark still means someone decided to delete
			// the block: treat it as marked now.
			st.deletion = &DeletionMark{ID: id, Version: markerVersion1}
		}
	}
	if objects[NoCompactMarkFilename] {
		m, err := ReadMarker[NoCompactMark](ctx, l.bkt.ReaderWithExpectedErrs(l.bkt.IsObjNotFoundErr), id)
		if err == nil {
			st.noCompact = m
		} else if !errors.Is(err, ErrMarkerNotFound) {
			st.noCompact = &NoCompactMark{ID: id, Version: markerVersion1, Reason: ManualNoCompactReason, Details: err.Error()}
		}
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
	m, err := ReadMetaFromBucket(ctx, l.bkt.ReaderWithExpectedErrs(l.bkt.IsObjNotFoundErr), id)
	if err != nil {
		if l.bkt.IsObjNotFoundErr(errors.Unwrap(err)) {
			return st // deleted between LIST and GET: partial now.
		}
		st.err = err
		return st
	}
	if m.ULID != id {
		st.err = fmt.Errorf("block %s: meta.json names block %s", id, m.ULID)
		return st
	}
	l.mu.Lock()
	l.metas[id] = m
	l.mu.Unlock()
	st.meta = m
	return st
}
