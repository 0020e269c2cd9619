package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/dedup"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// Store is what the querier needs of one StoreAPI endpoint.
type Store interface {
	// Name identifies the store in warnings and logs (its address).
	Name() string
	Client() storepb.StoreClient
	// Conn is the connection Client uses: Series streams are opened on it
	// directly, to decode their frames with seriesCodec.
	Conn() grpc.ClientConnInterface
	// LabelSets are the external label sets of the store's data.
	LabelSets() []labels.Labels
	// TimeRange is the range of data the store holds (ms, inclusive).
	TimeRange() (mint, maxt int64)
	// SupportsWithoutReplicaLabels tells whether the store drops replica
	// labels and sorts without them itself.
	SupportsWithoutReplicaLabels() bool
	// Unavailable is why the store failed its last health check, or nil.
	// Requests do not wait on such a store (a hung one would hold every
	// query until its timeout): it is a warning or an error at once.
	Unavailable() error
}

// Queryable is a storage.Queryable over the StoreAPI endpoints Stores returns.
type Queryable struct {
	Stores func() []Store
	// Defaults apply when the request context carries no Options.
	Defaults Options
	// StoreTimeout bounds each store's part of a request; 0 is none.
	StoreTimeout time.Duration
	Logger       *slog.Logger

	slabsOnce sync.Once
	slabs     *slabPool
}

// framePoolBytes bounds the frame slabs kept between queries; with a Go
// memory limit (--auto-gomemlimit in a container), a quarter of it.
const framePoolBytes = 1 << 30

// framePoolIdle is how long a free slab may stay unused before it is
// dropped.
const framePoolIdle = time.Minute

// Querier returns a querier over [mint, maxt], for PromQL and the API:
// callers that hold every series they select until they close it. The
// frames of its raw chunks go into pooled buffers, reused once it is closed.
func (q *Queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{q: q, mint: mint, maxt: maxt, bufs: &frameBuffers{pool: q.pool()}}, nil
}

// StreamingQuerier returns a querier for callers that pass each series on
// and drop it (the querier's own StoreAPI): its frames are not kept until
// Close, so its memory stays bounded by what is in flight.
func (q *Queryable) StreamingQuerier(mint, maxt int64) storage.Querier {
	return &querier{q: q, mint: mint, maxt: maxt}
}

func (q *Queryable) pool() *slabPool {
	q.slabsOnce.Do(func() {
		limit := int64(framePoolBytes)
		if ml := debug.SetMemoryLimit(-1); ml < math.MaxInt64 {
			limit = min(limit, ml/4)
		}
		q.slabs = newSlabPool(limit, framePoolIdle)
	})
	return q.slabs
}

// FramePoolBytes is the memory kept for the frames of future queries.
func (q *Queryable) FramePoolBytes() int64 { return q.pool().freeBytes() }

type querier struct {
	q          *Queryable
	mint, maxt int64
	bufs       *frameBuffers // nil: frames get buffers of their own

	mu      sync.Mutex
	streams []*seriesStream
	closed  bool
}

var errClosed = errors.New("select on a closed querier")

// counterFuncs are the PromQL functions whose input is a counter; a fake
// counter drop at a replica switch would distort them.
var counterFuncs = map[string]bool{"rate": true, "increase": true, "irate": true, "resets": true, "xrate": true, "xincrease": true}

