package promql_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"
)

// remoteEngine is a promql.QueryEngine that sends every query to a
// querier's HTTP API.
type remoteEngine struct {
	url    string
	client *http.Client
	// export puts the eval's data where the store gateway serves it.
	export func(storage.Queryable) error
}

func (e *remoteEngine) NewInstantQuery(_ context.Context, q storage.Queryable, _ promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	if err := e.export(q); err != nil {
		return nil, fmt.Errorf("write the eval's data to the bucket: %w", err)
	}
	v := url.Values{"query": {qs}, "time": {formatTime(ts)}}
	return &remoteQuery{e: e, path: "/api/v1/query", params: v, qs: qs}, nil
}

func (e *remoteEngine) NewRangeQuery(_ context.Context, q storage.Queryable, _ promql.QueryOpts, qs string, start, end time.Time, step time.Duration) (promql.Query, error) {
	if err := e.export(q); err != nil {
		return nil, fmt.Errorf("write the eval's data to the bucket: %w", err)
	}
	v := url.Values{"query": {qs}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	return &remoteQuery{e: e, path: "/api/v1/query_range", params: v, qs: qs}, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', -1, 64)
}

type remoteQuery struct {
	e      *remoteEngine
	path   string
	params url.Values
	qs     string
}

func (q *remoteQuery) Exec(ctx context.Context) *promql.Result {
	resp, err := q.e.client.PostForm(q.e.url+q.path, q.params)
	if err != nil {
		return &promql.Result{Err: err}
	}
	defer resp.Body.Close()
	var body apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return &promql.Result{Err: fmt.Errorf("decode %s answer (HTTP %d): %w", q.path, resp.StatusCode, err)}
	}
	res := &promql.Result{}
	for _, w := range body.Warnings {
		res.Warnings.Add(apiAnnotation{msg: w, kind: annotations.PromQLWarning})
	}
	for _, i := range body.Infos {
		res.Warnings.Add(apiAnnotation{msg: i, kind: annotations.PromQLInfo})
	}
	if body.Status != "success" {
		res.Err = errors.New(body.Error)
		return res
	}
	res.Value, res.Err = body.Data.value()
	return res
}

func (q *remoteQuery) Close()                      {}
func (q *remoteQuery) Statement() parser.Statement { return nil }
func (q *remoteQuery) Stats() *stats.Statistics    { return nil }
func (q *remoteQuery) Cancel()                     {}
func (q *remoteQuery) String() string              { return q.qs }

// apiAnnotation is an annotation string from the API, typed again as a
// warning or an info so promqltest can classify it.
type apiAnnotation struct {
	msg  string
	kind error
}

func (a apiAnnotation) Error() string { return a.msg }
func (a apiAnnotation) Unwrap() error { return a.kind }

type apiResponse struct {
	Status   string   `json:"status"`
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Infos    []string `json:"infos"`
	Data     apiData  `json:"data"`
}

type apiData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type apiSeries struct {
	Metric     map[string]string `json:"metric"`
	Value      []json.RawMessage `json:"value"`
	Values     [][]json.RawMessage
	Histogram  []json.RawMessage   `json:"histogram"`
	Histograms [][]json.RawMessage `json:"histograms"`
}

