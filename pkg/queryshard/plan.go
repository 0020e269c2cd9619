package queryshard

import (
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// part is an aggregation of a query that can be evaluated shard by shard:
// each shard selects a disjoint part of the series (by a hash of the labels
// the aggregation groups by), and the shards' results together are the
// aggregation's.
type part struct {
	node *parser.AggregateExpr
	// by and labels are the shard key, as in storepb.ShardInfo: the
	// labels hashed (by) or the labels left out of the hash (!by).
	by     bool
	labels []string
	// combine is the aggregation that joins the shards' results when
	// the aggregation has no grouping (count of counts, max of maxes);
	// 0 when the shards' groups are disjoint and are simply put together.
	combine parser.ItemType
}

// localFuncs are the functions whose every output series comes from one
// input series, with its labels but the metric name: series of one shard
// give series of the same shard.
var localFuncs = map[string]bool{}

func init() {
	for _, f := range []string{
		"abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil", "changes",
		"clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "days_in_month", "day_of_month",
		"day_of_week", "day_of_year", "deg", "delta", "deriv", "exp", "first_over_time", "floor",
		"histogram_avg", "histogram_count", "histogram_sum", "histogram_stddev", "histogram_stdvar",
		"double_exponential_smoothing", "hour", "idelta", "increase", "irate",
		"last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
		"ts_of_first_over_time", "ts_of_max_over_time", "ts_of_min_over_time", "ts_of_last_over_time",
		"minute", "month", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate",
		"resets", "round", "sgn", "sin", "sinh", "sqrt", "stddev_over_time", "stdvar_over_time",
		"sum_over_time", "tan", "tanh", "timestamp", "year",
	} {
		localFuncs[f] = true
	}
}

// opaqueFuncs see more of their argument than its values: the engine
// treats a selector argument of theirs apart (absent() reads its matchers,
// start_timestamp() its samples' start times), or reads histograms without
// buckets under them (histogram_count and the like), which changes the
// annotations of an aggregation evaluated alone. Nothing below them is
// sharded.
var opaqueFuncs = map[string]bool{
	"absent": true, "absent_over_time": true, "info": true, "start_timestamp": true, "timestamp": true,
	"histogram_count": true, "histogram_sum": true, "histogram_avg": true,
}

// metadataLabels are dropped from series by functions and from groups by
// without, as the metric name is (the type and unit labels).
var metadataLabels = []string{labels.MetricName, model.MetricTypeLabel, model.MetricUnitLabel}

// plan finds the aggregations of expr to evaluate shard by shard, outermost
// first. replicaLabels are left out of every shard key: both replicas of a
// series must land in the same shard to be deduplicated.
func plan(expr parser.Expr, replicaLabels []string) []part {
	var parts []part
	var visit func(e parser.Expr, root bool)
	visit = func(e parser.Expr, root bool) {
		switch n := e.(type) {
		case *parser.ParenExpr:
			visit(n.Expr, root)
		case *parser.UnaryExpr:
			visit(n.Expr, false)
		case *parser.BinaryExpr:
			visit(n.LHS, false)
			visit(n.RHS, false)
		case *parser.Call:
			if opaqueFuncs[n.Func.Name] {
				return
			}
			for _, a := range n.Args {
				if a.Type() == parser.ValueTypeVector {
					visit(a, false)
				}
			}
		case *parser.AggregateExpr:
			if p, ok := shardable(n, root, replicaLabels); ok {
				parts = append(parts, p)
				return
			}
			visit(n.Expr, false)
		}
		// Subqueries are evaluated at steps of their own, selectors and
		// literals hold no aggregation: nothing to shard below them.
	}
	visit(expr, true)
	return parts
}

// shardable tells whether the aggregation n can be evaluated shard by shard
// with exactly the answer of evaluating it whole, and with which key.
func shardable(n *parser.AggregateExpr, root bool, replicaLabels []string) (part, bool) {
	if !local(n.Expr) {
		return part{}, false
	}
	if n.Param != nil && len(parser.ExtractSelectors(n.Param)) > 0 {
		return part{}, false
	}
	p := part{node: n}
	switch n.Op {
	case parser.SUM, parser.AVG, parser.COUNT, parser.MIN, parser.MAX, parser.GROUP,
		parser.STDDEV, parser.STDVAR, parser.QUANTILE:
	case parser.COUNT_VALUES:
		// The value label replaces a series label of that name before
		// grouping: a group may then gather series of several shards
		// unless the label is one the grouping ignores.
		vl, ok := n.Param.(*parser.StringLiteral)
		if !ok || n.Without || len(n.Grouping) == 0 || slices.Contains(n.Grouping, vl.Val) {
			return part{}, false
		}
	case parser.TOPK, parser.BOTTOMK:
		// They keep their input's labels, metric name included, which
		// delayed name removal may still need above them: at the root
		// only.
		if !root {
			return part{}, false
		}
	default:
		return part{}, false
	}
	switch {
	case n.Without:
		p.labels = appendMissing(append(slices.Clone(metadataLabels), n.Grouping...), replicaLabels)
		if !slices.Contains(n.Grouping, instanceLabel) {
			p.by, p.labels = byInstance(p.labels, replicaLabels)
		}
	case len(n.Grouping) > 0:
		p.by = true
		for _, l := range n.Grouping {
			// Functions drop the metric name (and type and unit):
			// grouping by them is left alone. Replica labels are gone
			// after deduplication.
			if slices.Contains(metadataLabels, l) {
				return part{}, false
			}
			if !slices.Contains(replicaLabels, l) {
				p.labels = append(p.labels, l)
			}
		}
		if len(p.labels) == 0 {
			return part{}, false
		}
	default:
		// One group: only aggregations whose results over disjoint sets
		// join exactly. A count is an integer, exact in a float64 sum;
		// group is 1. (min and max are not: on ties, -0 and 0 or NaNs,
		// the first series wins, and the shards' results do not come in
		// series order.)
		switch n.Op {
		case parser.COUNT:
			p.combine = parser.SUM
		case parser.GROUP:
			p.combine = parser.GROUP
		default:
			return part{}, false
		}
		// Without the metric name (and type and unit): series whose
		// labels differ only in them collide after a function, an error
		// that must happen in one shard as it does over the whole.
		p.labels = appendMissing(slices.Clone(metadataLabels), replicaLabels)
		p.by, p.labels = byInstance(p.labels, replicaLabels)
	}
	return p, true
}

// instanceLabel is on nearly every scraped series, with many values.
const instanceLabel = "instance"

// byInstance narrows a shard key of every label but some (the labels
// dropped from groups, as for without and for no grouping) to the instance
// label alone, unless it is a replica label: series of one group still
// share its value, so they stay in one shard, and stores find a shard's
// series from the postings of its values instead of reading every series
// to hash its labels. Series without the label fall into one shard.
func byInstance(without, replicaLabels []string) (bool, []string) {
	if slices.Contains(replicaLabels, instanceLabel) {
		return false, without
	}
	return true, []string{instanceLabel}
}

func appendMissing(dst, add []string) []string {
	for _, l := range add {
		if !slices.Contains(dst, l) {
			dst = append(dst, l)
		}
	}
	return dst
}

// local tells whether every series of e comes from one series its
// selectors select, with that series' labels (the metric name aside): then
// the series of one shard give the results of that shard.
func local(e parser.Expr) bool {
	switch n := e.(type) {
	case *parser.VectorSelector, *parser.MatrixSelector:
		return true
	case *parser.ParenExpr:
		return local(n.Expr)
	case *parser.UnaryExpr:
		return local(n.Expr)
	case *parser.SubqueryExpr:
		return local(n.Expr)
	case *parser.BinaryExpr:
		// A vector with a scalar that reads no series.
		l, r := n.LHS.Type() == parser.ValueTypeVector, n.RHS.Type() == parser.ValueTypeVector
		switch {
		case l && !r:
			return local(n.LHS) && len(parser.ExtractSelectors(n.RHS)) == 0
		case r && !l:
			return local(n.RHS) && len(parser.ExtractSelectors(n.LHS)) == 0
		}
		return false
	case *parser.Call:
		if !localFuncs[n.Func.Name] {
			return false
		}
		series := false
		for _, a := range n.Args {
			switch a.Type() {
			case parser.ValueTypeVector, parser.ValueTypeMatrix:
				if !local(a) {
					return false
				}
				series = true
			default:
				if len(parser.ExtractSelectors(a)) > 0 {
					return false
				}
			}
		}
		// hour() without an argument makes a series of its own, in
		// every shard.
		return series
	}
	return false
}