// storesFor returns the stores whose time range and external labels can
// match.
func (q *querier) storesFor(mint, maxt int64, ms []*labels.Matcher) []Store {
	var out []Store
	for _, s := range q.q.Stores() {
		smin, smax := s.TimeRange()
		if smin > maxt || smax < mint {
			continue
		}
		if !storeapi.MatchesExternalLabels(ms, s.LabelSets()) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return storage.ErrSeriesSet(errClosed)
	}
	opts := OptionsFrom(ctx, q.q.Defaults)
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	pms, err := storeapi.MatchersToProto(ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if _, err := storeapi.NewShardMatcher(opts.Shard); err != nil {
		return storage.ErrSeriesSet(err)
	}
	req := &storepb.SeriesRequest{
		MinTime:                 mint,
		MaxTime:                 maxt,
		Matchers:                pms,
		MaxResolutionWindow:     opts.MaxResolution,
		Aggregates:              []storepb.Aggr{storepb.Aggr_RAW},
		PartialResponseDisabled: !opts.PartialResponse,
		PartialResponseStrategy: storepb.PartialResponseStrategy_ABORT,
		// Stores that know it send series in batches, far cheaper on gRPC
		// than a frame per series; others ignore the field.
		ResponseBatchSize: responseBatchSize,
		ShardInfo:         opts.Shard,
	}
	if opts.PartialResponse {
		req.PartialResponseStrategy = storepb.PartialResponseStrategy_WARN
	}
	counter, fn := false, ""
	if hints != nil {
		fn = hints.Func
		req.SkipChunks = hints.Func == "series"
		req.QueryHints = &storepb.QueryHints{StepMillis: hints.Step, Func: &storepb.Func{Name: hints.Func},
			Grouping: &storepb.Grouping{By: hints.By, Labels: hints.Grouping}, Range: &storepb.Range{Millis: hints.Range}}
		req.Step, req.Range = hints.Step, hints.Range
		req.Limit = int64(hints.Limit)
		counter = counterFuncs[hints.Func]
	}
	if opts.MaxResolution > 0 {
		req.Aggregates = aggregatesFor(fn)
	}
	var merge storage.VerticalSeriesMergeFunc = storage.ChainedSeriesMerge
	if opts.Dedup && len(opts.ReplicaLabels) > 0 {
		req.WithoutReplicaLabels = opts.ReplicaLabels
		merge = dedup.MergeFunc(counter)
	}

	stores := q.storesFor(mint, maxt, ms)
	sets := make([]storage.SeriesSet, 0, len(stores))
	var warns annotations.Annotations
	for _, st := range stores {
		if err := st.Unavailable(); err != nil {
			err = fmt.Errorf("store %s: %w", st.Name(), err)
			if !opts.PartialResponse {
				return storage.ErrSeriesSet(err)
			}
			warns.Add(err)
			continue
		}
		set, err := q.openStream(ctx, st, req, opts)
		if err != nil {
			if !opts.PartialResponse {
				return storage.ErrSeriesSet(err)
			}
			warns.Add(err)
			continue
		}
		if opts.Dedup && len(opts.ReplicaLabels) > 0 && !st.SupportsWithoutReplicaLabels() {
			set = resorted(set, opts.ReplicaLabels)
		}
		sets = append(sets, newAdjacentMerge(set, merge))
	}
	var out storage.SeriesSet
	switch len(sets) {
	case 0:
		out = storage.EmptySeriesSet()
	case 1:
		out = sets[0]
	default:
		out = storage.NewMergeSeriesSet(sets, 0, merge)
	}
	if len(warns) > 0 {
		return &warnSet{SeriesSet: out, warns: warns}
	}
	return out
}

// responseBatchSize is the batch asked of stores: large enough to cut the
// per-frame cost, small enough that a frame stays far below gRPC's limits.
const responseBatchSize = 64

func (q *querier) openStream(ctx context.Context, st Store, req *storepb.SeriesRequest, opts Options) (storage.SeriesSet, error) {
	sctx, cancel := q.storeContext(ctx)
	stream, err := openSeries(sctx, st.Conn(), req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("store %s: series: %w", st.Name(), err)
	}
	s := &seriesStream{store: st.Name(), aggrs: req.Aggregates, rank: replicaRank(st, opts.ReplicaLabels), stream: stream, cancel: cancel, partial: opts.PartialResponse}
	// Stores that do not know shards send every series: the shard is
	// kept here too (a matcher per stream, it keeps a buffer).
	s.shard, _ = storeapi.NewShardMatcher(req.ShardInfo)
	// Pooled buffers only for raw chunks: labels (series calls) and
	// aggregates (downsampled data) are copied out of the frame, which is
	// then garbage at once. A resolution below the first downsampling
	// level (auto-downsampling gives a fifth of the step) reads raw blocks
	// only.
	if !req.SkipChunks && req.MaxResolutionWindow < block.Resolution5m {
		s.frame.bufs = q.bufs
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		s.finish()
		return nil, errClosed
	}
	q.streams = append(q.streams, s)
	return s, nil
}

// replicaRank is the replica label values of a store with one label set:
// dedup prefers replicas in this order.
func replicaRank(st Store, replicaLabels []string) string {
	sets := st.LabelSets()
	if len(sets) != 1 {
		return ""
	}
	var b strings.Builder
	for _, l := range replicaLabels {
		b.WriteString(sets[0].Get(l))
		b.WriteByte(0)
	}
	return b.String()
}

func (q *querier) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if q.q.StoreTimeout > 0 {
		return context.WithTimeout(ctx, q.q.StoreTimeout)
	}
	return context.WithCancel(ctx)
}

