package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// DataDir holds the TSDB; a new temporary directory when empty. Tests
	// put blocks there before starting to have Prometheus load them.
	DataDir string
	// ExternalLabels of the Prometheus (global.external_labels).
	ExternalLabels map[string]string
	// ScrapeInterval of the built-in self-scrape job (default 1s).
	ScrapeInterval time.Duration
	// ScrapeTargets are extra host:port targets of a job named "strata".
	ScrapeTargets []string
	// BlockDuration sets --storage.tsdb.min-block-duration and
	// --storage.tsdb.max-block-duration (default: Prometheus' 2h).
	BlockDuration time.Duration
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Prometheus is a running real Prometheus.
type Prometheus struct {
	*Process
	URL     string
	Addr    string
	DataDir string
}

// StartPrometheus starts the real Prometheus from .tools/bin and waits until
// it is ready.
func StartPrometheus(t testing.TB, o PrometheusOptions) *Prometheus {
	t.Helper()
	bin := ToolBinary(t, "prometheus")
	work := t.TempDir()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(work, "data")
	}
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = time.Second
	}
	addr := FreeAddr(t)
	cfgPath := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(prometheusConfig(o, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + o.DataDir,
		"--web.listen-address=" + addr,
		// Generated history can be old: keep it.
		"--storage.tsdb.retention.time=100y",
		"--web.enable-lifecycle",
	}
	if o.BlockDuration > 0 {
		d := fmt.Sprintf("%dms", o.BlockDuration.Milliseconds())
		args = append(args, "--storage.tsdb.min-block-duration="+d, "--storage.tsdb.max-block-duration="+d)
	}
	args = append(args, o.ExtraArgs...)
	p := &Prometheus{
		Process: StartProcess(t, "prometheus", work, nil, bin, args...),
		URL:     "http://" + addr,
		Addr:    addr,
		DataDir: o.DataDir,
	}
	p.WaitReady()
	return p
}

// WaitReady waits until /-/ready answers.
func (p *Prometheus) WaitReady() { p.WaitHTTP(p.URL+"/-/ready", ReadyTimeout) }

// Restart stops Prometheus and starts it again on the same port and data.
func (p *Prometheus) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.WaitReady()
}

// API returns a client_golang API client for this Prometheus.
func (p *Prometheus) API(t testing.TB) promv1.API {
	return NewAPI(t, p.URL)
}

// NewAPI returns a Prometheus HTTP API client for url (ours or Prometheus').
func NewAPI(t testing.TB, url string) promv1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

// NewAPIWithParams is NewAPI with params added to every request, for the
// querier's own parameters (max_source_resolution, dedup, ...).
func NewAPIWithParams(t testing.TB, u string, params url.Values) promv1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: u, RoundTripper: paramsTripper{params}})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

type paramsTripper struct{ params url.Values }

func (p paramsTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	q := r.URL.Query()
	for k, vs := range p.params {
		q[k] = vs
	}
	r.URL.RawQuery = q.Encode()
	return http.DefaultTransport.RoundTrip(r)
}

// QueryContext returns a context bounded for one query.
func QueryContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func prometheusConfig(o PrometheusOptions, self string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", o.ScrapeInterval, o.ScrapeInterval)
	if len(o.ExternalLabels) > 0 {
		b.WriteString("  external_labels:\n")
		keys := make([]string, 0, len(o.ExternalLabels))
		for k := range o.ExternalLabels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s: %q\n", k, o.ExternalLabels[k])
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [%q]\n", self)
	if len(o.ScrapeTargets) > 0 {
		fmt.Fprintf(&b, "  - job_name: strata\n    static_configs:\n      - targets:\n")
		for _, tg := range o.ScrapeTargets {
			fmt.Fprintf(&b, "          - %q\n", tg)
		}
	}
	return b.String()
}
