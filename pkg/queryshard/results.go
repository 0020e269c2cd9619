package queryshard

import (
	"context"
	"math"
	"sort"
	"strconv"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// resultLabel names the selector that stands for a sharded part's results
// in the query evaluated over them. Its matcher never reaches a store; a
// query that names it itself is not sharded. It is short because the
// selector takes the place of the part's text (see outerQuery).
const resultLabel = "__s"

// shardLabel tells apart the shards' results of an aggregation without
// grouping (all without labels) until the combining aggregation drops it.
const shardLabel = "__strata_shard__"

// resultSeries is a part's result series as the outer query reads it:
// a sample at every step the part had one, and a stale marker at the first
// step of each gap, so that the lookback never carries a value on to a step
// where the part had none.
type resultSeries struct {
	lset    labels.Labels
	samples []sample
}

type sample struct {
	t  int64
	f  float64
	fh *histogram.FloatHistogram
}

var staleNaN = math.Float64frombits(value.StaleNaN)

// newResultSeries turns a range query's series into resultSeries over the
// steps start, start+step, ..., end.
func newResultSeries(s promql.Series, shard int, ungrouped bool, start, end, step int64) resultSeries {
	lset := s.Metric
	if ungrouped {
		lset = labels.NewBuilder(lset).Set(shardLabel, strconv.Itoa(shard)).Labels()
	}
	out := resultSeries{lset: lset, samples: make([]sample, 0, len(s.Floats)+len(s.Histograms)+1)}
	fs, hs := s.Floats, s.Histograms
	next := start // the step expected next
	for len(fs) > 0 || len(hs) > 0 {
		var smp sample
		if len(hs) == 0 || (len(fs) > 0 && fs[0].T < hs[0].T) {
			smp = sample{t: fs[0].T, f: fs[0].F}
			fs = fs[1:]
		} else {
			// A copy: the engine's pools keep the point slices of a
			// closed query.
			smp = sample{t: hs[0].T, fh: hs[0].H.Copy()}
			hs = hs[1:]
		}
		if smp.t > next && len(out.samples) > 0 {
			out.samples = append(out.samples, sample{t: next, f: staleNaN})
		}
		out.samples = append(out.samples, smp)
		next = smp.t + step
	}
	if len(out.samples) > 0 && next <= end {
		out.samples = append(out.samples, sample{t: next, f: staleNaN})
	}
	return out
}

// resultQueryable answers the selectors of sharded parts from their
// results and every other selector from the stores.
type resultQueryable struct {
	storage.Queryable
	results [][]resultSeries
}

func (q resultQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return resultQuerier{Querier: inner, results: q.results}, nil
}

type resultQuerier struct {
	storage.Querier
	results [][]resultSeries
}

func (q resultQuerier) Select(ctx context.Context, sorted bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	for _, m := range ms {
		if m.Name != resultLabel {
			continue
		}
		i, err := strconv.Atoi(m.Value)
		if err != nil || i < 0 || i >= len(q.results) {
			return storage.ErrSeriesSet(errUnknownPart)
		}
		return &resultSet{series: q.results[i], i: -1}
	}
	return q.Querier.Select(ctx, sorted, hints, ms...)
}

type errString string

func (e errString) Error() string { return string(e) }

const errUnknownPart = errString("sharded query: selector of an unknown part")

// sortResults sorts a part's series by labels, as a selector's are.
func sortResults(rs []resultSeries) {
	sort.Slice(rs, func(i, j int) bool { return labels.Compare(rs[i].lset, rs[j].lset) < 0 })
}

type resultSet struct {
	series []resultSeries
	i      int
}

func (s *resultSet) Next() bool {
	s.i++
	return s.i < len(s.series)
}

func (s *resultSet) At() storage.Series                { return &s.series[s.i] }
func (s *resultSet) Err() error                        { return nil }
func (s *resultSet) Warnings() annotations.Annotations { return nil }

func (s *resultSeries) Labels() labels.Labels { return s.lset }

func (s *resultSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return &resultIterator{samples: s.samples, i: -1}
}

type resultIterator struct {
	samples []sample
	i       int
}

func (it *resultIterator) typ() chunkenc.ValueType {
	if it.i >= len(it.samples) {
		return chunkenc.ValNone
	}
	if it.samples[it.i].fh != nil {
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

func (it *resultIterator) Next() chunkenc.ValueType {
	if it.i < len(it.samples) {
		it.i++
	}
	return it.typ()
}

func (it *resultIterator) Seek(t int64) chunkenc.ValueType {
	if it.i < 0 {
		it.i = 0
	}
	if it.i < len(it.samples) && it.samples[it.i].t < t {
		rest := it.samples[it.i:]
		it.i += sort.Search(len(rest), func(j int) bool { return rest[j].t >= t })
	}
	return it.typ()
}

func (it *resultIterator) At() (int64, float64) { return it.samples[it.i].t, it.samples[it.i].f }

func (it *resultIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("sharded query results hold no integer histograms")
}

// AtFloatHistogram hands out a copy: the engine may change what it gets.
func (it *resultIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	s := it.samples[it.i]
	if fh == nil {
		return s.t, s.fh.Copy()
	}
	s.fh.CopyTo(fh)
	return s.t, fh
}

func (it *resultIterator) AtT() int64  { return it.samples[it.i].t }
func (it *resultIterator) AtST() int64 { return 0 }
func (it *resultIterator) Err() error  { return nil }
