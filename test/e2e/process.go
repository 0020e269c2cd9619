package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long a process may take to become ready.
var ReadyTimeout = 2 * time.Minute

// repoRoot finds the repository root by walking up to go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/strata-metrics/strata\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod of github.com/strata-metrics/strata) not found")
		}
		dir = parent
	}
}

// binary returns the path of a binary in the directory named by env (or
// <repo>/fallback), skipping the test when it is missing outside CI and
// failing it in CI, where `make test` must have built it.
func binary(t testing.TB, env, fallback, name, hint string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, fallback)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s not found at %s: run %s", name, p, hint)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// ToolBinary returns the path of a tool installed by `make tools`
// (prometheus, promtool, minio).
func ToolBinary(t testing.TB, name string) string {
	return binary(t, "STRATA_TOOLS_BIN", ".tools/bin", name, "make tools")
}

// StrataBinary returns the path of one of our binaries built by `make build`.
func StrataBinary(t testing.TB, name string) string {
	return binary(t, "STRATA_BIN_DIR", "bin", name, "make build")
}

// FreeAddr returns a free 127.0.0.1 address. The port is free when
// returned; the process that gets it binds it right away.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// logBuffer collects a process's output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is a started process.
type Process struct {
	Name string
	t    testing.TB
	bin  string
	args []string
	env  []string
	dir  string
	logs *logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// StartProcess starts bin with args in dir and registers its stop (and
// printing its log if the test failed) for the end of the test.
func StartProcess(t testing.TB, name, dir string, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, t: t, bin: bin, args: args, env: env, dir: dir, logs: &logBuffer{}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("=== log of %s (last 8 KiB) ===\n%s", p.Name, tail(p.Logs(), 8<<10))
		}
	})
	return p
}

// Start (re)starts the process with the same arguments.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	fmt.Fprintf(p.logs, "--- start %s %s\n", p.bin, strings.Join(p.args, " "))
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	// Own process group, so that stopping it stops any children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (p *Process) exitedLocked() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Exited tells whether the process has ended.
func (p *Process) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd == nil || p.exitedLocked()
}

// Stop sends SIGTERM and, if the process is still there after 20s, SIGKILL.
func (p *Process) Stop() { p.signal(syscall.SIGTERM, 20*time.Second) }

// Kill stops the process at once with SIGKILL, as a crash would.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

// Freeze stops the process (SIGSTOP): it keeps its sockets, so clients
// connect and wait, as with a hung process. Thaw resumes it.
func (p *Process) Freeze() { p.rawSignal(syscall.SIGSTOP) }

// Thaw resumes a frozen process.
func (p *Process) Thaw() { p.rawSignal(syscall.SIGCONT) }

func (p *Process) rawSignal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

func (p *Process) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, cmd.Process.Pid)
	}
}

// Logs returns everything the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// WaitHTTP polls url until it answers 200, failing the test when the
// process exits first or the deadline passes.
func (p *Process) WaitHTTP(url string, timeout time.Duration) {
	p.t.Helper()
	if err := p.waitHTTP(url, timeout); err != nil {
		p.t.Fatalf("%v\n=== log of %s ===\n%s", err, p.Name, tail(p.Logs(), 8<<10))
	}
}

func (p *Process) waitHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	last := "no answer"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited before %s answered (%v)", p.Name, url, p.err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready within %v (last: %s)", p.Name, url, timeout, last)
		case <-tick.C:
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Eventually polls cond every interval until it returns nil or timeout
// passes, then fails the test with cond's last error.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(interval) // poll interval, bounded by the deadline
	}
}

// PeakRSS returns the process' peak resident set size (VmHWM) in bytes,
// from /proc; 0 when it is not running or not on Linux.
func (p *Process) PeakRSS() int64 {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
