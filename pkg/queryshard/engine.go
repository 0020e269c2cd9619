package queryshard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"
	"golang.org/x/sync/errgroup"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/query"
)

// Config of a sharding engine.
type Config struct {
	// Engine evaluates the shards and the query over their results.
	Engine *promql.Engine
	Parser parser.Parser
	// Shards is how many parts the series of an aggregation are split
	// into; below 2 nothing is sharded.
	Shards int
	// Concurrency is how many shards are evaluated at once.
	Concurrency int
	// MinRange is the shortest range (end - start) a query is sharded
	// over: shorter ones hold little, and each shard costs a Series
	// request to every store, a remote read of Prometheus on a sidecar.
	MinRange time.Duration
	// Defaults are the query options of a request that sets none.
	Defaults query.Options
	// Registerer gets the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Engine is a promql.QueryEngine that evaluates the aggregations of range
// queries shard by shard: each shard selects a disjoint part of the series
// (by a hash of the labels the aggregation groups by), so the querier holds
// the series and the per-step values of one shard at a time instead of all
// of them. The answer is the Prometheus engine's own: only aggregations
// whose groups fall whole into one shard, or whose shard results join
// exactly (count, min, max, group), are sharded.
type Engine struct {
	cfg    Config
	ranges *prometheus.CounterVec
}

// New returns the sharding engine of cfg.
func New(cfg Config) *Engine {
	cfg.Concurrency = max(cfg.Concurrency, 1)
	e := &Engine{cfg: cfg, ranges: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_querier_range_queries_total",
		Help: "Range queries by how they were evaluated: sharded (aggregations shard by shard, --query.vertical-shards) or whole.",
	}, []string{"evaluation"})}
	e.ranges.WithLabelValues("sharded")
	e.ranges.WithLabelValues("whole")
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(e.ranges)
	}
	return e
}

var _ promql.QueryEngine = (*Engine)(nil)

// NewInstantQuery is the Prometheus engine's: an instant query holds one
// value per series, and the order of an instant vector is part of its
// answer.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.cfg.Engine.NewInstantQuery(ctx, q, opts, qs, ts)
}

// NewRangeQuery shards the query's aggregations where it can.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	// The engine's own query first: it validates as Prometheus does.
	qry, err := e.newRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err == nil {
		_, sharded := qry.(*shardedQuery)
		e.ranges.WithLabelValues(map[bool]string{true: "sharded", false: "whole"}[sharded]).Inc()
	}
	return qry, err
}

func (e *Engine) newRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	whole, err := e.cfg.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil || e.cfg.Shards < 2 || end.Sub(start) < e.cfg.MinRange || (opts != nil && opts.EnablePerStepStats()) {
		return whole, err
	}
	expr, err := e.cfg.Parser.ParseExpr(qs)
	if err != nil {
		return whole, nil
	}
	qopts := query.OptionsFrom(ctx, e.cfg.Defaults)
	var replicaLabels []string
	if qopts.Dedup {
		replicaLabels = qopts.ReplicaLabels
	}
	for _, sel := range parser.ExtractSelectors(expr) {
		for _, m := range sel {
			if m.Name == resultLabel {
				return whole, nil
			}
		}
	}
	var parts []part
	for _, p := range plan(expr, replicaLabels) {
		// The part's results take the place of its text, padded: a
		// part shorter than their selector is left whole.
		pos := p.node.PositionRange()
		if len(substituteText(p, len(parts))) <= int(pos.End-pos.Start) {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return whole, nil
	}
	whole.Close()
	return &shardedQuery{e: e, q: q, opts: opts, qs: qs, expr: expr, parts: parts, start: start, end: end, interval: interval}, nil
}

// substituteText is the PromQL that reads the results of part p, the i-th.
func substituteText(p part, i int) string {
	sel := fmt.Sprintf(`{%s="%d"}`, resultLabel, i)
	if p.combine != 0 {
		return p.combine.String() + "(" + sel + ")"
	}
	return sel
}

// Annotations (warnings and infos) carry the position in the query of the
// expression they are about, and the API renders them against the query as
// asked. The queries evaluated for a sharded query therefore keep every
// expression at its offset: a part is evaluated as its own text preceded
// by blanks, and the outer query is the original text with each part's
// text replaced by the selector of its results, padded with blanks.

// partQuery is the text evaluated for one shard of part p.
func (s *shardedQuery) partQuery(p part) string {
	pos := p.node.PositionRange()
	return strings.Repeat(" ", int(pos.Start)) + s.qs[pos.Start:pos.End]
}

