package block

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore"
)

// File names inside a block directory.
const (
	MetaFilename   = "meta.json"
	IndexFilename  = "index"
	ChunksDirname  = "chunks"
	metaVersion1   = 1
	thanosVersion1 = 1
)

// Downsampling resolutions in milliseconds.
const (
	ResolutionRaw int64 = 0
	Resolution5m  int64 = 5 * 60 * 1000
	Resolution1h  int64 = 60 * 60 * 1000
)

// SourceType says which component wrote a block.
type SourceType string

// Sources Thanos defines; readers accept any string.
const (
	SourceSidecar         SourceType = "sidecar"
	SourceReceive         SourceType = "receive"
	SourceCompactor       SourceType = "compactor"
	SourceCompactorRepair SourceType = "compactor.repair"
	SourceRuler           SourceType = "ruler"
	SourceBucketRepair    SourceType = "bucket.repair"
	SourceBucketRewrite   SourceType = "bucket.rewrite"
	SourceBucketUpload    SourceType = "bucket.upload"
	SourceTest            SourceType = "test"
)

// Meta is a block's meta.json: Prometheus' block meta plus the thanos section.
// Fields this version does not know, at the top level and in the thanos
// section, are kept and written back unchanged.
type Meta struct {
	tsdb.BlockMeta
	Thanos Thanos `json:"thanos"`

	unknown map[string]json.RawMessage
}

// Thanos is the thanos section of meta.json.
type Thanos struct {
	Version      int               `json:"version,omitempty"`
	Labels       map[string]string `json:"labels"`
	Downsample   Downsample        `json:"downsample"`
	Source       SourceType        `json:"source"`
	SegmentFiles []string          `json:"segment_files,omitempty"`
	Files        []File            `json:"files,omitempty"`
	// Rewrites are kept verbatim: Strata does not rewrite blocks.
	Rewrites []json.RawMessage `json:"rewrites,omitempty"`
	// IndexStats and UploadTime are always written, zero or not, because
	// Thanos writes them so (omitempty has no effect on its structs).
	IndexStats IndexStats `json:"index_stats"`
	Extensions any        `json:"extensions,omitempty"`
	UploadTime time.Time  `json:"upload_time"`

	unknown map[string]json.RawMessage
}

// Downsample holds a block's resolution.
type Downsample struct {
	Resolution int64 `json:"resolution"`
}

// File is one object of a block with its size.
type File struct {
	RelPath   string      `json:"rel_path"`
	SizeBytes int64       `json:"size_bytes,omitempty"`
	Hash      *ObjectHash `json:"hash,omitempty"`
}

// ObjectHash is an optional content hash of a File.
type ObjectHash struct {
	Func  HashFunc `json:"hashFunc"`
	Value string   `json:"value"`
}

// IndexStats help readers size their ranged reads of the index.
type IndexStats struct {
	SeriesMaxSize int64 `json:"series_max_size,omitempty"`
	ChunkMaxSize  int64 `json:"chunk_max_size,omitempty"`
}

// LabelSet returns the external labels as Prometheus labels.
func (m *Meta) LabelSet() labels.Labels { return labels.FromMap(m.Thanos.Labels) }

// GroupKey is the compaction group of the block: resolution and external
// labels, formatted exactly as Thanos does since it shows in logs and metrics.
func (m *Meta) GroupKey() string {
	return fmt.Sprintf("%d@%v", m.Thanos.Downsample.Resolution, m.LabelSet().Hash())
}

type metaAlias Meta
type thanosAlias Thanos

var (
	metaKnown   = []string{"ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"}
	thanosKnown = []string{"version", "labels", "downsample", "source", "segment_files", "files", "rewrites", "index_stats", "extensions", "upload_time"}
)

// UnmarshalJSON reads meta.json keeping unknown fields.
func (m *Meta) UnmarshalJSON(b []byte) error {
	var a metaAlias
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	unknown, err := unknownFields(b, metaKnown)
	if err != nil {
		return err
	}
	*m = Meta(a)
	m.unknown = unknown
	return nil
}

// MarshalJSON writes meta.json with the unknown fields read before.
func (m Meta) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(metaAlias(m))
	if err != nil {
		return nil, err
	}
	return appendFields(b, m.unknown)
}

// UnmarshalJSON reads the thanos section keeping unknown fields.
func (t *Thanos) UnmarshalJSON(b []byte) error {
	var a thanosAlias
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	unknown, err := unknownFields(b, thanosKnown)
	if err != nil {
		return err
	}
	*t = Thanos(a)
	t.unknown = unknown
	return nil
}

// MarshalJSON writes the thanos section with the unknown fields read before.
func (t Thanos) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(thanosAlias(t))
	if err != nil {
		return nil, err
	}
	return appendFields(b, t.unknown)
}

func unknownFields(b []byte, known []string) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for _, k := range known {
		delete(all, k)
	}
	if len(all) == 0 {
		return nil, nil
	}
	return all, nil
}

// appendFields adds extra fields, sorted by name, to a marshalled object.
func appendFields(obj []byte, extra map[string]json.RawMessage) ([]byte, error) {
	if len(extra) == 0 {
		return obj, nil
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(obj[:len(obj)-1]) // without the closing brace
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// DecodeMeta parses and validates meta.json content.
func DecodeMeta(r io.Reader) (*Meta, error) {
	var m Meta
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode meta.json: %w", err)
	}
	if m.Version != metaVersion1 {
		return nil, fmt.Errorf("unexpected meta.json version %d, want %d", m.Version, metaVersion1)
	}
	if m.Thanos.Version == 0 {
		m.Thanos.Version = thanosVersion1
	}
	if m.Thanos.Version != thanosVersion1 {
		return nil, fmt.Errorf("unexpected thanos section version %d, want %d", m.Thanos.Version, thanosVersion1)
	}
	if m.Thanos.Labels == nil {
		m.Thanos.Labels = map[string]string{}
	}
	return &m, nil
}

// Encode writes m as tab-indented JSON, as Thanos does.
func (m *Meta) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "\t")
	return enc.Encode(m)
}

// ReadMeta reads dir/meta.json.
func ReadMeta(dir string) (*Meta, error) {
	f, err := os.Open(filepath.Join(dir, MetaFilename))
	if err != nil {
		return nil, fmt.Errorf("read block meta: %w", err)
	}
	defer f.Close()
	m, err := DecodeMeta(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return m, nil
}

// WriteMeta writes dir/meta.json atomically: a reader sees the old or the new
// file, never a half-written one.
func (m *Meta) WriteMeta(dir string) error {
	path := filepath.Join(dir, MetaFilename)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write block meta: %w", err)
	}
	if err := m.Encode(f); err != nil {
		f.Close()
		return fmt.Errorf("encode %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	// Sync the directory too, or a crash could forget the rename.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s to sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadMetaFromBucket reads the meta.json of block id from the bucket and
// checks it describes that block.
func ReadMetaFromBucket(ctx context.Context, bkt objstore.BucketReader, id ulid.ULID) (*Meta, error) {
	_, m, err := getMeta(ctx, bkt, id)
	if err != nil {
		return nil, fmt.Errorf("read meta of block %s: %w", id, err)
	}
	return m, nil
}
