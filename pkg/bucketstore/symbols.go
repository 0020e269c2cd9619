package bucketstore

import (
	"context"

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

// maxCachedSymbols bounds one request's cache per block: values unique to
// each series (pod names) would only fill it.
const maxCachedSymbols = 1 << 16

// seriesReader reads series entries of one block's index for one request.
type seriesReader struct {
	ir    *index.Reader
	src   index.ByteSlice
	syms  *index.Symbols // nil: read through ir
	cache map[uint32]string
	dec   index.Decoder
}

func newSeriesReader(ir *index.Reader, src index.ByteSlice, syms *index.Symbols) *seriesReader {
	r := &seriesReader{ir: ir, src: src, syms: syms}
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
	// Series of a version 2 index are 16-byte aligned; the ID is the
	// offset divided by 16.
	d := encoding.NewDecbufUvarintAt(r.src, int(id)*16, castagnoli)
	if err := d.Err(); err != nil {
		return err
	}
	return r.dec.Series(d.Get(), sb, chks)
}

// openSymbols reads the symbol table's offsets of a version 2 index, or
// returns nil for other versions (read through the index reader).
func openSymbols(ir *index.Reader, src index.ByteSlice) (*index.Symbols, error) {
	if ir.Version() != index.FormatV2 {
		return nil, nil
	}
	toc, err := index.NewTOCFromByteSlice(src)
	if err != nil {
		return nil, err
	}
	return index.NewSymbols(src, ir.Version(), int(toc.Symbols))
}
