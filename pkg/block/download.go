package block

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
)

// markerFiles describe the bucket's copy of a block, not the block itself,
// so they are not downloaded.
var markerFiles = map[string]bool{DeletionMarkFilename: true, NoCompactMarkFilename: true, NoDownsampleMarkFilename: true}

// Download copies block id into dst/<id>: every object of the block (chunks,
// index and any other file) except the markers, checking sizes and hashes
// against the meta's file list when it has them. meta.json is written last,
// byte for byte as in the bucket, so a local directory without meta.json is
// an incomplete download, as in the bucket. On error dst/<id> may hold part
// of the block; the caller removes it.
func Download(ctx context.Context, logger *slog.Logger, bkt objstore.BucketReader, id ulid.ULID, dst string, opts ...Option) (*Meta, error) {
	o := applyOptions(opts)
	rawMeta, meta, err := getMeta(ctx, bkt, id)
	if err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	dir := filepath.Join(dst, id.String())
	// Blocks without chunks have no chunks/ object, but TSDB wants the dir.
	if err := os.MkdirAll(filepath.Join(dir, ChunksDirname), 0o755); err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	listed := map[string]File{}
	for _, f := range meta.Thanos.Files {
		listed[f.RelPath] = f
	}

	prefix := id.String() + "/"
	var rels []string
	err = bkt.Iter(ctx, prefix, func(name string) error {
		rel := strings.TrimPrefix(name, prefix)
		if rel != MetaFilename && !markerFiles[rel] && !strings.HasSuffix(rel, "/") {
			rels = append(rels, rel)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("download block %s: list objects: %w", id, err)
	}
	got := map[string]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.concurrency)
	for _, rel := range rels {
		got[rel] = true
		want, ok := listed[rel]
		g.Go(func() error {
			if err := downloadFile(gctx, bkt, prefix+rel, filepath.Join(dir, filepath.FromSlash(rel)), want, ok); err != nil {
				return fmt.Errorf("object %s: %w", prefix+rel, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	for rel := range listed {
		if rel != MetaFilename && !got[rel] {
			return nil, fmt.Errorf("download block %s: object %s%s listed in meta.json is missing", id, prefix, rel)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, MetaFilename), rawMeta); err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	logger.Debug("downloaded block", "block", id, "objects", len(rels)+1)
	return meta, nil
}

// getMeta returns block id's meta.json as stored and parsed.
func getMeta(ctx context.Context, bkt objstore.BucketReader, id ulid.ULID) ([]byte, *Meta, error) {
	name := path.Join(id.String(), MetaFilename)
	r, err := bkt.Get(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", name, err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	m, err := DecodeMeta(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if m.ULID != id {
		return nil, nil, fmt.Errorf("%s names block %s", name, m.ULID)
	}
	return raw, m, nil
}

// downloadFile copies object src to file dst and, when the meta lists the
// object (listed), checks its size and hash.
func downloadFile(ctx context.Context, bkt objstore.BucketReader, src, dst string, want File, listed bool) error {
	r, err := bkt.Get(ctx, src)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	var w io.Writer = f
	var h hash.Hash
	if listed && want.Hash != nil && want.Hash.Func == SHA256 {
		h = sha256.New()
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		f.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if listed && want.SizeBytes > 0 && n != want.SizeBytes {
		return fmt.Errorf("has %d bytes, meta.json says %d", n, want.SizeBytes)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != want.Hash.Value {
			return fmt.Errorf("SHA256 %s, meta.json says %s", got, want.Hash.Value)
		}
	}
	return nil
}

func writeFileAtomic(p string, b []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
