package block

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
)

// Marker file names.
const (
	DeletionMarkFilename     = "deletion-mark.json"
	NoCompactMarkFilename    = "no-compact-mark.json"
	NoDownsampleMarkFilename = "no-downsample-mark.json"
	markerVersion1           = 1
)

// ErrMarkerNotFound is returned when a block has no marker of the asked kind.
var ErrMarkerNotFound = errors.New("marker not found")

// ErrUnmarshalMarker is returned for a marker that is not valid JSON, for
// example one whose upload was cut off.
var ErrUnmarshalMarker = errors.New("unmarshal marker JSON")

// errMarkerVersion is returned for a marker of a version this code does not
// know.
var errMarkerVersion = errors.New("unexpected marker version")

// NoCompactReason says why a block must not be compacted.
type NoCompactReason string

// Reasons Thanos writes.
const (
	ManualNoCompactReason                 NoCompactReason = "manual"
	IndexSizeExceedingNoCompactReason     NoCompactReason = "index-size-exceeding"
	OutOfOrderChunksNoCompactReason       NoCompactReason = "block-index-out-of-order-chunk"
	DownsampleVerticalCompactionNoCompact NoCompactReason = "downsample-vertical-compaction"
)

// DeletionMark says a block is going to be deleted; readers stop using it
// after a delay so queries in flight can finish.
type DeletionMark struct {
	ID           ulid.ULID `json:"id"`
	Version      int       `json:"version"`
	Details      string    `json:"details,omitempty"`
	DeletionTime int64     `json:"deletion_time"` // Unix seconds.
}

// NoCompactMark excludes a block from compaction.
type NoCompactMark struct {
	ID            ulid.ULID       `json:"id"`
	Version       int             `json:"version"`
	Details       string          `json:"details,omitempty"`
	NoCompactTime int64           `json:"no_compact_time"` // Unix seconds.
	Reason        NoCompactReason `json:"reason"`
}

// NoDownsampleReason says why a block must not be downsampled.
type NoDownsampleReason string

// ManualNoDownsampleReason is the only reason Thanos writes.
const ManualNoDownsampleReason NoDownsampleReason = "manual"

// NoDownsampleMark excludes a block from downsampling.
type NoDownsampleMark struct {
	ID               ulid.ULID          `json:"id"`
	Version          int                `json:"version"`
	Details          string             `json:"details,omitempty"`
	NoDownsampleTime int64              `json:"no_downsample_time"` // Unix seconds.
	Reason           NoDownsampleReason `json:"reason"`
}

// marker is implemented by the marker types.
type marker interface {
	filename() string
	markerVersion() int
}

func (DeletionMark) filename() string         { return DeletionMarkFilename }
func (m DeletionMark) markerVersion() int     { return m.Version }
func (NoCompactMark) filename() string        { return NoCompactMarkFilename }
func (m NoCompactMark) markerVersion() int    { return m.Version }
func (NoDownsampleMark) filename() string     { return NoDownsampleMarkFilename }
func (m NoDownsampleMark) markerVersion() int { return m.Version }

// ReadMarker reads the marker of kind M of block id. It returns
// ErrMarkerNotFound when there is none, and an error wrapping
// ErrUnmarshalMarker when it is not valid.
func ReadMarker[M marker](ctx context.Context, bkt objstore.BucketReader, id ulid.ULID) (*M, error) {
	var m M
	name := id.String() + "/" + m.filename()
	if ib, ok := bkt.(objstore.InstrumentedBucketReader); ok {
		// A missing marker is the normal case, not a failed operation.
		bkt = ib.ReaderWithExpectedErrs(ib.IsObjNotFoundErr)
	}
	r, err := bkt.Get(ctx, name)
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return nil, ErrMarkerNotFound
		}
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	defer r.Close()
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrUnmarshalMarker, err)
	}
	if v := m.markerVersion(); v != markerVersion1 {
		return nil, fmt.Errorf("%s: %w %d, want %d", name, errMarkerVersion, v, markerVersion1)
	}
	return &m, nil
}

// writeMarker uploads m for block id unless a marker of that kind exists,
// so the first deletion time stays the one the delay counts from.
func writeMarker(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID, m marker) (bool, error) {
	name := id.String() + "/" + m.filename()
	exists, err := bkt.Exists(ctx, name)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", name, err)
	}
	if exists {
		logger.Debug("block already marked", "block", id, "marker", m.filename())
		return false, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", name, err)
	}
	if err := bkt.Upload(ctx, name, bytes.NewReader(b)); err != nil {
		return false, fmt.Errorf("upload %s: %w", name, err)
	}
	return true, nil
}

// MarkForDeletion writes deletion-mark.json for block id if absent. It
// reports whether it wrote one.
func MarkForDeletion(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID, details string) (bool, error) {
	ok, err := writeMarker(ctx, logger, bkt, id, DeletionMark{ID: id, Version: markerVersion1, Details: details, DeletionTime: time.Now().Unix()})
	if err != nil {
		return false, fmt.Errorf("mark block %s for deletion: %w", id, err)
	}
	if ok {
		logger.Info("block marked for deletion", "block", id, "details", details)
	}
	return ok, nil
}

// MarkForNoCompaction writes no-compact-mark.json for block id if absent.
func MarkForNoCompaction(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID, reason NoCompactReason, details string) (bool, error) {
	ok, err := writeMarker(ctx, logger, bkt, id, NoCompactMark{ID: id, Version: markerVersion1, Details: details, NoCompactTime: time.Now().Unix(), Reason: reason})
	if err != nil {
		return false, fmt.Errorf("mark block %s for no compaction: %w", id, err)
	}
	if ok {
		logger.Info("block marked for no compaction", "block", id, "reason", reason, "details", details)
	}
	return ok, nil
}

// MarkForNoDownsample writes no-downsample-mark.json for block id if absent.
func MarkForNoDownsample(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID, reason NoDownsampleReason, details string) (bool, error) {
	ok, err := writeMarker(ctx, logger, bkt, id, NoDownsampleMark{ID: id, Version: markerVersion1, Details: details, NoDownsampleTime: time.Now().Unix(), Reason: reason})
	if err != nil {
		return false, fmt.Errorf("mark block %s for no downsampling: %w", id, err)
	}
	if ok {
		logger.Info("block marked for no downsampling", "block", id, "reason", reason, "details", details)
	}
	return ok, nil
}
