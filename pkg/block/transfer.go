package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
)

// Upload uploads the block in dir, with the meta.json found there.
func Upload(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, dir string) error {
	meta, err := ReadMeta(dir)
	if err != nil {
		return fmt.Errorf("upload block %s: %w", dir, err)
	}
	return UploadWithMeta(ctx, logger, bkt, dir, meta)
}

// UploadWithMeta uploads the chunks and index of the block in dir, then meta
// (with Thanos.Files and UploadTime filled in) as its meta.json, last: until
// meta.json is there readers treat the block as a partial upload, so a crash
// at any point leaves nothing a store gateway would serve. dir is only read.
func UploadWithMeta(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, dir string, meta *Meta) error {
	id := meta.ULID
	if base := filepath.Base(dir); base != id.String() {
		return fmt.Errorf("upload block %s: directory name %q does not match its meta.json ULID", id, base)
	}
	if len(meta.Thanos.Labels) == 0 {
		return fmt.Errorf("upload block %s: empty external labels: every block in a bucket needs external labels to tell its stream apart", id)
	}
	files, err := GatherFiles(dir)
	if err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
	}
	for _, f := range files {
		if f.RelPath == MetaFilename {
			continue
		}
		if err := uploadFile(ctx, bkt, filepath.Join(dir, filepath.FromSlash(f.RelPath)), path.Join(id.String(), f.RelPath)); err != nil {
			return fmt.Errorf("upload block %s: %w", id, err)
		}
	}
	m := *meta
	m.Thanos.Files = files
	m.Thanos.UploadTime = time.Now().UTC()
	if m.Thanos.Version == 0 {
		m.Thanos.Version = thanosVersion1
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return fmt.Errorf("upload block %s: encode meta.json: %w", id, err)
	}
	if err := bkt.Upload(ctx, path.Join(id.String(), MetaFilename), &buf); err != nil {
		return fmt.Errorf("upload block %s: object %s/%s: %w", id, id, MetaFilename, err)
	}
	logger.Debug("uploaded block", "block", id, "files", len(files))
	return nil
}

func uploadFile(ctx context.Context, bkt objstore.Bucket, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer f.Close()
	if err := bkt.Upload(ctx, dst, f); err != nil {
		return fmt.Errorf("object %s: %w", dst, err)
	}
	return nil
}

// GatherFiles lists the objects of the block in dir as Thanos records them:
// chunk segments and index with their sizes, and meta.json without one (it is
// being written), sorted by path.
func GatherFiles(dir string) ([]File, error) {
	entries, err := os.ReadDir(filepath.Join(dir, ChunksDirname))
	if err != nil {
		return nil, fmt.Errorf("read chunks directory: %w", err)
	}
	var files []File
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat chunk file %s: %w", e.Name(), err)
		}
		files = append(files, File{RelPath: ChunksDirname + "/" + e.Name(), SizeBytes: info.Size()})
	}
	if len(files) == 0 {
		return nil, errors.New("no chunk files in block")
	}
	info, err := os.Stat(filepath.Join(dir, IndexFilename))
	if err != nil {
		return nil, fmt.Errorf("stat index: %w", err)
	}
	files = append(files, File{RelPath: IndexFilename, SizeBytes: info.Size()}, File{RelPath: MetaFilename})
	sort.Slice(files, func(i, j int) bool { return files[i].RelPath < files[j].RelPath })
	return files, nil
}

// Download copies the chunks, index and meta.json of block id into
// dst/<id>, checking sizes against the meta's file list when it has one.
func Download(ctx context.Context, logger *slog.Logger, bkt objstore.BucketReader, id ulid.ULID, dst string) (*Meta, error) {
	meta, err := ReadMetaFromBucket(ctx, bkt, id)
	if err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	dir := filepath.Join(dst, id.String())
	if err := os.MkdirAll(filepath.Join(dir, ChunksDirname), 0o755); err != nil {
		return nil, fmt.Errorf("download block %s: %w", id, err)
	}
	sizes := map[string]int64{}
	for _, f := range meta.Thanos.Files {
		sizes[f.RelPath] = f.SizeBytes
	}
	var names []string
	err = bkt.Iter(ctx, id.String()+"/", func(name string) error {
		rel := strings.TrimPrefix(name, id.String()+"/")
		if rel == IndexFilename || rel == MetaFilename || strings.HasPrefix(rel, ChunksDirname+"/") {
			names = append(names, rel)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("download block %s: list objects: %w", id, err)
	}
	for _, rel := range names {
		n, err := downloadFile(ctx, bkt, id.String()+"/"+rel, filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("download block %s: %w", id, err)
		}
		if want, ok := sizes[rel]; ok && want > 0 && n != want {
			return nil, fmt.Errorf("download block %s: object %s has %d bytes, meta.json says %d", id, rel, n, want)
		}
	}
	for rel, size := range sizes {
		if size > 0 && !contains(names, rel) {
			return nil, fmt.Errorf("download block %s: object %s listed in meta.json is missing", id, rel)
		}
	}
	logger.Debug("downloaded block", "block", id, "objects", len(names))
	return meta, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func downloadFile(ctx context.Context, bkt objstore.BucketReader, src, dst string) (int64, error) {
	r, err := bkt.Get(ctx, src)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", src, err)
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", dst, err)
	}
	n, err := io.Copy(f, r)
	if err != nil {
		f.Close()
		return n, fmt.Errorf("copy %s: %w", src, err)
	}
	return n, f.Close()
}

// Delete removes block id from the bucket in the order that keeps readers
// safe: meta.json first (the block stops being complete), then the other
// objects, then deletion-mark.json last so an interrupted delete is resumed.
func Delete(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, id ulid.ULID) error {
	metaName := path.Join(id.String(), MetaFilename)
	if err := bkt.Delete(ctx, metaName); err != nil && !bkt.IsObjNotFoundErr(err) {
		return fmt.Errorf("delete block %s: object %s: %w", id, metaName, err)
	}
	var rest []string
	markName := path.Join(id.String(), DeletionMarkFilename)
	err := bkt.Iter(ctx, id.String()+"/", func(name string) error {
		if name != markName && name != metaName {
			rest = append(rest, name)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return fmt.Errorf("delete block %s: list objects: %w", id, err)
	}
	for _, name := range rest {
		if err := bkt.Delete(ctx, name); err != nil && !bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("delete block %s: object %s: %w", id, name, err)
		}
	}
	if err := bkt.Delete(ctx, markName); err != nil && !bkt.IsObjNotFoundErr(err) {
		return fmt.Errorf("delete block %s: object %s: %w", id, markName, err)
	}
	logger.Info("deleted block", "block", id)
	return nil
}
