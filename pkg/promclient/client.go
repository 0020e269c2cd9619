package promclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"
)

// Client is a client of one Prometheus.
type Client struct {
	base *url.URL
	hc   *http.Client
	// rr is for remote read when it has connections of its own (see
	// readconn_linux.go); nil uses hc.
	rr *http.Client
	// spare is rr's dialer, which keeps a connection ahead (for tests).
	spare *spareDialer
}

// New returns a client of the Prometheus at rawURL.
func New(rawURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("--prometheus.url %q is not an absolute URL", rawURL)
	}
	if hc == nil {
		// Remote read answers one series per frame, written through
		// Prometheus' 2 KiB response buffer: with the default 4 KiB read
		// buffer a 20 MB answer took some 5,000 read calls.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ReadBufferSize = 256 << 10
		hc = &http.Client{Transport: t}
		rr, spare := remoteReadClient(u.Scheme, t)
		return &Client{base: u, hc: hc, rr: rr, spare: spare}, nil
	}
	return &Client{base: u, hc: hc}, nil
}

// URL is the Prometheus' address.
func (c *Client) URL() string { return c.base.String() }

func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// getJSON GETs an API path and decodes its data field into out.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(path, q), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: HTTP %d, cannot decode the answer: %w", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, body.Error)
	}
	return json.Unmarshal(body.Data, out)
}

// ExternalLabels reads global.external_labels from the running config.
func (c *Client) ExternalLabels(ctx context.Context) (labels.Labels, error) {
	var data struct {
		YAML string `json:"yaml"`
	}
	if err := c.getJSON(ctx, "/api/v1/status/config", nil, &data); err != nil {
		return labels.EmptyLabels(), err
	}
	var cfg struct {
		Global struct {
			ExternalLabels map[string]string `yaml:"external_labels"`
		} `yaml:"global"`
	}
	if err := yaml.Unmarshal([]byte(data.YAML), &cfg); err != nil {
		return labels.EmptyLabels(), fmt.Errorf("parse Prometheus' config: %w", err)
	}
	return labels.FromMap(cfg.Global.ExternalLabels), nil
}

// Flags returns Prometheus' command line flags.
func (c *Client) Flags(ctx context.Context) (map[string]string, error) {
	var flags map[string]string
	err := c.getJSON(ctx, "/api/v1/status/flags", nil, &flags)
	return flags, err
}

// HeadMinTime returns the oldest timestamp in Prometheus' head block, or
// false when the head is empty.
func (c *Client) HeadMinTime(ctx context.Context) (int64, bool, error) {
	var data struct {
		HeadStats struct {
			NumSeries int64 `json:"numSeries"`
			MinTime   int64 `json:"minTime"`
		} `json:"headStats"`
	}
	if err := c.getJSON(ctx, "/api/v1/status/tsdb", nil, &data); err != nil {
		return 0, false, err
	}
	return data.HeadStats.MinTime, data.HeadStats.NumSeries > 0, nil
}

// LabelNames returns the label names of the series matching any of match in
// [start, end].
func (c *Client) LabelNames(ctx context.Context, match []string, start, end int64) ([]string, error) {
	var names []string
	err := c.getJSON(ctx, "/api/v1/labels", rangeQuery(match, start, end), &names)
	return names, err
}

// LabelValues returns the values of a label.
func (c *Client) LabelValues(ctx context.Context, name string, match []string, start, end int64) ([]string, error) {
	var vals []string
	err := c.getJSON(ctx, "/api/v1/label/"+url.PathEscape(name)+"/values", rangeQuery(match, start, end), &vals)
	return vals, err
}

// Metadata is one metric's type, help and unit as Prometheus reports it.
type Metadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// Metadata returns the metadata of the metrics Prometheus scrapes, by metric
// name: of one metric when metric is set, of at most limit metrics when
// limit >= 0 (0: none, as Prometheus answers it).
func (c *Client) Metadata(ctx context.Context, metric string, limit int) (map[string][]Metadata, error) {
	q := url.Values{}
	if metric != "" {
		q.Set("metric", metric)
	}
	if limit >= 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out map[string][]Metadata
	err := c.getJSON(ctx, "/api/v1/metadata", q, &out)
	return out, err
}

// ExemplarSeries is a series' exemplars as /api/v1/query_exemplars gives
// them.
type ExemplarSeries struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []struct {
		Labels    map[string]string `json:"labels"`
		Value     string            `json:"value"`
		Timestamp float64           `json:"timestamp"`
	} `json:"exemplars"`
}

// Exemplars returns the exemplars of the series query selects in [start,
// end] (milliseconds).
func (c *Client) Exemplars(ctx context.Context, query string, start, end int64) ([]ExemplarSeries, error) {
	q := url.Values{"query": {query}}
	q.Set("start", formatMs(start))
	q.Set("end", formatMs(end))
	var out []ExemplarSeries
	err := c.getJSON(ctx, "/api/v1/query_exemplars", q, &out)
	return out, err
}

func rangeQuery(match []string, start, end int64) url.Values {
	q := url.Values{"match[]": match}
	q.Set("start", formatMs(start))
	q.Set("end", formatMs(end))
	return q
}

func formatMs(ms int64) string {
	// Prometheus accepts RFC3339 or Unix seconds; clamp the extremes it cannot parse.
	const minS, maxS = -9223372036854, 9223372036854
	s := float64(ms) / 1000
	if s < minS {
		s = minS
	}
	if s > maxS {
		s = maxS
	}
	return strconv.FormatFloat(s, 'f', 3, 64)
}

