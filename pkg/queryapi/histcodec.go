package queryapi

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// FullHistogramsMIME is the content type a client asks for (Accept) to get
// query results whose native histograms carry every field. Prometheus' JSON
// gives a histogram as its populated buckets' bounds and counts only: the
// schema, the zero threshold of an empty zero bucket, custom bounds of empty
// buckets and the counter reset hint are lost, so an answer cannot be
// compared exactly with Prometheus' own (test/promql does). Everything else
// is Prometheus' JSON; without the Accept header nothing changes.
const FullHistogramsMIME = "application/vnd.strata.histograms+json"

// histCodec encodes /api/v1/query and /api/v1/query_range answers in the
// FullHistogramsMIME format; other answers go to Prometheus' JSON codec.
type histCodec struct{}

func (histCodec) ContentType() v1.MIMEType {
	return v1.MIMEType{Type: "application", SubType: "vnd.strata.histograms+json"}
}

func (histCodec) CanEncode(resp *v1.Response) bool {
	_, ok := resp.Data.(*v1.QueryData)
	return ok
}

func (histCodec) Encode(resp *v1.Response) ([]byte, error) {
	qd := resp.Data.(*v1.QueryData)
	result, err := encodeValue(qd.Result)
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     any    `json:"result"`
			Stats      any    `json:"stats,omitempty"`
		} `json:"data"`
		Warnings []string `json:"warnings,omitempty"`
		Infos    []string `json:"infos,omitempty"`
	}{
		Status: "success",
		Data: struct {
			ResultType string `json:"resultType"`
			Result     any    `json:"result"`
			Stats      any    `json:"stats,omitempty"`
		}{string(qd.ResultType), result, qd.Stats},
		Warnings: resp.Warnings,
		Infos:    resp.Infos,
	})
}

// seriesJSON is one series or sample of a vector or matrix result.
type seriesJSON struct {
	Metric     map[string]string `json:"metric"`
	Value      *[2]any           `json:"value,omitempty"`
	Histogram  *HistogramPoint   `json:"histogram,omitempty"`
	Values     [][2]any          `json:"values,omitempty"`
	Histograms []HistogramPoint  `json:"histograms,omitempty"`
}

// HistogramPoint is a timestamp in seconds and a histogram, encoded as the
// two-element array Prometheus uses.
type HistogramPoint struct {
	T int64
	H *HistogramJSON
}

func (p HistogramPoint) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]any{seconds(p.T), p.H})
}

func (p *HistogramPoint) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	var ts float64
	if err := json.Unmarshal(pair[0], &ts); err != nil {
		return fmt.Errorf("histogram timestamp: %w", err)
	}
	p.T = millisFromSeconds(ts)
	p.H = &HistogramJSON{}
	return json.Unmarshal(pair[1], p.H)
}

// HistogramJSON is a float histogram with every field. Floats are strings,
// as in Prometheus' JSON, so NaN and ±Inf survive.
type HistogramJSON struct {
	Count            string     `json:"count"`
	Sum              string     `json:"sum"`
	Schema           int32      `json:"schema"`
	ZeroThreshold    string     `json:"zeroThreshold"`
	ZeroCount        string     `json:"zeroCount"`
	CounterResetHint string     `json:"counterResetHint"`
	PositiveSpans    []spanJSON `json:"positiveSpans,omitempty"`
	PositiveBuckets  []string   `json:"positiveBuckets,omitempty"`
	NegativeSpans    []spanJSON `json:"negativeSpans,omitempty"`
	NegativeBuckets  []string   `json:"negativeBuckets,omitempty"`
	CustomValues     []string   `json:"customValues,omitempty"`
}

type spanJSON struct {
	Offset int32  `json:"offset"`
	Length uint32 `json:"length"`
}

func spansJSON(ss []histogram.Span) []spanJSON {
	if len(ss) == 0 {
		return nil
	}
	out := make([]spanJSON, len(ss))
	for i, s := range ss {
		out[i] = spanJSON(s)
	}
	return out
}

func spans(ss []spanJSON) []histogram.Span {
	if len(ss) == 0 {
		return nil
	}
	out := make([]histogram.Span, len(ss))
	for i, s := range ss {
		out[i] = histogram.Span(s)
	}
	return out
}

// resetHints names the counter reset hints as PromQL tests write them.
var resetHints = map[histogram.CounterResetHint]string{
	histogram.UnknownCounterReset: "unknown", histogram.CounterReset: "reset",
	histogram.NotCounterReset: "not_reset", histogram.GaugeType: "gauge",
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func formatFloats(fs []float64) []string {
	if len(fs) == 0 {
		return nil
	}
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = formatFloat(f)
	}
	return out
}

