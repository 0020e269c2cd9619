package queryapi

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// TestHistCodecRoundTrip: every field of a native histogram survives the
// codec, where Prometheus' JSON keeps only populated buckets' bounds.
func TestHistCodecRoundTrip(t *testing.T) {
	hs := []*histogram.FloatHistogram{
		{ // exponential, gauge, negative counts after arithmetic, NaN sum
			Schema: 3, Count: -4, Sum: math.NaN(), ZeroThreshold: 0.001, ZeroCount: 0,
			CounterResetHint: histogram.GaugeType,
			PositiveSpans:    []histogram.Span{{Offset: -2, Length: 2}, {Offset: 3, Length: 1}}, PositiveBuckets: []float64{1, -2, 0.5},
			NegativeSpans: []histogram.Span{{Offset: 0, Length: 1}}, NegativeBuckets: []float64{-6},
		},
		{ // custom buckets, all empty: only the bounds tell them apart
			Schema: histogram.CustomBucketsSchema, CounterResetHint: histogram.NotCounterReset,
			CustomValues: []float64{-2, 3, math.Inf(1)},
		},
	}
	vec := promql.Vector{
		{Metric: labels.FromStrings("__name__", "a", "x", "1"), T: 1500, H: hs[0]},
		{Metric: labels.FromStrings("x", "2"), T: -1, F: math.Inf(-1)},
	}
	mat := promql.Matrix{{Metric: labels.FromStrings("x", "3"),
		Floats:     []promql.FPoint{{T: 0, F: 1.5}},
		Histograms: []promql.HPoint{{T: 1000, H: hs[0]}, {T: 2001, H: hs[1]}}}}

	var c histCodec
	for _, tc := range []struct {
		name string
		data *v1.QueryData
	}{
		{"vector", &v1.QueryData{ResultType: parser.ValueTypeVector, Result: vec}},
		{"matrix", &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: mat}},
	} {
		resp := &v1.Response{Status: "success", Data: tc.data, Warnings: []string{"w"}, Infos: []string{"i"}}
		if !c.CanEncode(resp) {
			t.Fatalf("%s: the codec refuses a query answer", tc.name)
		}
		b, err := c.Encode(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Status   string   `json:"status"`
			Warnings []string `json:"warnings"`
			Infos    []string `json:"infos"`
			Data     struct {
				ResultType string       `json:"resultType"`
				Result     []seriesJSON `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, b)
		}
		if got.Status != "success" || got.Data.ResultType != string(tc.data.ResultType) || len(got.Warnings) != 1 || len(got.Infos) != 1 {
			t.Fatalf("%s: envelope %s", tc.name, b)
		}
		var points []HistogramPoint
		var want []promql.HPoint
		for _, s := range got.Data.Result {
			if s.Histogram != nil {
				points = append(points, *s.Histogram)
			}
			points = append(points, s.Histograms...)
		}
		if tc.name == "vector" {
			want = []promql.HPoint{{T: 1500, H: hs[0]}}
			if got.Data.Result[1].Value == nil || got.Data.Result[1].Value[1] != "-Inf" {
				t.Fatalf("float sample: %s", b)
			}
		} else {
			want = mat[0].Histograms
			if len(got.Data.Result[0].Values) != 1 {
				t.Fatalf("float points: %s", b)
			}
		}
		if len(points) != len(want) {
			t.Fatalf("%s: %d histograms, want %d:\n%s", tc.name, len(points), len(want), b)
		}
		for i, p := range points {
			h, err := p.H.FloatHistogram()
			if err != nil {
				t.Fatal(err)
			}
			if p.T != want[i].T || !sameHistogram(h, want[i].H) {
				t.Fatalf("%s: histogram %d at %d is %v, want %v at %d", tc.name, i, p.T, h, want[i].H, want[i].T)
			}
		}
	}
	if c.CanEncode(&v1.Response{Status: "success", Data: []string{"__name__"}}) {
		t.Fatal("the codec must leave answers other than queries to Prometheus' JSON")
	}
}

// sameHistogram is Equals with NaN sums equal and the hint compared.
func sameHistogram(a, b *histogram.FloatHistogram) bool {
	if math.IsNaN(a.Sum) && math.IsNaN(b.Sum) {
		a, b = a.Copy(), b.Copy()
		a.Sum, b.Sum = 0, 0
	}
	return a.Equals(b) && a.CounterResetHint == b.CounterResetHint && strings.EqualFold(a.String(), b.String())
}