func (d apiData) value() (parser.Value, error) {
	switch d.ResultType {
	case "scalar", "string":
		var pair []json.RawMessage
		if err := json.Unmarshal(d.Result, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("decode %s: %v", d.ResultType, err)
		}
		t, err := parseTS(pair[0])
		if err != nil {
			return nil, err
		}
		var s string
		if err := json.Unmarshal(pair[1], &s); err != nil {
			return nil, err
		}
		if d.ResultType == "string" {
			return promql.String{T: t, V: s}, nil
		}
		f, err := parseFloat(s)
		return promql.Scalar{T: t, V: f}, err
	case "vector":
		var series []apiSeries
		if err := json.Unmarshal(d.Result, &series); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		vec := promql.Vector{}
		for _, s := range series {
			smp := promql.Sample{Metric: labels.FromMap(s.Metric)}
			var err error
			if s.Histogram != nil {
				smp.T, smp.H, err = parseHistogramPair(s.Histogram)
			} else {
				smp.T, smp.F, err = parseFloatPair(s.Value)
			}
			if err != nil {
				return nil, err
			}
			vec = append(vec, smp)
		}
		return vec, nil
	case "matrix":
		var series []struct {
			Metric     map[string]string   `json:"metric"`
			Values     [][]json.RawMessage `json:"values"`
			Histograms [][]json.RawMessage `json:"histograms"`
		}
		if err := json.Unmarshal(d.Result, &series); err != nil {
			return nil, fmt.Errorf("decode matrix: %w", err)
		}
		m := promql.Matrix{}
		for _, s := range series {
			ps := promql.Series{Metric: labels.FromMap(s.Metric)}
			for _, p := range s.Values {
				t, f, err := parseFloatPair(p)
				if err != nil {
					return nil, err
				}
				ps.Floats = append(ps.Floats, promql.FPoint{T: t, F: f})
			}
			for _, p := range s.Histograms {
				t, h, err := parseHistogramPair(p)
				if err != nil {
					return nil, err
				}
				ps.Histograms = append(ps.Histograms, promql.HPoint{T: t, H: h})
			}
			m = append(m, ps)
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown result type %q", d.ResultType)
}

func parseTS(raw json.RawMessage) (int64, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, fmt.Errorf("decode timestamp %s: %w", raw, err)
	}
	return int64(math.Round(f * 1000)), nil
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

func parseFloatPair(p []json.RawMessage) (int64, float64, error) {
	if len(p) != 2 {
		return 0, 0, fmt.Errorf("sample pair of %d elements", len(p))
	}
	t, err := parseTS(p[0])
	if err != nil {
		return 0, 0, err
	}
	var s string
	if err := json.Unmarshal(p[1], &s); err != nil {
		return 0, 0, err
	}
	f, err := parseFloat(s)
	return t, f, err
}

type apiHistogram struct {
	Count   string              `json:"count"`
	Sum     string              `json:"sum"`
	Buckets [][]json.RawMessage `json:"buckets"`
}

// parseHistogramPair rebuilds a float histogram from the API's bucket list.
// The API gives each populated bucket's bounds; the schema follows from the
// width of exponential buckets, and custom bounds are kept as they are.
func parseHistogramPair(p []json.RawMessage) (int64, *histogram.FloatHistogram, error) {
	if len(p) != 2 {
		return 0, nil, fmt.Errorf("histogram pair of %d elements", len(p))
	}
	t, err := parseTS(p[0])
	if err != nil {
		return 0, nil, err
	}
	var ah apiHistogram
	if err := json.Unmarshal(p[1], &ah); err != nil {
		return 0, nil, err
	}
	h, err := rebuildHistogram(ah)
	if err == nil {
		if verr := h.Validate(); verr != nil {
			err = fmt.Errorf("cannot rebuild the histogram from the API's buckets: %w", verr)
		}
	}
	return t, h, err
}

type apiBucket struct {
	boundaries   int
	lower, upper float64
	count        float64
}

func rebuildHistogram(ah apiHistogram) (*histogram.FloatHistogram, error) {
	count, err := parseFloat(ah.Count)
	if err != nil {
		return nil, err
	}
	sum, err := parseFloat(ah.Sum)
	if err != nil {
		return nil, err
	}
	var bs []apiBucket
	for _, raw := range ah.Buckets {
		if len(raw) != 4 {
			return nil, fmt.Errorf("bucket of %d elements", len(raw))
		}
		var b apiBucket
		var lo, up, c string
		if err := json.Unmarshal(raw[0], &b.boundaries); err != nil {
			return nil, err
		}
		_ = json.Unmarshal(raw[1], &lo)
		_ = json.Unmarshal(raw[2], &up)
		_ = json.Unmarshal(raw[3], &c)
		b.lower, _ = parseFloat(lo)
		b.upper, _ = parseFloat(up)
		b.count, _ = parseFloat(c)
		bs = append(bs, b)
	}
	h := &histogram.FloatHistogram{Count: count, Sum: sum}
	if len(bs) == 0 {
		return h, nil
	}
	// Custom buckets (NHCB) are (lower, upper] with upper bounds not on an
	// exponential grid; exponential buckets have upper/lower = 2^(2^-schema).
	schema, ok := exponentialSchema(bs)
	if !ok {
		return customHistogram(h, bs), nil
	}
	h.Schema = schema
	var pos, neg []indexedBucket
	for _, b := range bs {
		switch {
		case b.boundaries == 3 && b.lower <= 0 && b.upper >= 0: // zero bucket
			h.ZeroThreshold, h.ZeroCount = b.upper, b.count
		case b.upper > 0:
			pos = append(pos, indexedBucket{bucketIndex(b.upper, schema), b.count})
		default:
			neg = append(neg, indexedBucket{bucketIndex(-b.lower, schema), b.count})
		}
	}
	h.PositiveSpans, h.PositiveBuckets = buildSpans(pos)
	h.NegativeSpans, h.NegativeBuckets = buildSpans(neg)
	return h, nil
}

// exponentialSchema finds the schema from a bucket whose bounds are both on
// the exponential grid (the first bucket after the zero bucket may have its
// lower bound cut to the zero threshold).
func exponentialSchema(bs []apiBucket) (int32, bool) {
	found := false
	for _, b := range bs {
		if b.boundaries == 3 && b.lower <= 0 && b.upper >= 0 {
			continue
		}
		found = true
		lo, up := math.Abs(b.lower), math.Abs(b.upper)
		if lo > up {
			lo, up = up, lo
		}
		if lo == 0 || math.IsInf(up, 0) {
			return 0, false
		}
		s := -math.Log2(math.Log2(up / lo))
		r := math.Round(s)
		if math.Abs(s-r) < 1e-6 && r >= -4 && r <= 8 {
			return int32(r), true
		}
	}
	return 0, !found
}

// bucketIndex is the index of the exponential bucket whose upper bound is upper.
func bucketIndex(upper float64, schema int32) int32 {
	return int32(math.Round(math.Log2(upper) * math.Exp2(float64(schema))))
}

type indexedBucket struct {
	idx   int32
	count float64
}

// buildSpans turns buckets by index into spans and counts, in index order.
func buildSpans(bs []indexedBucket) ([]histogram.Span, []float64) {
	sort.Slice(bs, func(i, j int) bool { return bs[i].idx < bs[j].idx })
	var (
		spans  []histogram.Span
		counts []float64
		next   int32
	)
	for i, b := range bs {
		if i > 0 && b.idx == bs[i-1].idx {
			counts[len(counts)-1] += b.count
			continue
		}
		if len(spans) > 0 && b.idx == next {
			spans[len(spans)-1].Length++
		} else {
			off := b.idx
			if len(spans) > 0 {
				off = b.idx - next
			}
			spans = append(spans, histogram.Span{Offset: off, Length: 1})
		}
		counts = append(counts, b.count)
		next = b.idx + 1
	}
	return spans, counts
}

func customHistogram(h *histogram.FloatHistogram, bs []apiBucket) *histogram.FloatHistogram {
	h.Schema = histogram.CustomBucketsSchema
	var ib []indexedBucket
	for i, b := range bs {
		if !math.IsInf(b.upper, 1) {
			h.CustomValues = append(h.CustomValues, b.upper)
		}
		ib = append(ib, indexedBucket{int32(i), b.count})
	}
	h.PositiveSpans, h.PositiveBuckets = buildSpans(ib)
	return h
}
