package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/promclient"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// store serves Prometheus' data over the StoreAPI.
type store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer
	metadatapb.UnimplementedMetadataServer
	exemplarspb.UnimplementedExemplarsServer
	prom    *promclient.Client
	ext     func() labels.Labels
	minTime func() int64
}

func (s *store) register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
	metadatapb.RegisterMetadataServer(srv, s)
	exemplarspb.RegisterExemplarsServer(srv, s)
}

// Info advertises the external labels and Prometheus' time range: its
// oldest data to +∞, and the metadata and exemplars APIs.
func (s *store) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return &infopb.InfoResponse{
		LabelSets:      []*labelpb.ZLabelSet{{Labels: storeapi.LabelsToProto(s.ext())}},
		ComponentType:  "sidecar",
		Store:          &infopb.StoreInfo{MinTime: s.minTime(), MaxTime: math.MaxInt64, SupportsSharding: true, SupportsWithoutReplicaLabels: true},
		MetricMetadata: &infopb.MetricMetadataInfo{},
		// Exemplars live in Prometheus' memory only: any time it may hold.
		Exemplars: &infopb.ExemplarsInfo{MinTime: math.MinInt64, MaxTime: math.MaxInt64},
	}, nil
}

func toPromMatchers(ms []*labels.Matcher) []*prompb.LabelMatcher {
	out := make([]*prompb.LabelMatcher, 0, len(ms))
	for _, m := range ms {
		t := prompb.LabelMatcher_EQ
		switch m.Type {
		case labels.MatchNotEqual:
			t = prompb.LabelMatcher_NEQ
		case labels.MatchRegexp:
			t = prompb.LabelMatcher_RE
		case labels.MatchNotRegexp:
			t = prompb.LabelMatcher_NRE
		}
		out = append(out, &prompb.LabelMatcher{Type: t, Name: m.Name, Value: m.Value})
	}
	return out
}

func chunkType(e prompb.Chunk_Encoding) (storepb.Chunk_Encoding, error) {
	switch e {
	case prompb.Chunk_XOR:
		return storepb.Chunk_XOR, nil
	case prompb.Chunk_HISTOGRAM:
		return storepb.Chunk_HISTOGRAM, nil
	case prompb.Chunk_FLOAT_HISTOGRAM:
		return storepb.Chunk_FLOAT_HISTOGRAM, nil
	}
	return 0, fmt.Errorf("Prometheus sent chunk encoding %v, which the StoreAPI cannot carry", e)
}

// Series streams Prometheus' series for the request, frame by frame. When
// replica labels are to be dropped the order changes, so the answer is
// sorted again in memory, as Thanos' sidecar does.
func (s *store) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ctx := srv.Context()
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ext := s.ext()
	series, ok := storeapi.SplitExternalMatchers(ms, ext)
	if !ok {
		return nil
	}
	if len(series) == 0 {
		return status.Error(codes.InvalidArgument, "no matchers specified (excluding external labels)")
	}
	var strip []string
	for _, l := range req.WithoutReplicaLabels {
		if ext.Has(l) {
			strip = append(strip, l)
		}
	}
	// Remote read cannot shard: every series is read and those of other
	// shards are dropped here, as Thanos' sidecar does.
	shard, err := storeapi.NewShardMatcher(req.ShardInfo)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	q := &prompb.Query{StartTimestampMs: req.MinTime, EndTimestampMs: req.MaxTime, Matchers: toPromMatchers(series)}
	stream, err := s.prom.RemoteRead(ctx, q)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer stream.Close()

	if len(strip) == 0 && req.ResponseBatchSize > 1 {
		return s.streamEncoded(req, srv, stream, ext, shard)
	}
	var (
		b       labels.Builder
		pending []*storepb.Series
		sent    int64
		sender  = storeapi.NewSeriesSender(srv, req.ResponseBatchSize)
	)
	send := func(out *storepb.Series) error {
		if req.Limit > 0 && sent >= req.Limit {
			return nil
		}
		sent++
		return sender.Send(out)
	}
	for {
		frame, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "read Prometheus' remote read stream: %v", err)
		}
		for _, cs := range frame.ChunkedSeries {
			sb := labels.NewScratchBuilder(len(cs.Labels))
			for _, l := range cs.Labels {
				sb.Add(l.Name, l.Value)
			}
			sb.Sort()
			lset := storeapi.AttachExternalLabels(&b, sb.Labels(), ext)
			lset = storeapi.WithoutLabels(&b, lset, strip)
			if !shard.Matches(lset) {
				continue
			}
			out := &storepb.Series{Labels: storeapi.LabelsToProto(lset)}
			if !req.SkipChunks {
				for _, c := range cs.Chunks {
					t, err := chunkType(c.Type)
					if err != nil {
						return status.Error(codes.Internal, err.Error())
					}
					// No copy: the stream decodes every frame into a
					// reset message, so c.Data is this chunk's own.
					out.Chunks = append(out.Chunks, &storepb.AggrChunk{MinTime: c.MinTimeMs, MaxTime: c.MaxTimeMs,
						Raw: &storepb.Chunk{Type: t, Data: c.Data}})
				}
			}
			if len(strip) > 0 {
				pending = append(pending, out)
				continue
			}
			if err := send(out); err != nil {
				return err
			}
		}
	}
	if len(pending) > 0 {
		var sb labels.ScratchBuilder
		keys := make([]labels.Labels, len(pending))
		for i, p := range pending {
			keys[i] = storeapi.LabelsFromProto(&sb, p.Labels)
		}
		idx := make([]int, len(pending))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(i, j int) bool { return labels.Compare(keys[idx[i]], keys[idx[j]]) < 0 })
		for _, i := range idx {
			if err := send(pending[i]); err != nil {
				return err
			}
		}
	}
	return sender.Flush()
}

