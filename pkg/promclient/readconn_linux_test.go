package promclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/prometheus/prompb"
)

const streamedType = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"

// frames are remote read frames as Prometheus writes them: one series
// each, of sizes around the 10 KB of a real answer, and a small last one.
func frames(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < n; i++ {
		size := 9000 + 37*i%3000
		if i == n-1 {
			size = 50
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(i + j)
		}
		resp := &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{
			Labels: []prompb.Label{{Name: "i", Value: fmt.Sprint(i)}},
			Chunks: []prompb.Chunk{{MinTimeMs: int64(i), MaxTimeMs: int64(i), Type: prompb.Chunk_XOR, Data: data}},
		}}}
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		frame := binary.AppendUvarint(nil, uint64(len(b)))
		frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(b, castagnoli))
		out = append(out, append(frame, b...))
	}
	return out
}

// openStream starts a remote read that must end within 30 s.
func openStream(t *testing.T, c *Client) *ChunkedStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := c.RemoteRead(ctx, &prompb.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// readAll reads a remote read answer and checks that every frame arrived
// whole and in order.
func readAll(t *testing.T, c *Client, want int) {
	t.Helper()
	stream := openStream(t, c)
	defer stream.Close()
	got := 0
	for {
		resp, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
		if v := resp.ChunkedSeries[0].Labels[0].Value; v != fmt.Sprint(got) {
			t.Fatalf("frame %d holds series %s", got, v)
		}
		got++
	}
	if got != want {
		t.Fatalf("read %d frames, want %d", got, want)
	}
}

// TestRemoteReadCoalesced: with reads woken for batches of bytes, an answer
// flushed frame by frame arrives whole, its small end included, and the
// connection dialled ahead serves the next request.
func TestRemoteReadCoalesced(t *testing.T) {
	fs := frames(t, 300)
	var (
		mu    sync.Mutex
		conns = map[string]bool{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Connection") != "close" && !r.Close {
			t.Errorf("remote read request does not ask to close the connection")
		}
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Content-Type", streamedType)
		for _, f := range fs {
			if _, err := w.Write(f); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.rr == nil {
		t.Fatal("remote read has no connections of its own")
	}
	for i := 0; i < 3; i++ {
		readAll(t, c, len(fs))
	}
	// The body is read with the low-water mark set.
	stream, err := c.RemoteRead(context.Background(), &prompb.Query{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	rc, ok := stream.conn.(*readConn)
	if !ok {
		t.Fatalf("remote read connection is a %T", stream.conn)
	}
	mark := 0
	if err := rc.raw.Control(func(fd uintptr) {
		mark, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
	}); err != nil {
		t.Fatal(err)
	}
	if mark != readLowWater {
		t.Fatalf("SO_RCVLOWAT is %d, want %d", mark, readLowWater)
	}
	if len(conns) != 4 {
		t.Fatalf("4 requests came on %d connections, want one each", len(conns))
	}
}

// TestRemoteReadEndWithoutClose: a server (or proxy) that keeps the
// connection open after the answer still has its last bytes, fewer than
// the low-water mark, read: they are sent once the reader has read all
// the others, so it waits for them.
func TestRemoteReadEndWithoutClose(t *testing.T) {
	fs := frames(t, 20)
	more, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", streamedType)
		for i, f := range fs {
			if i == len(fs)-1 {
				select {
				case <-more:
				case <-done:
					return
				}
			}
			fmt.Fprintf(bw, "%x\r\n%s\r\n", len(f), f)
			bw.Flush()
		}
		bw.WriteString("0\r\n\r\n")
		bw.Flush()
		<-done // the connection stays open
	}))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	stream := openStream(t, c)
	defer stream.Close()
	for got := 0; ; got++ {
		if got == len(fs)-1 {
			close(more)
		}
		_, err := stream.Next()
		if errors.Is(err, io.EOF) {
			if got != len(fs) {
				t.Fatalf("read %d frames, want %d", got, len(fs))
			}
			return
		}
		if err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
	}
}

// TestRemoteReadCancelWhileWaiting: a read waiting for Prometheus ends
// when the request is cancelled.
func TestRemoteReadCancelWhileWaiting(t *testing.T) {
	fs := frames(t, 4)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", streamedType)
		for _, f := range fs[:3] {
			w.Write(f)
		}
		w.(http.Flusher).Flush()
		<-done
	}))
	defer srv.Close()
	defer close(done) // before Close, which waits for the handler
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.RemoteRead(ctx, &prompb.Query{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for i := 0; i < 3; i++ {
		if _, err := stream.Next(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	// Whether the cancel comes before or during the wait, Next must end.
	time.AfterFunc(10*time.Millisecond, cancel)
	if _, err := stream.Next(); err == nil {
		t.Fatal("a stalled answer gave a fourth frame")
	}
}

// TestRemoteReadStaleSpare: a connection dialled ahead that the server has
// closed meanwhile (its idle timeout, a restart) is not used.
func TestRemoteReadStaleSpare(t *testing.T) {
	fs := frames(t, 5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", streamedType)
		for _, f := range fs {
			w.Write(f)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, c, len(fs))
	sd := spareOf(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sd.mu.Lock()
		ready := sd.spare != nil
		sd.mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection was dialled ahead")
		}
		time.Sleep(time.Millisecond)
	}
	// The server closes every idle connection, the spare among them; the
	// client sees the end only when it looks.
	srv.CloseClientConnections()
	sd.mu.Lock()
	spare := sd.spare
	sd.mu.Unlock()
	deadline = time.Now().Add(10 * time.Second)
	for spare.idle() {
		if time.Now().After(deadline) {
			t.Fatal("the spare connection still looks open after the server closed it")
		}
		time.Sleep(time.Millisecond)
	}
	readAll(t, c, len(fs))
}

func spareOf(t *testing.T, c *Client) *spareDialer {
	t.Helper()
	if c.spare == nil {
		t.Fatal("remote read dials no connections ahead")
	}
	return c.spare
}
