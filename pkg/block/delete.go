package block

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
)

// Delete removes block id from the bucket in the order that keeps readers
// safe: meta.json first (the block becomes partial, which every reader
// skips), then the other objects, then deletion-mark.json so the compactor
// still sees an interrupted delete as marked and finishes it, then any
// directory-marker objects some stores keep.
func Delete(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID) error {
	metaName := path.Join(id.String(), MetaFilename)
	markName := path.Join(id.String(), DeletionMarkFilename)
	if err := deleteIfExists(ctx, bkt, metaName); err != nil {
		return fmt.Errorf("delete block %s: %w", id, err)
	}
	var objects, dirs []string
	err := bkt.Iter(ctx, id.String()+"/", func(name string) error {
		switch {
		case name == markName || name == metaName:
		case strings.HasSuffix(name, objstore.DirDelim):
			dirs = append(dirs, name)
		default:
			objects = append(objects, name)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return fmt.Errorf("delete block %s: list objects: %w", id, err)
	}
	for _, name := range objects {
		if err := bkt.Delete(ctx, name); err != nil && !bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("delete block %s: object %s: %w", id, name, err)
		}
	}
	if err := deleteIfExists(ctx, bkt, markName); err != nil {
		return fmt.Errorf("delete block %s: %w", id, err)
	}
	// Deepest first, so no marker outlives a child.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := bkt.Delete(ctx, dirs[i]); err != nil && !bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("delete block %s: object %s: %w", id, dirs[i], err)
		}
	}
	logger.Info("deleted block", "block", id)
	return nil
}

// deleteIfExists checks before deleting so a missing object does not count
// as a failed operation in the bucket's metrics.
func deleteIfExists(ctx context.Context, bkt objstore.Bucket, name string) error {
	ok, err := bkt.Exists(ctx, name)
	if err != nil {
		return fmt.Errorf("check object %s: %w", name, err)
	}
	if !ok {
		return nil
	}
	if err := bkt.Delete(ctx, name); err != nil && !bkt.IsObjNotFoundErr(err) {
		return fmt.Errorf("object %s: %w", name, err)
	}
	return nil
}
