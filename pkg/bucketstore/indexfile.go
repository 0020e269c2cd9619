package bucketstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/thanos-io/objstore"
)

// indexFile is a block's index as Prometheus' index reader sees it: a
// sparse local copy in --data-dir, memory-mapped, whose pages are fetched
// from the bucket with ranged reads the first time they are read.
//
// Opening the reader reads the table of contents, the symbols and the
// postings offset table (Thanos' "index header"); queries then read
// postings lists and series entries. Nothing else of the index is ever
// downloaded, the pages live in the kernel's page cache rather than the Go
// heap, and the pages of the header are kept for restarts. The reader's
// symbol lookups ask for the whole file as one slice and then read only
// the symbols section: that one range is served without fetching
// anything, as those pages are present once the reader is open.
type indexFile struct {
	ctx  context.Context
	bkt  objstore.BucketReader
	name string // object name in the bucket
	size int
	path string // the local copy
	f    *os.File
	data []byte // f, mapped

	mu      sync.Mutex
	present []bool // per page of pageSize bytes
	loaded  bool   // pages were trusted from the state file
	dirty   bool   // pages were fetched since the state was saved
	err     error
}

// indexStateMagic starts the file that lists the pages present in a local
// index copy.
var indexStateMagic = []byte("strata-index-pages-v1\n")

func indexPath(dir, block string) string { return filepath.Join(dir, block+".index") }

// openIndexFile maps the local copy of object (size bytes) in dir, creating
// it sparse when missing or of another size, and trusting the pages listed
// in its state file.
func openIndexFile(ctx context.Context, bkt objstore.BucketReader, object string, size int64, dir, block string) (*indexFile, error) {
	if size <= 0 {
		return nil, fmt.Errorf("index %s is empty", object)
	}
	path := indexPath(dir, block)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open local index copy: %w", err)
	}
	x := &indexFile{ctx: ctx, bkt: bkt, name: object, size: int(size), path: path, f: f,
		present: make([]bool, (size+pageSize-1)/pageSize)}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat local index copy: %w", err)
	}
	if st.Size() == size {
		x.loadState()
	} else {
		os.Remove(path + ".pages")
		if err := f.Truncate(0); err == nil {
			err = f.Truncate(size)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("size local index copy: %w", err)
		}
	}
	x.data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map local index copy: %w", err)
	}
	return x, nil
}

// loadState marks the pages its state file lists as present; a damaged or
// foreign state file is ignored and removed (the pages are fetched again).
func (x *indexFile) loadState() {
	b, err := os.ReadFile(x.path + ".pages")
	if err != nil {
		return
	}
	rest, ok := bytes.CutPrefix(b, indexStateMagic)
	if !ok || len(rest) != 8+len(x.present) || binary.LittleEndian.Uint64(rest) != uint64(x.size) {
		os.Remove(x.path + ".pages")
		return
	}
	for i, v := range rest[8:] {
		x.present[i] = v == 1
	}
	x.loaded = true
}

// saveState writes the list of present pages if pages were fetched since
// it was last written. It does not wait for the pages to reach the disk (a
// thousand blocks would take seconds to sync): after a machine crash a
// listed page may hold zeros, which the index's checksums catch when the
// reader opens (header sections) or reads (postings, series); bucketBlock
// then starts the copy over.
func (x *indexFile) saveState() error {
	x.mu.Lock()
	if !x.dirty {
		x.mu.Unlock()
		return nil
	}
	x.dirty = false
	b := make([]byte, 0, len(indexStateMagic)+8+len(x.present))
	b = append(b, indexStateMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(x.size))
	for _, p := range x.present {
		if p {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	x.mu.Unlock()
	tmp := x.path + ".pages.tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, x.path+".pages")
}

func (x *indexFile) Len() int { return x.size }

// Err is the first read error, if any.
func (x *indexFile) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *indexFile) fail(err error) {
	x.mu.Lock()
	if x.err == nil {
		x.err = err
	}
	x.mu.Unlock()
}

// Range returns bytes [start, end) of the index, fetching missing pages with
// as few ranged reads as their runs allow. A read that fails returns zeros
// and records the error: the index decoders then fail their checksums, and
// callers report the recorded error, which names the object.
func (x *indexFile) Range(start, end int) []byte {
	if start < 0 || end > x.size || start > end {
		x.fail(fmt.Errorf("read %s: range [%d, %d) outside the object's %d bytes", x.name, start, end, x.size))
		return make([]byte, max(end-start, 0))
	}
	if start == end {
		return []byte{}
	}
	if start == 0 && end == x.size {
		// The symbol table's view of the whole file (see indexFile).
		return x.data
	}
	if err := x.ensure(start, end); err != nil {
		x.fail(err)
		return make([]byte, end-start)
	}
	return x.data[start:end:end]
}

// ensure fetches the missing pages of [start, end).
func (x *indexFile) ensure(start, end int) error {
	first, last := start/pageSize, (end-1)/pageSize
	x.mu.Lock()
	defer x.mu.Unlock()
	for p := first; p <= last; {
		if x.present[p] {
			p++
			continue
		}
		q := p
		for q+1 <= last && !x.present[q+1] {
			q++
		}
		if err := x.fetch(p, q); err != nil {
			return err
		}
		p = q + 1
	}
	return nil
}

// fetch reads pages [from, to] in one request into the local copy.
func (x *indexFile) fetch(from, to int) error {
	off := from * pageSize
	length := min((to+1)*pageSize, x.size) - off
	rc, err := x.bkt.GetRange(x.ctx, x.name, int64(off), int64(length))
	if err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", x.name, off, off+length, err)
	}
	defer rc.Close()
	buf := make([]byte, length)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", x.name, off, off+length, err)
	}
	if _, err := x.f.WriteAt(buf, int64(off)); err != nil {
		return fmt.Errorf("write local index copy %s: %w", x.path, err)
	}
	for p := from; p <= to; p++ {
		x.present[p] = true
	}
	x.dirty = true
	return nil
}

// close unmaps and closes the local copy; remove also deletes it.
func (x *indexFile) close(remove bool) error {
	err := errors.Join(syscall.Munmap(x.data), x.f.Close())
	if remove {
		os.Remove(x.path)
		os.Remove(x.path + ".pages")
	}
	return err
}