// outerQuery is the text evaluated over the parts' results.
func (s *shardedQuery) outerQuery() string {
	parts := slices.Clone(s.parts)
	idx := make(map[*parser.AggregateExpr]int, len(parts))
	for i, p := range parts {
		idx[p.node] = i
	}
	slices.SortFunc(parts, func(a, b part) int { return int(a.node.PositionRange().Start - b.node.PositionRange().Start) })
	var b strings.Builder
	last := 0
	for _, p := range parts {
		pos := p.node.PositionRange()
		sub := substituteText(p, idx[p.node])
		b.WriteString(s.qs[last:pos.Start])
		b.WriteString(sub)
		b.WriteString(strings.Repeat(" ", int(pos.End-pos.Start)-len(sub)))
		last = int(pos.End)
	}
	b.WriteString(s.qs[last:])
	return b.String()
}

// shardedQuery is a range query evaluated part by part, shard by shard,
// then as a whole over the parts' results.
type shardedQuery struct {
	e          *Engine
	q          storage.Queryable
	opts       promql.QueryOpts
	qs         string
	expr       parser.Expr
	parts      []part
	start, end time.Time
	interval   time.Duration
	mu         sync.Mutex
	cancel     context.CancelFunc
	outer      promql.Query
	samples    stats.QuerySamples
	cancelled  bool
}

func (s *shardedQuery) Exec(ctx context.Context) *promql.Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		return &promql.Result{Err: promql.ErrQueryCanceled("query cancelled")}
	}
	s.cancel = cancel
	s.mu.Unlock()

	var warns annotations.Annotations
	results := make([][]resultSeries, len(s.parts))
	for i, p := range s.parts {
		rs, w, err := s.evalPart(ctx, p)
		warns.Merge(w)
		if err != nil {
			return &promql.Result{Err: err, Warnings: warns}
		}
		sortResults(rs)
		results[i] = rs
	}
	outerQS := s.outerQuery()
	outer, err := s.e.cfg.Engine.NewRangeQuery(ctx, resultQueryable{Queryable: s.q, results: results}, s.opts, outerQS, s.start, s.end, s.interval)
	if err != nil {
		return &promql.Result{Err: fmt.Errorf("sharded query: evaluate %s over its parts: %w", outerQS, err), Warnings: warns}
	}
	s.mu.Lock()
	s.outer = outer
	s.mu.Unlock()
	res := outer.Exec(ctx)
	res.Warnings = warns.Merge(res.Warnings)
	return res
}

// evalPart evaluates one part shard by shard and returns its results.
func (s *shardedQuery) evalPart(ctx context.Context, p part) ([]resultSeries, annotations.Annotations, error) {
	n := s.e.cfg.Shards
	qopts := query.OptionsFrom(ctx, s.e.cfg.Defaults)
	qs := s.partQuery(p)
	step := s.interval.Milliseconds()
	startMs, endMs := s.start.UnixMilli(), s.end.UnixMilli()
	var (
		mu    sync.Mutex
		out   []resultSeries
		warns annotations.Annotations
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.e.cfg.Concurrency)
	for i := range n {
		g.Go(func() error {
			o := qopts
			o.Shard = &storepb.ShardInfo{ShardIndex: int64(i), TotalShards: int64(n), By: p.by, Labels: p.labels}
			sctx := query.WithOptions(gctx, o)
			q, err := s.e.cfg.Engine.NewRangeQuery(sctx, s.q, s.opts, qs, s.start, s.end, s.interval)
			if err != nil {
				return err
			}
			defer q.Close()
			res := q.Exec(sctx)
			if st := q.Stats(); st != nil && st.Samples != nil {
				s.mu.Lock()
				s.samples.TotalSamples += st.Samples.TotalSamples
				s.samples.PeakSamples = max(s.samples.PeakSamples, st.Samples.PeakSamples)
				s.mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			warns.Merge(res.Warnings)
			if res.Err != nil {
				return res.Err
			}
			mat, err := res.Matrix()
			if err != nil {
				return fmt.Errorf("sharded query: shard %d of %s: %w", i, qs, err)
			}
			// Copied out: Close gives the points back to the engine.
			for _, ser := range mat {
				out = append(out, newResultSeries(ser, i, p.combine != 0, startMs, endMs, step))
			}
			return nil
		})
	}
	err := g.Wait()
	return out, warns, err
}

func (s *shardedQuery) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outer != nil {
		s.outer.Close()
	}
}

func (s *shardedQuery) Statement() parser.Statement {
	return &parser.EvalStmt{Expr: s.expr, Start: s.start, End: s.end, Interval: s.interval}
}

// Stats are the outer query's timings with the samples of every shard.
func (s *shardedQuery) Stats() *stats.Statistics {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stats.Statistics{Timers: stats.NewQueryTimers(), Samples: &stats.QuerySamples{}}
	if s.outer != nil {
		if o := s.outer.Stats(); o != nil {
			st.Timers = o.Timers
			if o.Samples != nil {
				*st.Samples = *o.Samples
			}
		}
	}
	st.Samples.TotalSamples += s.samples.TotalSamples
	st.Samples.PeakSamples = max(st.Samples.PeakSamples, s.samples.PeakSamples)
	return st
}

func (s *shardedQuery) Cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancelled = true
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *shardedQuery) String() string { return s.qs }
