package compact

import (
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

type chunksSample struct {
	t int64
	f float64
}

func (s chunksSample) T() int64                      { return s.t }
func (s chunksSample) ST() int64                     { return 0 }
func (s chunksSample) F() float64                    { return s.f }
func (s chunksSample) H() *histogram.Histogram       { return nil }
func (s chunksSample) FH() *histogram.FloatHistogram { return nil }
func (s chunksSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s chunksSample) Copy() chunks.Sample           { return s }

func listSeries(l labels.Labels, smp []chunksSample) storage.Series {
	s := make([]chunks.Sample, len(smp))
	for i := range smp {
		s[i] = smp[i]
	}
	return storage.NewListSeries(l, s)
}
