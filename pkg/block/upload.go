package block

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
)

// HashFunc names the content hash recorded in Thanos.Files.
type HashFunc string

// Hash functions Thanos knows.
const (
	NoHash HashFunc = ""
	SHA256 HashFunc = "SHA256"
)

// Option tunes Upload and Download.
type Option func(*options)

type options struct {
	hash        HashFunc
	concurrency int
}

func applyOptions(opts []Option) options {
	o := options{concurrency: 1}
	for _, f := range opts {
		f(&o)
	}
	if o.concurrency < 1 {
		o.concurrency = 1
	}
	return o
}

// WithHashFunc makes Upload record each file's hash in meta.json (Thanos'
// --hash-func). Download always checks the hashes it finds.
func WithHashFunc(h HashFunc) Option { return func(o *options) { o.hash = h } }

// WithConcurrency transfers up to n chunk segments at a time; large blocks
// on a remote bucket are bound by round trips, not bandwidth.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// Upload uploads the block in dir, with the meta.json found there.
func Upload(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, dir string, opts ...Option) error {
	meta, err := ReadMeta(dir)
	if err != nil {
		return fmt.Errorf("upload block %s: %w", dir, err)
	}
	return UploadWithMeta(ctx, logger, bkt, dir, meta, opts...)
}

// UploadWithMeta uploads the chunks and index of the block in dir, then meta
// (with Thanos.Files and UploadTime filled in) as its meta.json, last: until
// meta.json is there readers treat the block as a partial upload, so a
// failure at any point leaves nothing a store gateway would serve. dir is
// only read; meta is not modified.
func UploadWithMeta(ctx context.Context, logger *slog.Logger, bkt objstore.Bucket, dir string, meta *Meta, opts ...Option) error {
	o := applyOptions(opts)
	id := meta.ULID
	if base := filepath.Base(dir); base != id.String() {
		return fmt.Errorf("upload block %s: directory name %q does not match its meta.json ULID", id, base)
	}
	if len(meta.Thanos.Labels) == 0 {
		return fmt.Errorf("upload block %s: empty external labels: every block in a bucket needs external labels to tell its stream apart", id)
	}
	files, err := GatherFiles(dir, o.hash)
	if err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
	}

	// Chunks first, then the index: the order Thanos uses, so a reader that
	// sees the index can rely on the chunks being there.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.concurrency)
	for _, f := range files {
		if f.RelPath == MetaFilename || f.RelPath == IndexFilename {
			continue
		}
		g.Go(func() error { return uploadFile(gctx, bkt, dir, id, f.RelPath) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
	}
	if err := uploadFile(ctx, bkt, dir, id, IndexFilename); err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
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

func uploadFile(ctx context.Context, bkt objstore.Bucket, dir string, id ulid.ULID, rel string) error {
	src := filepath.Join(dir, filepath.FromSlash(rel))
	dst := path.Join(id.String(), rel)
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("object %s: open %s: %w", dst, src, err)
	}
	defer f.Close()
	if err := bkt.Upload(ctx, dst, f); err != nil {
		return fmt.Errorf("object %s: %w", dst, err)
	}
	return nil
}

// GatherFiles lists the objects of the block in dir as Thanos records them:
// chunk segments and index with their sizes (and hashes when h is set), and
// meta.json without a size since it is being written, sorted by path.
func GatherFiles(dir string, h HashFunc) ([]File, error) {
	if h != NoHash && h != SHA256 {
		return nil, fmt.Errorf("hash function %q is not supported", h)
	}
	entries, err := os.ReadDir(filepath.Join(dir, ChunksDirname))
	if err != nil {
		return nil, fmt.Errorf("read chunks directory: %w", err)
	}
	var rels []string
	for _, e := range entries {
		if !e.IsDir() {
			rels = append(rels, ChunksDirname+"/"+e.Name())
		}
	}
	if len(rels) == 0 {
		return nil, errors.New("no chunk files in block")
	}
	rels = append(rels, IndexFilename)
	files := make([]File, 0, len(rels)+1)
	for _, rel := range rels {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", rel, err)
		}
		f := File{RelPath: rel, SizeBytes: info.Size()}
		if h == SHA256 {
			if f.Hash, err = hashFile(p); err != nil {
				return nil, fmt.Errorf("hash %s: %w", rel, err)
			}
		}
		files = append(files, f)
	}
	files = append(files, File{RelPath: MetaFilename})
	sort.Slice(files, func(i, j int) bool { return files[i].RelPath < files[j].RelPath })
	return files, nil
}

func hashFile(p string) (*ObjectHash, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return &ObjectHash{Func: SHA256, Value: hex.EncodeToString(h.Sum(nil))}, nil
}
