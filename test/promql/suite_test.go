package promql_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/querier"
)

// features are the PromQL features the suite uses; the querier enables
// them with --enable-feature as Prometheus would.
var features = []string{"promql-experimental-functions", "promql-binop-fill-modifiers", "promql-delayed-name-removal", "utf8-names"}

// startPath starts the store gateway over data's bucket and a querier with
// --query.replica-label=replica in front, and returns the querier's URL.
func startPath(t *testing.T, data *bucketData) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	data.store.Register(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	app, flags := component.NewApp("querier", "", true)
	if _, err := app.Parse([]string{"--http-address=127.0.0.1:0", "--grpc-address=127.0.0.1:0", "--log.level=error"}); err != nil {
		t.Fatal(err)
	}
	rt, err := component.New(flags)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := querier.New(querier.Config{
		Endpoints: []string{l.Addr().String()}, EndpointRefresh: 100 * time.Millisecond, ReplicaLabels: []string{"replica"},
		Timeout: time.Minute, MaxConcurrent: 8, LookbackDelta: 5 * time.Minute, MaxSamples: 50_000_000,
		PartialResponse: false, DefaultStep: time.Minute, Features: features,
		// Every range eval with an aggregation that can be split runs shard
		// by shard, over three shards: the suite checks the answers stay
		// Prometheus' own.
		VerticalShards: 3, ShardConcurrency: 2, ShardMinRange: 0,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, rt); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for ready, _ := rt.Readiness.Status(); !ready; ready, _ = rt.Readiness.Status() {
		if time.Now().After(deadline) {
			t.Fatal("querier not ready")
		}
		time.Sleep(10 * time.Millisecond) // bounded readiness poll
	}
	return "http://" + rt.HTTPAddr().String()
}

// suiteDir finds the PromQL test files of the Prometheus module we build on.
func suiteDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus/prometheus").Output()
	if err != nil {
		t.Fatalf("find the Prometheus module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "promql", "promqltest", "testdata")
}

// cmdBlock is one command of a test file with its indented lines.
type cmdBlock struct {
	kind string // load, clear or eval
	text string
}

// splitTest cuts a test file into commands.
func splitTest(content string) []cmdBlock {
	var (
		out []cmdBlock
		cur *cmdBlock
	)
	for _, line := range strings.Split(content, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			if trimmed == "" {
				cur = nil
			}
			continue
		}
		if line[0] != ' ' && line[0] != '\t' && !strings.HasPrefix(trimmed, "expect") {
			word := strings.Fields(trimmed)[0]
			kind := ""
			switch {
			case strings.HasPrefix(word, "load"):
				kind = "load"
			case word == "clear":
				kind = "clear"
			case strings.HasPrefix(word, "eval"):
				kind = "eval"
			}
			if kind != "" {
				out = append(out, cmdBlock{kind: kind, text: line + "\n"})
				cur = &out[len(out)-1]
				continue
			}
		}
		if cur != nil {
			cur.text += line + "\n"
		}
	}
	return out
}

// evalCases returns, for every eval of a file, a test input holding the
// loads in force before it and the eval alone.
func evalCases(content string) []string {
	var (
		loads []string
		cases []string
	)
	for _, b := range splitTest(content) {
		switch b.kind {
		case "clear":
			loads = nil
		case "load":
			loads = append(loads, b.text)
		case "eval":
			cases = append(cases, strings.Join(loads, "\n")+"\n"+b.text)
		}
	}
	return cases
}

// run runs one eval case on engine in a test tree of its own
// (testing.RunTests), so that its failure is counted rather than failing
// this test, and returns "" or the failure output. promqltest needs a real
// *testing.T for its subtests; the child tree's output is captured.
func run(input string, engine promql.QueryEngine, newStorage func(testing.TB) storage.Storage) string {
	out, restore := captureStdout()
	ok := testing.RunTests(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "eval",
		F: func(t *testing.T) {
			promqltest.RunTestWithStorage(t, input, engine, newStorage)
		},
	}})
	text := restore()
	_ = out
	if ok {
		return ""
	}
	return failureText(text)
}

// stdoutMu serialises stdout capture.
var stdoutMu sync.Mutex

// captureStdout sends os.Stdout to a pipe until restore, which returns what
// was written.
func captureStdout() (*os.File, func() string) {
	stdoutMu.Lock()
	r, w, err := os.Pipe()
	if err != nil {
		stdoutMu.Unlock()
		panic(err)
	}
	orig := os.Stdout
	os.Stdout = w
	var buf strings.Builder
	done := make(chan struct{})
	go func() {
		b := make([]byte, 32<<10)
		for {
			n, err := r.Read(b)
			buf.Write(b[:n])
			if err != nil {
				close(done)
				return
			}
		}
	}()
	return w, func() string {
		os.Stdout = orig
		w.Close()
		<-done
		r.Close()
		stdoutMu.Unlock()
		return buf.String()
	}
}

