package promql_test

import (
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

type hsample struct {
	t  int64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

func (s hsample) T() int64                      { return s.t }
func (s hsample) ST() int64                     { return 0 }
func (s hsample) F() float64                    { return 0 }
func (s hsample) H() *histogram.Histogram       { return s.h }
func (s hsample) FH() *histogram.FloatHistogram { return s.fh }
func (s hsample) Type() chunkenc.ValueType {
	if s.h != nil {
		return chunkenc.ValHistogram
	}
	return chunkenc.ValFloatHistogram
}
func (s hsample) Copy() chunks.Sample { return s }