// ChunkedStream is a remote read answer read one frame at a time.
type ChunkedStream struct {
	body      io.ReadCloser
	closeOnce sync.Once
	r         *bufio.Reader
	buf       []byte
	conn      net.Conn // the connection, when remote read has its own
}

// maxFrameBytes bounds one remote read frame; Prometheus writes about 1 MiB.
const maxFrameBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Next decodes the next frame; io.EOF at the end. Each frame is a new
// message, so a caller may hold one while reading the next.
func (s *ChunkedStream) Next() (*prompb.ChunkedReadResponse, error) {
	raw, err := s.NextRaw(s.buf)
	if err != nil {
		return nil, err
	}
	s.buf = raw
	resp := &prompb.ChunkedReadResponse{}
	if err := proto.Unmarshal(raw, resp); err != nil {
		return nil, fmt.Errorf("decode remote read frame: %w", err)
	}
	return resp, nil
}

// NextRaw reads the next frame's ChunkedReadResponse, undecoded, into buf
// (grown when too small) and checks its checksum; io.EOF at the end.
func (s *ChunkedStream) NextRaw(buf []byte) ([]byte, error) {
	return s.AppendRaw(buf[:0])
}

// AppendRaw appends the next frame's ChunkedReadResponse, undecoded, to
// dst (grown when too small) and checks its checksum; io.EOF at the end.
// It lets a caller that parses frames itself gather several in one buffer
// and rotate a few buffers instead of allocating one message per frame.
// The format: a uvarint length, a big-endian CRC-32 (Castagnoli) of the
// data, the data.
func (s *ChunkedStream) AppendRaw(dst []byte) ([]byte, error) {
	size, err := binary.ReadUvarint(s.r)
	if err != nil {
		return dst, err
	}
	if size > maxFrameBytes {
		return dst, fmt.Errorf("remote read frame of %d bytes is larger than the %d bytes allowed", size, maxFrameBytes)
	}
	var sum [4]byte
	if _, err := io.ReadFull(s.r, sum[:]); err != nil {
		return dst, noEOF(err)
	}
	start := len(dst)
	dst = slices.Grow(dst, int(size))[:start+int(size)]
	if _, err := io.ReadFull(s.r, dst[start:]); err != nil {
		return dst[:start], noEOF(err)
	}
	if crc32.Checksum(dst[start:], castagnoli) != binary.BigEndian.Uint32(sum[:]) {
		return dst[:start], errors.New("remote read frame is corrupt: checksum mismatch")
	}
	return dst, nil
}

// Buffered tells whether the next bytes of the stream are already read:
// when not, the next frame waits for Prometheus.
func (s *ChunkedStream) Buffered() bool { return s.r.Buffered() > 0 }

// noEOF turns an end of stream inside a frame into the error it is.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close releases the connection and the read buffer. Nothing may be
// reading the stream any more: a goroutine blocked in a read must be
// stopped first (CloseBody) and waited for.
func (s *ChunkedStream) Close() error {
	err := s.CloseBody()
	if s.r != nil {
		s.r.Reset(nil)
		readers.Put(s.r)
		s.r = nil
	}
	return err
}

// CloseBody closes the connection, which makes a read in progress return
// an error, but keeps the read buffer: safe while another goroutine reads.
// It may be called more than once.
func (s *ChunkedStream) CloseBody() error {
	var err error
	s.closeOnce.Do(func() { err = s.body.Close() })
	return err
}

// readers keeps the streams' read buffers for the next request: a new
// 256 KiB buffer per Series request was most of what the sidecar's garbage
// collector had to do.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

// RemoteRead sends one query with streamed XOR chunks accepted and returns
// the stream of frames. Memory stays bounded by one frame.
func (c *Client) RemoteRead(ctx context.Context, q *prompb.Query) (*ChunkedStream, error) {
	rr := &prompb.ReadRequest{
		Queries:               []*prompb.Query{q},
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS},
	}
	raw, err := proto.Marshal(rr)
	if err != nil {
		return nil, err
	}
	body := snappy.Encode(nil, raw)
	var (
		resp *http.Response
		conn net.Conn
	)
	// A connection dialled ahead may have been closed by Prometheus just
	// after it was checked: such a failure is tried once more, on a new
	// connection (the Transport retries only kept-alive ones).
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint("/api/v1/read", nil), bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
		hc := c.hc
		conn = nil
		if c.rr != nil {
			hc = c.rr
			req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }}))
		}
		resp, err = hc.Do(req)
		if err == nil {
			break
		}
		if attempt > 0 || ctx.Err() != nil || !dialledAhead(conn) {
			return nil, fmt.Errorf("remote read: %w", err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("remote read: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse") {
		resp.Body.Close()
		return nil, fmt.Errorf("remote read: Prometheus answered %q, not streamed chunks", ct)
	}
	if conn != nil {
		coalesceReads(conn)
	}
	r := readers.Get().(*bufio.Reader)
	r.Reset(resp.Body)
	return &ChunkedStream{body: resp.Body, r: r, conn: conn}, nil
}

// Ready tells whether Prometheus answers /-/ready.
func (c *Client) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint("/-/ready", nil), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("Prometheus is not ready: " + resp.Status)
	}
	return nil
}