// failureText keeps the informative lines of a failed test's output.
func failureText(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "Received unexpected error") || (len(keep) > 0 && len(keep) < 3 && l != "" && !strings.HasPrefix(l, "Test:") && !strings.HasPrefix(l, "---")) {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return "failed"
	}
	return strings.Join(keep, " ")
}

type fileResult struct {
	name                     string
	evals, localPass, passed int
	regressions              []string
	// excused is why some evals of the file cannot pass through the path.
	excused string
}

// TestPrometheusSuiteThroughQuerier runs every eval of Prometheus' PromQL
// test suite twice: on Prometheus' engine in process (the reference) and
// through StoreAPI + querier + HTTP. Every eval the reference passes must
// pass through the distributed path too, except those of excusedFiles that
// need data the path cannot carry, reported with the reason.
func TestPrometheusSuiteThroughQuerier(t *testing.T) {
	dir := suiteDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.test"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no PromQL test files in %s: %v", dir, err)
	}
	data := newBucketData(t)
	data.querierURL = startPath(t, data)
	remote := &remoteEngine{url: data.querierURL, client: &http.Client{Timeout: time.Minute}, export: data.export}
	// The reference is Prometheus' own for its suite (promqltest.NewTestEngine
	// and NewBuiltinTestStorage): start timestamps stored and used.
	local := promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{
		MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		EnableAtModifier:         true, EnableNegativeOffset: true, EnableDelayedNameRemoval: true,
		UseStartTimestamps: true,
		Parser:             parser.NewParser(promqltest.TestParserOpts),
	})
	newStorage := func(tb testing.TB) storage.Storage {
		return promqltest.NewBuiltinTestStorage(tb)
	}

	var (
		results []fileResult
		excused int
	)
	total := fileResult{name: "TOTAL"}
	only := os.Getenv("STRATA_PROMQL_FILES") // comma-separated file names, for debugging
	for _, f := range files {
		name := filepath.Base(f)
		if only != "" && !strings.Contains(","+only+",", ","+name+",") {
			continue
		}
		fr := fileResult{name: name, excused: excusedFiles[name]}
		content, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range evalCases(string(content)) {
			fr.evals++
			if run(c, local, newStorage) != "" {
				continue // Prometheus itself fails it in this form.
			}
			fr.localPass++
			if msg := run(c, remote, newStorage); msg != "" {
				fr.regressions = append(fr.regressions, firstLine(c, msg))
				continue
			}
			fr.passed++
		}
		total.evals += fr.evals
		total.localPass += fr.localPass
		total.passed += fr.passed
		if fr.excused != "" {
			excused += fr.localPass - fr.passed
		}
		results = append(results, fr)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "%-28s %6s %6s %6s\n", "file", "evals", "local", "ours")
	for _, r := range results {
		fmt.Fprintf(&report, "%-28s %6d %6d %6d\n", r.name, r.evals, r.localPass, r.passed)
		if r.excused != "" && r.passed < r.localPass {
			fmt.Fprintf(&report, "    %d not comparable: %s\n", r.localPass-r.passed, r.excused)
		}
		for i, reg := range r.regressions {
			if i == 3 {
				fmt.Fprintf(&report, "    ... %d more\n", len(r.regressions)-3)
				break
			}
			fmt.Fprintf(&report, "    %s\n", reg)
		}
	}
	fmt.Fprintf(&report, "%-28s %6d %6d %6d\n", total.name, total.evals, total.localPass, total.passed)
	t.Log("\n" + report.String())

	failing := total.localPass - total.passed - excused
	if failing > maxKnownFailures {
		t.Errorf("%d evals that Prometheus passes fail through store + querier (at most %d known); see the report above", failing, maxKnownFailures)
	}
}

func firstLine(input, msg string) string {
	var eval string
	for _, l := range strings.Split(input, "\n") {
		if strings.HasPrefix(l, "eval") {
			eval = l
		}
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return eval + " => " + msg
}

// excusedFiles hold evals that depend on data the distributed path cannot
// carry, with the reason; their failures are reported, not counted.
var excusedFiles = map[string]string{
	"start_timestamps.test": "start timestamps (@st) live in Prometheus' XOR2 chunks with ST storage; " +
		"Thanos blocks and the StoreAPI's chunk encodings (XOR, histogram, float histogram) cannot hold them",
}

// maxKnownFailures is the number of evals Prometheus passes that do not yet
// pass through the distributed path, excused ones aside; it may only go
// down. Measured 2026-11-30: Prometheus' reference passes all 2433 evals;
// 2403 pass here, the other 30 need start timestamps (excusedFiles).
var maxKnownFailures = 0