func matchStrings(ms []*labels.Matcher) []string {
	if len(ms) == 0 {
		return nil
	}
	sel := "{"
	for i, m := range ms {
		if i > 0 {
			sel += ","
		}
		sel += m.String()
	}
	return []string{sel + "}"}
}

// LabelNames asks Prometheus and adds the external labels.
func (s *store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ext := s.ext()
	series, ok := storeapi.SplitExternalMatchers(ms, ext)
	if !ok {
		return &storepb.LabelNamesResponse{}, nil
	}
	names, err := s.prom.LabelNames(ctx, matchStrings(series), req.Start, req.End)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if len(names) == 0 {
		return &storepb.LabelNamesResponse{}, nil
	}
	ext.Range(func(l labels.Label) {
		if !slices.Contains(req.WithoutReplicaLabels, l.Name) && !slices.Contains(names, l.Name) {
			names = append(names, l.Name)
		}
	})
	sort.Strings(names)
	return &storepb.LabelNamesResponse{Names: names}, nil
}

// LabelValues asks Prometheus; an external label has its one value.
func (s *store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ext := s.ext()
	series, ok := storeapi.SplitExternalMatchers(ms, ext)
	if !ok {
		return &storepb.LabelValuesResponse{}, nil
	}
	if ext.Has(req.Label) {
		if slices.Contains(req.WithoutReplicaLabels, req.Label) {
			return &storepb.LabelValuesResponse{}, nil
		}
		return &storepb.LabelValuesResponse{Values: []string{ext.Get(req.Label)}}, nil
	}
	vals, err := s.prom.LabelValues(ctx, req.Label, matchStrings(series), req.Start, req.End)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &storepb.LabelValuesResponse{Values: vals}, nil
}

// batchBuffers keep the buffers remote read frames are gathered in for the
// next request.
var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512<<10+64<<10); return &b }}

// maxFrameBytes bounds an encoded batch frame (unless one series is
// larger): the querier keeps frames in 4 MiB slabs, four to a slab.
const maxFrameBytes = 1 << 20

// idleFlushBytes is how much a batch frame must hold to be sent early,
// while Prometheus is slower than the sidecar: a quarter of a full frame,
// so a fast Prometheus does not turn each batch into many small frames.
const idleFlushBytes = maxFrameBytes / 4

