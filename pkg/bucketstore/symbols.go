package bucketstore

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/index"
)

// Prometheus' index reader finds a label value by walking up to 31 symbols
// from the nearest of every 32nd offset, and copies it, for every label of
// every series it reads: on a request over every series of a block that was
// the larger part of reading its index. A request's series share few
// distinct values (jobs, instances, metric names), so seriesReader decodes
// series itself and keeps the values it looked up for the rest of the
// request.

// maxCachedSymbols bounds one request's cache per block (about 200 KiB):
// the values series share come first and stay; values unique to each series
// (pod names) would only fill it.
const maxCachedSymbols = 4096

// seriesReader reads series entries of one block's index for one request.
type seriesReader struct {
	ir    *index.Reader
	src   index.ByteSlice
	syms  *index.Symbols // nil: read through ir
	cache map[uint32]string
	dec   index.Decoder
	// st is what index.Reader gives its builder: labels built with
	// -tags dedupelabels need one.
	st *labels.SymbolTable
}

func newSeriesReader(ir *index.Reader, src index.ByteSlice, syms *index.Symbols) *seriesReader {
	r := &seriesReader{ir: ir, src: src, syms: syms, st: labels.NewSymbolTable()}
	if syms != nil {
		r.cache = map[uint32]string{}
		r.dec.LookupSymbol = r.lookup
	}
	return r
}

func (r *seriesReader) lookup(_ context.Context, o uint32) (string, error) {
	if s, ok := r.cache[o]; ok {
		return s, nil
	}
	s, err := r.syms.Lookup(o)
	if err == nil && len(r.cache) < maxCachedSymbols {
		r.cache[o] = s
	}
	return s, err
}

// series reads series id's labels into sb and its chunk metas into chks,
// as index.Reader.Series does.
func (r *seriesReader) series(id storage.SeriesRef, sb *labels.ScratchBuilder, chks *[]chunks.Meta) error {
	if r.syms == nil {
		return r.ir.Series(id, sb, chks)
	}
	// Series after version 1 are 16-byte aligned; the ID is the offset
	// divided by 16.
	d := encoding.NewDecbufUvarintAt(r.src, int(id)*16, castagnoli)
	if err := d.Err(); err != nil {
		return err
	}
	sb.SetSymbolTable(r.st)
	if err := r.dec.Series(d.Get(), sb, chks); err != nil {
		return fmt.Errorf("read series: %w", err)
	}
	return nil
}

// openSymbols reads the symbol table's offsets of an index after version 1
// (laid out as version 2), or returns nil for version 1 (read through the
// index reader).
func openSymbols(ir *index.Reader, src index.ByteSlice) (*index.Symbols, error) {
	if ir.Version() == index.FormatV1 {
		return nil, nil
	}
	toc, err := index.NewTOCFromByteSlice(src)
	if err != nil {
		return nil, err
	}
	return index.NewSymbols(src, ir.Version(), int(toc.Symbols))
}