type warnSet struct {
	storage.SeriesSet
	warns annotations.Annotations
}

func (w *warnSet) Warnings() annotations.Annotations {
	return w.warns.Merge(w.SeriesSet.Warnings())
}

// LabelNames asks every matching store and merges the answers. With dedup
// the replica labels are hidden.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	opts := OptionsFrom(ctx, q.q.Defaults)
	pms, err := storeapi.MatchersToProto(ms)
	if err != nil {
		return nil, nil, err
	}
	req := &storepb.LabelNamesRequest{Start: q.mint, End: q.maxt, Matchers: pms, PartialResponseDisabled: !opts.PartialResponse}
	if hints != nil {
		req.Limit = int64(hints.Limit)
	}
	if opts.Dedup {
		req.WithoutReplicaLabels = opts.ReplicaLabels
	}
	names, warns, err := q.fanOut(ctx, ms, opts, func(ctx context.Context, c storepb.StoreClient) ([]string, []string, error) {
		r, err := c.LabelNames(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		return r.Names, r.Warnings, nil
	})
	if err != nil {
		return nil, warns, err
	}
	if opts.Dedup {
		names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(opts.ReplicaLabels, n) })
	}
	return limit(names, hints), warns, nil
}

// LabelValues asks every matching store and merges the answers. With dedup
// a replica label has no values.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	opts := OptionsFrom(ctx, q.q.Defaults)
	if opts.Dedup && slices.Contains(opts.ReplicaLabels, name) {
		return nil, nil, nil
	}
	pms, err := storeapi.MatchersToProto(ms)
	if err != nil {
		return nil, nil, err
	}
	req := &storepb.LabelValuesRequest{Label: name, Start: q.mint, End: q.maxt, Matchers: pms, PartialResponseDisabled: !opts.PartialResponse}
	if hints != nil {
		req.Limit = int64(hints.Limit)
	}
	if opts.Dedup {
		req.WithoutReplicaLabels = opts.ReplicaLabels
	}
	vals, warns, err := q.fanOut(ctx, ms, opts, func(ctx context.Context, c storepb.StoreClient) ([]string, []string, error) {
		r, err := c.LabelValues(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		return r.Values, r.Warnings, nil
	})
	if err != nil {
		return nil, warns, err
	}
	return limit(vals, hints), warns, nil
}

func limit(s []string, hints *storage.LabelHints) []string {
	if hints != nil && hints.Limit > 0 && len(s) > hints.Limit {
		return s[:hints.Limit]
	}
	return s
}

// fanOut calls f on every matching store concurrently and merges the sorted,
// de-duplicated strings they return.
func (q *querier) fanOut(ctx context.Context, ms []*labels.Matcher, opts Options, f func(context.Context, storepb.StoreClient) ([]string, []string, error)) ([]string, annotations.Annotations, error) {
	stores := q.storesFor(q.mint, q.maxt, ms)
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		set   = map[string]struct{}{}
		warns annotations.Annotations
		errs  []error
	)
	for _, st := range stores {
		if err := st.Unavailable(); err != nil {
			errs = append(errs, fmt.Errorf("store %s: %w", st.Name(), err))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := q.storeContext(ctx)
			defer cancel()
			vals, ws, err := f(sctx, st.Client())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("store %s: %w", st.Name(), err))
				return
			}
			for _, w := range ws {
				warns.Add(fmt.Errorf("store %s: %s", st.Name(), w))
			}
			for _, v := range vals {
				set[v] = struct{}{}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		if !opts.PartialResponse {
			return nil, warns, errs[0]
		}
		for _, e := range errs {
			warns.Add(e)
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out, warns, nil
}

// Close ends the streams still open and gives the frame buffers back for
// reuse: PromQL and the API close a querier only when they are done with
// every series it returned.
func (q *querier) Close() error {
	q.mu.Lock()
	streams := q.streams
	q.streams, q.closed = nil, true
	q.mu.Unlock()
	// A stream read after Close must not hand out the rest of a frame
	// whose buffer is about to be reused.
	for _, s := range streams {
		s.close()
	}
	q.bufs.release()
	return nil
}