func parseFloats(ss []string) ([]float64, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	out := make([]float64, len(ss))
	for i, s := range ss {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// NewHistogramJSON encodes h.
func NewHistogramJSON(h *histogram.FloatHistogram) *HistogramJSON {
	return &HistogramJSON{
		Count: formatFloat(h.Count), Sum: formatFloat(h.Sum), Schema: h.Schema,
		ZeroThreshold: formatFloat(h.ZeroThreshold), ZeroCount: formatFloat(h.ZeroCount),
		CounterResetHint: resetHints[h.CounterResetHint],
		PositiveSpans:    spansJSON(h.PositiveSpans), PositiveBuckets: formatFloats(h.PositiveBuckets),
		NegativeSpans: spansJSON(h.NegativeSpans), NegativeBuckets: formatFloats(h.NegativeBuckets),
		CustomValues: formatFloats(h.CustomValues),
	}
}

// FloatHistogram decodes the histogram.
func (j *HistogramJSON) FloatHistogram() (*histogram.FloatHistogram, error) {
	h := &histogram.FloatHistogram{Schema: j.Schema, PositiveSpans: spans(j.PositiveSpans), NegativeSpans: spans(j.NegativeSpans)}
	found := false
	for hint, name := range resetHints {
		if name == j.CounterResetHint {
			h.CounterResetHint, found = hint, true
		}
	}
	if !found {
		return nil, fmt.Errorf("histogram: unknown counter reset hint %q", j.CounterResetHint)
	}
	var err error
	for _, f := range []struct {
		s   string
		dst *float64
	}{{j.Count, &h.Count}, {j.Sum, &h.Sum}, {j.ZeroThreshold, &h.ZeroThreshold}, {j.ZeroCount, &h.ZeroCount}} {
		if *f.dst, err = strconv.ParseFloat(f.s, 64); err != nil {
			return nil, fmt.Errorf("histogram: %w", err)
		}
	}
	if h.PositiveBuckets, err = parseFloats(j.PositiveBuckets); err != nil {
		return nil, fmt.Errorf("histogram positive buckets: %w", err)
	}
	if h.NegativeBuckets, err = parseFloats(j.NegativeBuckets); err != nil {
		return nil, fmt.Errorf("histogram negative buckets: %w", err)
	}
	if h.CustomValues, err = parseFloats(j.CustomValues); err != nil {
		return nil, fmt.Errorf("histogram custom values: %w", err)
	}
	return h, nil
}

// seconds is a millisecond timestamp as Prometheus writes it: seconds with
// up to three decimals.
func seconds(t int64) json.Number {
	return json.Number(strconv.FormatFloat(float64(t)/1000, 'f', -1, 64))
}

// millisFromSeconds turns an API timestamp back into milliseconds.
func millisFromSeconds(s float64) int64 {
	ms := s * 1000
	if ms < 0 {
		return int64(ms - 0.5)
	}
	return int64(ms + 0.5)
}

func metricMap(l labels.Labels) map[string]string {
	m := make(map[string]string, l.Len())
	l.Range(func(l labels.Label) { m[l.Name] = l.Value })
	return m
}

func encodeValue(v any) (any, error) {
	switch v := v.(type) {
	case promql.Scalar:
		return [2]any{seconds(v.T), formatFloat(v.V)}, nil
	case promql.String:
		return [2]any{seconds(v.T), v.V}, nil
	case promql.Vector:
		out := make([]seriesJSON, 0, len(v))
		for _, s := range v {
			sj := seriesJSON{Metric: metricMap(s.Metric)}
			if s.H != nil {
				sj.Histogram = &HistogramPoint{T: s.T, H: NewHistogramJSON(s.H)}
			} else {
				sj.Value = &[2]any{seconds(s.T), formatFloat(s.F)}
			}
			out = append(out, sj)
		}
		return out, nil
	case promql.Matrix:
		out := make([]seriesJSON, 0, len(v))
		for _, s := range v {
			sj := seriesJSON{Metric: metricMap(s.Metric)}
			for _, p := range s.Floats {
				sj.Values = append(sj.Values, [2]any{seconds(p.T), formatFloat(p.F)})
			}
			for _, p := range s.Histograms {
				sj.Histograms = append(sj.Histograms, HistogramPoint{T: p.T, H: NewHistogramJSON(p.H)})
			}
			out = append(out, sj)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot encode a %T result", v)
}
