package bucketstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The index header of a block is what Prometheus' index reader reads to
// open the index: the table of contents, the symbols and the postings
// offset table. It is kept in --data-dir as the pages read then, so that
// after a restart a block opens without a request to the bucket.
//
// File format: repeated records of page (int64), end (int64), length
// (uint32) and the bytes, all little endian.

func headerPath(dir, block string) string { return filepath.Join(dir, block+".index-header") }

// writeHeader saves the cached pages of object as the block's header.
func writeHeader(dir, block string, entries []pageEntry) error {
	if dir == "" || len(entries) == 0 {
		return nil
	}
	path := headerPath(dir, block)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write index header of block %s: %w", block, err)
	}
	w := bufio.NewWriter(f)
	var rec [20]byte
	for _, e := range entries {
		binary.LittleEndian.PutUint64(rec[0:], uint64(e.key.page))
		binary.LittleEndian.PutUint64(rec[8:], uint64(e.key.end))
		binary.LittleEndian.PutUint32(rec[16:], uint32(len(e.data)))
		w.Write(rec[:])
		w.Write(e.data)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write index header of block %s: %w", block, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loadHeader puts a saved header's pages of object into the cache. A
// missing header is no error; a damaged one is removed.
func loadHeader(dir, block, object string, c *pageCache) error {
	if dir == "" {
		return nil
	}
	path := headerPath(dir, block)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var rec [20]byte
	var entries []pageEntry
	for {
		if _, err := io.ReadFull(r, rec[:]); err == io.EOF {
			break
		} else if err != nil {
			os.Remove(path)
			return fmt.Errorf("damaged index header %s (removed): %w", path, err)
		}
		data := make([]byte, binary.LittleEndian.Uint32(rec[16:]))
		if _, err := io.ReadFull(r, data); err != nil {
			os.Remove(path)
			return fmt.Errorf("damaged index header %s (removed): %w", path, err)
		}
		entries = append(entries, pageEntry{key: pageKey{object: object, page: int64(binary.LittleEndian.Uint64(rec[0:])), end: int64(binary.LittleEndian.Uint64(rec[8:]))}, data: data})
	}
	for _, e := range entries {
		c.put(e.key, e.data)
	}
	return nil
}
