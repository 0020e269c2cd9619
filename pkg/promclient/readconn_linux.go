package promclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Remote read answers come one frame per series (about 10 KB), each
// flushed by Prometheus on its own. A sidecar that keeps up is woken for
// every one of them: some 900 wake-ups for a 10 MB answer, a third of the
// sidecar's CPU in task switches, taken from Prometheus on a shared node. So a remote read connection asks the kernel to wake its
// reader only once readLowWater bytes are waiting (SO_RCVLOWAT). The last
// bytes of an answer are usually fewer: Prometheus closes the connection
// after the answer (the request says Connection: close), and the end of
// the connection wakes the reader at once. A connection is dialled ahead
// of the next request, so closing costs no handshake on the request's
// path. Should the end not come (a proxy that keeps the connection open),
// a reader that has waited readWakeAfter is woken for whatever is there.

const (
	// readLowWater stays under a fresh connection's receive window
	// (64 KiB), which the sender cannot go beyond before the reader reads.
	readLowWater  = 32 << 10
	readWakeAfter = 2 * time.Millisecond
	// spareMaxAge is how long a connection dialled ahead is used; older
	// ones are closed unused (Prometheus closes idle connections after
	// --web.read-timeout, 5m by default).
	spareMaxAge = 30 * time.Second
)

// remoteReadClient returns the HTTP client for remote read: t's settings,
// one connection per request, dialled ahead. Only for plain HTTP: over TLS
// a new connection per request would cost a handshake each.
func remoteReadClient(scheme string, t *http.Transport) (*http.Client, *spareDialer) {
	if scheme != "http" {
		return nil, nil
	}
	rt := t.Clone()
	rt.DisableKeepAlives = true
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	sd := &spareDialer{dial: d.DialContext}
	rt.DialContext = sd.DialContext
	return &http.Client{Transport: rt}, sd
}

// spareDialer keeps one connection dialled ahead of the next request.
type spareDialer struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	spare   *readConn
	key     string // network and address of spare
	born    time.Time
	dialing bool
}

func (s *spareDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	key := network + " " + addr
	s.mu.Lock()
	c, ok := s.spare, s.key == key && time.Since(s.born) < spareMaxAge
	s.spare = nil
	s.mu.Unlock()
	if c != nil && (!ok || !c.idle()) {
		c.Close()
		c = nil
	}
	s.dialAhead(network, addr)
	if c != nil {
		c.dialledAhead = true
		return c, nil
	}
	return s.dialConn(ctx, network, addr)
}

func (s *spareDialer) dialConn(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newReadConn(c), nil
}

// dialAhead dials the next spare in the background, unless one is on its
// way. A failed dial is left to the next request, which dials itself.
func (s *spareDialer) dialAhead(network, addr string) {
	s.mu.Lock()
	if s.dialing {
		s.mu.Unlock()
		return
	}
	s.dialing = true
	s.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := s.dialConn(ctx, network, addr)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.dialing = false
		if err != nil {
			return
		}
		rc, ok := c.(*readConn)
		if !ok || s.spare != nil {
			c.Close()
			return
		}
		s.spare, s.key, s.born = rc, network+" "+addr, time.Now()
		// Unused, it is closed when too old rather than left to
		// Prometheus' timeout.
		time.AfterFunc(spareMaxAge, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.spare == rc {
				s.spare = nil
				rc.Close()
			}
		})
	}()
}

// readConn is a TCP connection whose reader can ask to be woken only once
// readLowWater bytes are there.
type readConn struct {
	net.Conn
	raw          syscall.RawConn
	coalesce     atomic.Bool
	dialledAhead bool // set before the Transport has it

	// The timer wakes a reader that has waited readWakeAfter: it lowers the
	// mark to one byte and sets a read deadline in the past, since kernels
	// before 4.18 do not wake a reader when the mark is lowered.
	mu      sync.Mutex
	lowered bool // the mark is one byte until the next wait
	kicked  bool // the read deadline is the timer's
	timer   *time.Timer
}

// newReadConn wraps a TCP connection; anything else is returned as is.
func newReadConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &readConn{Conn: tc, raw: raw}
	rc.timer = time.AfterFunc(time.Hour, rc.wake)
	rc.timer.Stop()
	return rc
}

func (c *readConn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lowered, c.kicked = true, true
	c.setLowWater(1)
	_ = c.Conn.SetReadDeadline(time.Now())
}

// idle tells whether the connection is still open with nothing to read,
// as a connection dialled ahead must be.
func (c *readConn) idle() bool {
	ok := false
	_ = c.raw.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN
	})
	return ok
}

func (c *readConn) setLowWater(n int) {
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	})
}

// coalesceReads makes the reader wait for readLowWater bytes from now on:
// for the body of a remote read answer, once its headers are read.
func (c *readConn) coalesceReads() {
	c.setLowWater(readLowWater)
	c.coalesce.Store(true)
}

func (c *readConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

func (c *readConn) Read(p []byte) (int, error) {
	if !c.coalesce.Load() || len(p) == 0 {
		return c.Conn.Read(p)
	}
	for {
		n, err := c.read(p)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.mu.Lock()
			kicked := c.kicked
			if kicked {
				c.kicked = false
				_ = c.Conn.SetReadDeadline(time.Time{})
			}
			c.mu.Unlock()
			if kicked {
				continue
			}
		}
		return n, err
	}
}

func (c *readConn) read(p []byte) (int, error) {
	var (
		n     int
		rerr  error
		armed bool
	)
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr != syscall.EAGAIN {
			return true
		}
		// Nothing there: wait for the mark, the end, or the timer.
		if !armed {
			armed = true
			c.mu.Lock()
			if c.lowered {
				c.lowered = false
				c.setLowWater(readLowWater)
			}
			c.mu.Unlock()
			c.timer.Reset(readWakeAfter)
		}
		return false
	})
	if armed {
		c.timer.Stop()
	}
	if err != nil {
		// RawConn's own errors (closed, deadline) are already wrapped.
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read"
			return 0, oe
		}
	} else if rerr != nil {
		err = os.NewSyscallError("read", rerr)
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// coalesceReads asks conn, if it is a remote read connection, to wake its
// reader for batches of bytes.
func coalesceReads(conn net.Conn) {
	if c, ok := conn.(*readConn); ok {
		c.coalesceReads()
	}
}

// dialledAhead tells whether conn was dialled ahead of its request.
func dialledAhead(conn net.Conn) bool {
	c, ok := conn.(*readConn)
	return ok && c.dialledAhead
}