// streamEncoded is Series' common path (Prometheus' order kept, batches
// asked for): each remote read frame is walked in wire form (frameParser)
// and its series go out in batch frames built by hand
// (storeapi.SeriesFrameEncoder), the chunk bytes copied once from
// Prometheus' frame into ours. The server's codec (storeapi.ServerCodec)
// sends them as they are.
func (s *store) streamEncoded(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse], stream *promclient.ChunkedStream, ext labels.Labels, shard *storeapi.ShardMatcher) error {
	var (
		// A frame is sent before it would pass maxFrameBytes; only a
		// series larger on its own takes it past.
		enc    = storeapi.SeriesFrameEncoder{SizeHint: maxFrameBytes + 64<<10}
		parser frameParser
		extLs  []labels.Label
		lset   []labels.Label
		sent   int64
	)
	ext.Range(func(l labels.Label) { extLs = append(extLs, l) })
	perFrame := int(min(req.ResponseBatchSize, storeapi.MaxResponseBatch))
	flush := func() error {
		if f := enc.Frame(); f != nil {
			return srv.SendMsg(f)
		}
		return nil
	}
	// Prometheus writes its next frames while these are encoded and sent.
	// Remote read frames hold one series each (a few KiB): the reader
	// gathers them in batches, closed at batchBytes or as soon as the next
	// frame is not read yet, so waiting for Prometheus holds nothing back;
	// handing frames over one by one cost more in goroutine switches than
	// the encoding. Buffers go round between reader and encoder.
	type batch struct {
		data []byte
		ends []int // end of each frame in data
		err  error // after the frames: io.EOF at the end
	}
	const (
		buffers    = 3
		batchBytes = 512 << 10
	)
	batches, free, done := make(chan batch, buffers), make(chan batch, buffers), make(chan struct{})
	for range buffers {
		free <- batch{data: *batchBuffers.Get().(*[]byte)}
	}
	// On the way out the reader is stopped (the closed body fails a read
	// in progress) and waited for: the stream's read buffer goes back to a
	// pool when Series closes the stream, and must not still be in use.
	exited := make(chan struct{})
	defer func() {
		close(done)
		_ = stream.CloseBody()
		<-exited
	}()
	go func() {
		defer close(exited)
		for {
			var b batch
			select {
			case b = <-free:
			case <-done:
				return
			}
			b.data, b.ends, b.err = b.data[:0], b.ends[:0], nil
			for {
				if b.data, b.err = stream.AppendRaw(b.data); b.err != nil {
					break
				}
				b.ends = append(b.ends, len(b.data))
				if len(b.data) >= batchBytes || !stream.Buffered() {
					break
				}
				select {
				case <-done:
					return
				default:
				}
			}
			select {
			case batches <- b:
			case <-done:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	errLimit := errors.New("limit reached")
	add := func(ls []labels.Label, chunks []storeapi.RawChunk) error {
		if req.Limit > 0 && sent >= req.Limit {
			return errLimit
		}
		lset = withExternal(lset, ls, extLs)
		if !shard.MatchesList(lset) {
			return nil
		}
		if !enc.Fits(lset, chunks, maxFrameBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		enc.AddLabels(lset, chunks)
		sent++
		if n, size := enc.Len(); n >= perFrame || size >= maxFrameBytes {
			return flush()
		}
		return nil
	}
	for {
		b := <-batches
		from := 0
		for _, end := range b.ends {
			err := parser.each(b.data[from:end], req.SkipChunks, add)
			if errors.Is(err, errLimit) {
				return flush()
			}
			if err != nil {
				if _, ok := status.FromError(err); ok {
					return err
				}
				return status.Error(codes.Internal, err.Error())
			}
			from = end
		}
		if errors.Is(b.err, io.EOF) {
			// The reader is done: every buffer is here or in free.
			// (On other ways out it may still be filling one.)
			keep := func(d []byte) {
				// A Prometheus with larger frames than the default
				// 1 MiB leaves larger buffers: not worth keeping.
				if cap(d) <= 4<<20 {
					d = d[:0]
					batchBuffers.Put(&d)
				}
			}
			keep(b.data)
			for len(free) > 0 {
				keep((<-free).data)
			}
			break
		}
		if b.err != nil {
			return status.Errorf(codes.Unavailable, "read Prometheus' remote read stream: %v", b.err)
		}
		// The encoder has copied what it needs: the buffer may be refilled.
		free <- b
		// Prometheus has not sent more yet: a good part of a frame goes
		// out now rather than when the batch is full, so the client decodes
		// it meanwhile, and what is left to send after Prometheus' last
		// frame is small.
		if len(batches) == 0 {
			if _, size := enc.Len(); size >= idleFlushBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
