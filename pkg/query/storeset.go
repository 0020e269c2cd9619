package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// seriesStream reads one store's Series stream as a storage.SeriesSet, one
// frame at a time. For a streaming caller memory is bounded by a frame, not
// by the result; PromQL's querier keeps the frames until it is closed.
type seriesStream struct {
	store   string
	rank    string // replica label values of the store, when it has one label set
	aggrs   []storepb.Aggr
	stream  grpc.ClientStream // frames decoded by seriesCodec
	cancel  context.CancelFunc
	partial bool
	shard   *storeapi.ShardMatcher

	frame seriesFrame
	batch []frameSeries
	cur   storage.Series
	warns annotations.Annotations
	err   error
	done  bool
}

func (s *seriesStream) Next() bool {
	for {
		if len(s.batch) > 0 {
			fs := s.batch[0]
			s.batch[0] = frameSeries{}
			s.batch = s.batch[1:]
			if !s.shard.Matches(fs.lset) {
				continue
			}
			s.cur = &chunkSeries{lset: fs.lset, raw: fs.raw, chunks: fs.chunks, rank: s.rank, aggrs: s.aggrs}
			return true
		}
		if s.done {
			return false
		}
		err := s.stream.RecvMsg(&s.frame)
		if err == io.EOF {
			s.finish()
			return false
		}
		if err != nil {
			s.fail(err)
			return false
		}
		// The frame's slice is reused by the next frame: copy it out.
		s.batch = append(s.batch[:0], s.frame.series...)
		if s.frame.warning != "" {
			s.warns.Add(fmt.Errorf("store %s: %s", s.store, s.frame.warning))
		}
	}
}

func (s *seriesStream) finish() {
	s.done = true
	s.cancel()
}

// close ends the stream for its querier's Close: no series is handed out
// after it.
func (s *seriesStream) close() {
	s.finish()
	clear(s.batch)
	s.batch, s.cur = nil, nil
}

// fail records a store failure: a warning under partial response, the
// set's error otherwise.
func (s *seriesStream) fail(err error) {
	s.finish()
	if errors.Is(err, context.Canceled) {
		s.err = err
		return
	}
	err = fmt.Errorf("store %s: receive series: %w", s.store, err)
	if s.partial {
		s.warns.Add(err)
		return
	}
	s.err = err
}

func (s *seriesStream) At() storage.Series                { return s.cur }
func (s *seriesStream) Err() error                        { return s.err }
func (s *seriesStream) Warnings() annotations.Annotations { return s.warns }

// adjacentMerge merges runs of adjacent series with equal labels in a sorted
// set with merge: a store streams the replicas of one series next to each
// other once it has dropped their replica labels.
type adjacentMerge struct {
	set   storage.SeriesSet
	merge storage.VerticalSeriesMergeFunc
	peek  storage.Series
	cur   storage.Series
	run   []storage.Series
}

func newAdjacentMerge(set storage.SeriesSet, merge storage.VerticalSeriesMergeFunc) storage.SeriesSet {
	return &adjacentMerge{set: set, merge: merge}
}

func (a *adjacentMerge) Next() bool {
	if a.peek == nil {
		if !a.set.Next() {
			return false
		}
		a.peek = a.set.At()
	}
	a.run = append(a.run[:0], a.peek)
	a.peek = nil
	for a.set.Next() {
		s := a.set.At()
		if labels.Equal(s.Labels(), a.run[0].Labels()) {
			a.run = append(a.run, s)
			continue
		}
		a.peek = s
		break
	}
	if len(a.run) == 1 {
		a.cur = a.run[0]
	} else {
		a.cur = a.merge(append([]storage.Series(nil), a.run...)...)
	}
	return true
}

func (a *adjacentMerge) At() storage.Series                { return a.cur }
func (a *adjacentMerge) Err() error                        { return a.set.Err() }
func (a *adjacentMerge) Warnings() annotations.Annotations { return a.set.Warnings() }

// resorted strips the replica labels from every series of set and sorts the
// result, for stores that cannot do it themselves. It holds the whole
// store's result in memory, which is why stores are asked to do it.
func resorted(set storage.SeriesSet, replicaLabels []string) storage.SeriesSet {
	var (
		all []storage.Series
		b   labels.Builder
	)
	for set.Next() {
		s := set.At()
		cs, ok := s.(*chunkSeries)
		if !ok {
			continue
		}
		cs.lset = storeapi.WithoutLabels(&b, cs.lset, replicaLabels)
		all = append(all, cs)
	}
	sort.SliceStable(all, func(i, j int) bool { return labels.Compare(all[i].Labels(), all[j].Labels()) < 0 })
	return &sliceSet{series: all, i: -1, err: set.Err(), warns: set.Warnings()}
}

type sliceSet struct {
	series []storage.Series
	i      int
	err    error
	warns  annotations.Annotations
}

func (s *sliceSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *sliceSet) At() storage.Series                { return s.series[s.i] }
func (s *sliceSet) Err() error                        { return s.err }
func (s *sliceSet) Warnings() annotations.Annotations { return s.warns }
