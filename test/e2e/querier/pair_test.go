package querier_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-metrics/strata/test/e2e"
)

// scrapeInterval of both replicas.
const scrapeInterval = time.Second

// haPair is one HA pair of real Prometheus servers, replica a and b of
// cluster e2e, each with a sidecar, and a querier deduplicating on the
// replica label in front of both. Both replicas scrape the same targets:
// each other (job prometheus) and the sidecars and the querier (job
// strata).
type haPair struct {
	promA, promB *e2e.Prometheus
	scA, scB     *e2e.Strata
	q            *e2e.Strata
	// app is the address of an instrumented application both scrape
	// (job app), with an exemplar.
	app string
	// targets are every scrape target's host:port, in job order.
	targets []string
}

func startHAPair(t *testing.T) *haPair {
	t.Helper()
	shared := t.TempDir()
	sdFile := filepath.Join(shared, "strata.json")
	writeFileAtomic(t, sdFile, []byte("[]"))
	addrA, addrB := e2e.FreeAddr(t), e2e.FreeAddr(t)
	app := startApp(t)
	h := &haPair{
		promA: startReplica(t, "a", addrA, []string{addrA, addrB}, app, sdFile),
		promB: startReplica(t, "b", addrB, []string{addrA, addrB}, app, sdFile),
		app:   app,
	}
	h.promA.WaitReady()
	h.promB.WaitReady()
	h.scA = e2e.StartStrata(t, "sidecar", true, "", "--prometheus.url="+h.promA.URL, "--tsdb.path="+h.promA.DataDir)
	h.scB = e2e.StartStrata(t, "sidecar", true, "", "--prometheus.url="+h.promB.URL, "--tsdb.path="+h.promB.DataDir)
	h.q = e2e.StartStrata(t, "querier", true, "",
		"--endpoint="+h.scA.GRPCAddr, "--endpoint="+h.scB.GRPCAddr,
		"--query.replica-label=replica", "--endpoint.refresh-interval=1s",
		// Every range query with an aggregation that can be split is
		// evaluated shard by shard, over the sidecars' remote reads.
		"--query.vertical-shards=4", "--query.vertical-shards-min-range=0s")

	// Now that their addresses are known, both replicas scrape the
	// Strata processes too (file SD picks the file up on change).
	strata := []string{h.scA.HTTPAddr, h.scB.HTTPAddr, h.q.HTTPAddr}
	b, err := json.Marshal([]map[string][]string{{"targets": strata}})
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, sdFile, b)
	h.targets = append([]string{addrA, addrB, app}, strata...)
	return h
}

// startReplica starts one real Prometheus of the pair on addr without
// waiting for it.
func startReplica(t *testing.T, replica, addr string, peers []string, app, sdFile string) *e2e.Prometheus {
	t.Helper()
	bin := e2e.ToolBinary(t, "prometheus")
	work := t.TempDir()
	cfg := filepath.Join(work, "prometheus.yml")
	writeFileAtomic(t, cfg, []byte(replicaConfig(replica, peers, app, sdFile)))
	data := filepath.Join(work, "data")
	args := []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + data,
		"--web.listen-address=" + addr,
		// The sidecar ships only uncompacted blocks.
		"--storage.tsdb.min-block-duration=2h",
		"--storage.tsdb.max-block-duration=2h",
		"--enable-feature=exemplar-storage",
	}
	return &e2e.Prometheus{
		Process: e2e.StartProcess(t, "prometheus-"+replica, work, nil, bin, args...),
		URL:     "http://" + addr,
		Addr:    addr,
		DataDir: data,
	}
}

func replicaConfig(replica string, peers []string, app, sdFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", scrapeInterval, scrapeInterval)
	fmt.Fprintf(&b, "  external_labels:\n    cluster: e2e\n    replica: %q\n", replica)
	b.WriteString("scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets:\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "          - %q\n", p)
	}
	fmt.Fprintf(&b, "  - job_name: app\n    static_configs:\n      - targets: [%q]\n", app)
	fmt.Fprintf(&b, "  - job_name: strata\n    file_sd_configs:\n      - files: [%q]\n        refresh_interval: 1s\n", sdFile)
	return b.String()
}

// writeFileAtomic writes through a rename, so that a watcher never reads a
// half-written file.
func writeFileAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// appExemplar is the exemplar the app's counter carries.
const appExemplar = "abc123"

// startApp serves an instrumented application's metrics on 127.0.0.1 in
// OpenMetrics, so that Prometheus keeps exemplars: Go runtime metrics and
// a counter with one exemplar (trace_id=appExemplar), the same for every
// scrape.
func startApp(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests served, with a trace exemplar."})
	reg.MustRegister(c)
	c.(prometheus.ExemplarAdder).AddWithExemplar(3, prometheus.Labels{"trace_id": appExemplar})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}
