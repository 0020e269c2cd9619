package storeapi

import (
	"google.golang.org/grpc"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

// MaxResponseBatch caps the series per batch frame whatever the client
// asks, so that a server never holds more than that many series for one
// frame.
const MaxResponseBatch = 1024

// maxBatchBytes closes a batch frame early once its chunks and labels reach
// it, so frames stay well below gRPC's default 4 MiB receive limit of
// clients other than ours.
const maxBatchBytes = 1 << 20

// SeriesSender sends series on a Series stream: one per frame, or in
// batches of the size the request's response_batch_size asks for (fewer,
// larger frames cost far less per series on gRPC). Flush sends what is left.
type SeriesSender struct {
	srv   grpc.ServerStreamingServer[storepb.SeriesResponse]
	size  int
	batch []*storepb.Series
	bytes int
}

// NewSeriesSender returns a sender for a request's response_batch_size.
func NewSeriesSender(srv grpc.ServerStreamingServer[storepb.SeriesResponse], batchSize int64) *SeriesSender {
	return &SeriesSender{srv: srv, size: int(min(max(batchSize, 1), MaxResponseBatch))}
}

// Send sends s, or keeps it for the next batch frame.
func (b *SeriesSender) Send(s *storepb.Series) error {
	if b.size <= 1 {
		return b.srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: s}})
	}
	b.batch = append(b.batch, s)
	for _, l := range s.Labels {
		b.bytes += len(l.Name) + len(l.Value)
	}
	for _, c := range s.Chunks {
		for _, sub := range []*storepb.Chunk{c.Raw, c.Count, c.Sum, c.Min, c.Max, c.Counter} {
			if sub != nil {
				b.bytes += len(sub.Data)
			}
		}
	}
	if len(b.batch) < b.size && b.bytes < maxBatchBytes {
		return nil
	}
	return b.Flush()
}

// Flush sends the series kept for a batch, if any.
func (b *SeriesSender) Flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	err := b.srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: &storepb.SeriesBatch{Series: b.batch}}})
	// Send has marshalled the frame: the slice can take the next batch.
	clear(b.batch)
	b.batch, b.bytes = b.batch[:0], 0
	return err
}
