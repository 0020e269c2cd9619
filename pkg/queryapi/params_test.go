package queryapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/common/route"

	"github.com/strata-metrics/strata/pkg/query"
)

// TestResolutionParams: bad resolutions and steps are 400 bad_data; the
// lookback widens to 1h where the resolution read may be 1h, auto
// included, and not over raw or 5m data.
func TestResolutionParams(t *testing.T) {
	a := &API{cfg: Config{AutoDownsampling: true, LookbackDelta: 5 * time.Minute}}
	for _, bad := range []url.Values{
		{"max_source_resolution": {"-3600"}},
		{"max_source_resolution": {"NaN"}},
		{"max_source_resolution": {"+Inf"}},
		{"max_source_resolution": {"1x"}},
		{"step": {"-60"}},
	} {
		if _, err := a.options(bad); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
	for _, c := range []struct {
		form url.Values
		want time.Duration
	}{
		{url.Values{"step": {"60"}}, 0},
		{url.Values{"step": {"1500"}}, 0}, // auto: 5m
		{url.Values{"step": {"18000"}}, time.Hour},
		{url.Values{"step": {"18000"}, "lookback_delta": {"10m"}}, 0},
		{url.Values{"max_source_resolution": {"5m"}}, 0}, // the default 5m is enough
		{url.Values{"max_source_resolution": {"1h"}}, time.Hour},
		{url.Values{"max_source_resolution": {"0s"}, "step": {"18000"}}, 0},
	} {
		opts, err := a.options(c.form)
		if err != nil {
			t.Fatalf("%v: %v", c.form, err)
		}
		if got := a.lookbackFor(c.form, opts); got != c.want {
			t.Errorf("%v: lookback %v, want %v", c.form, got, c.want)
		}
	}
}

// TestErrorBodiesAreJSON: error bodies parse as JSON whatever the message
// holds (Go's %q quoting has escapes JSON has not).
func TestErrorBodiesAreJSON(t *testing.T) {
	a := &API{cfg: Config{Defaults: query.Options{}}}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/%01%ff", nil))
	var body struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusNotFound || body.ErrorType != "not_found" {
		t.Fatalf("HTTP %d, body %q: %v", rec.Code, rec.Body.String(), err)
	}
}

// TestInstantQueryIgnoresStep: as Prometheus, an instant query ignores a
// step parameter, even one that would be invalid for a range query.
func TestInstantQueryIgnoresStep(t *testing.T) {
	a := &API{cfg: Config{AutoDownsampling: true}}
	rec := httptest.NewRecorder()
	// No engine behind: past the parameters, the request goes to a
	// router without routes, and gets its 404 rather than a 400.
	a.router = route.New()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query?query=up&step=-60", nil))
	if rec.Code == http.StatusBadRequest {
		t.Fatalf("an instant query with step=-60: HTTP %d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query_range?query=up&step=-60", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("a range query with step=-60: HTTP %d, want 400", rec.Code)
	}
}
