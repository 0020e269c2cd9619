package block

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
)

// testdata/thanos-meta.json is written the way Thanos' metadata.Meta.Write
// writes a compacted, downsampled block with every optional field set. We
// must read all of it and write it back byte for byte.
func TestMetaGoldenThanosFormat(t *testing.T) {
	golden, err := os.ReadFile("testdata/thanos-meta.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMeta(bytes.NewReader(golden))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"ulid", m.ULID.String(), "01DRBP4RNVZ94135ZA6B10EMRR"},
		{"minTime", m.MinTime, int64(1570766415000)},
		{"maxTime", m.MaxTime, int64(1570939215001)},
		{"numSeries", m.Stats.NumSeries, uint64(4)},
		{"level", m.Compaction.Level, 2},
		{"sources", len(m.Compaction.Sources), 2},
		{"parents", len(m.Compaction.Parents), 1},
		{"thanos version", m.Thanos.Version, 1},
		{"labels", m.Thanos.Labels, map[string]string{"cluster": "one", "dataset": "continuous"}},
		{"resolution", m.Thanos.Downsample.Resolution, Resolution5m},
		{"source", m.Thanos.Source, SourceCompactor},
		{"segment files", m.Thanos.SegmentFiles, []string{"000001"}},
		{"files", len(m.Thanos.Files), 3},
		{"chunk size", m.Thanos.Files[0].SizeBytes, int64(3751)},
		{"hash func", m.Thanos.Files[0].Hash.Func, SHA256},
		{"meta.json size", m.Thanos.Files[2].SizeBytes, int64(0)},
		{"series max", m.Thanos.IndexStats.SeriesMaxSize, int64(1024)},
		{"chunk max", m.Thanos.IndexStats.ChunkMaxSize, int64(512)},
		{"rewrites", len(m.Thanos.Rewrites), 1},
		{"extensions", m.Thanos.Extensions, map[string]any{"parquet_migrated": true}},
		{"upload time", m.Thanos.UploadTime, time.Date(2019, 10, 13, 4, 0, 15, 123456789, time.UTC)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if want := fmt.Sprintf("300000@%d", labels.FromStrings("cluster", "one", "dataset", "continuous").Hash()); m.GroupKey() != want {
		t.Errorf("group key %s, want Thanos' %s", m.GroupKey(), want)
	}
	var out bytes.Buffer
	if err := m.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), golden) {
		t.Errorf("re-encoded meta.json differs from Thanos' format:\n%s", out.Bytes())
	}
}

// Thanos writes index_stats and upload_time even when zero; so do we.
func TestMetaMinimalEncodingMatchesThanos(t *testing.T) {
	var m Meta
	m.Version = 1
	m.Thanos.Labels = map[string]string{"a": "b"}
	var out bytes.Buffer
	if err := m.Encode(&out); err != nil {
		t.Fatal(err)
	}
	const want = `{"ulid":"00000000000000000000000000","minTime":0,"maxTime":0,"stats":{},"compaction":{"level":0},"version":1,` +
		`"thanos":{"labels":{"a":"b"},"downsample":{"resolution":0},"source":"","index_stats":{},"upload_time":"0001-01-01T00:00:00Z"}}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if compact.String() != want {
		t.Errorf("got  %s\nwant %s", compact.String(), want)
	}
}

// Fields a newer Thanos or Prometheus adds must survive our read-modify-write.
func TestMetaKeepsUnknownFields(t *testing.T) {
	const in = `{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":1,"maxTime":2,"version":1,"future_top":{"x":[1,2]},
		"thanos":{"labels":{"cluster":"one"},"downsample":{"resolution":0},"source":"sidecar","future_thanos":"kept"}}`
	m, err := DecodeMeta(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	m.Thanos.Labels["new"] = "label"
	dir := filepath.Join(t.TempDir(), m.ULID.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteMeta(dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, MetaFilename))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("{\n\t\"ulid\"")) {
		t.Errorf("meta.json is not tab-indented:\n%s", raw)
	}
	if _, err := os.Stat(filepath.Join(dir, MetaFilename+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("written meta.json is not JSON: %v\n%s", err, raw)
	}
	thanos := generic["thanos"].(map[string]any)
	if !reflect.DeepEqual(generic["future_top"], map[string]any{"x": []any{1.0, 2.0}}) || thanos["future_thanos"] != "kept" {
		t.Fatalf("unknown fields were lost: %s", raw)
	}
	back, err := ReadMeta(dir)
	if err != nil || back.Thanos.Labels["new"] != "label" || back.Thanos.Labels["cluster"] != "one" {
		t.Fatalf("re-read: %v %+v", err, back)
	}
	// A second round trip must not duplicate the unknown fields.
	var again bytes.Buffer
	if err := back.Encode(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), raw) || strings.Count(again.String(), "future_top") != 1 {
		t.Errorf("second round trip changed meta.json:\n%s", again.Bytes())
	}
}

func TestDecodeMetaValidation(t *testing.T) {
	const ok = `{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"thanos":{"labels":{"a":"b"}}}`
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"tsdb version 2", strings.Replace(ok, `"version":1`, `"version":2`, 1), "meta.json version 2"},
		{"tsdb version missing", `{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","thanos":{}}`, "meta.json version 0"},
		{"thanos version 2", strings.Replace(ok, `"labels"`, `"version":2,"labels"`, 1), "thanos section version 2"},
		{"cut off", ok[:20], "decode meta.json"},
		{"bad ulid", strings.Replace(ok, "01DRBP", "!!", 1), "decode meta.json"},
	} {
		if _, err := DecodeMeta(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got %v, want error containing %q", tc.name, err, tc.wantErr)
		}
	}
	m, err := DecodeMeta(strings.NewReader(`{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","version":1,"thanos":{}}`))
	if err != nil || m.Thanos.Labels == nil || m.Thanos.Version != 1 {
		t.Errorf("nil labels must become an empty map and thanos version 0 read as 1: %v %+v", err, m)
	}
	m, err = DecodeMeta(strings.NewReader(`{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","version":1}`))
	if err != nil || m.Thanos.Labels == nil {
		t.Errorf("a plain Prometheus meta.json must read: %v", err)
	}
}

// metaKnown and thanosKnown must name every JSON field of the structs, or a
// field would be written twice after a read: this catches a Prometheus
// upgrade adding one to tsdb.BlockMeta.
func TestKnownFieldListsMatchStructs(t *testing.T) {
	tags := func(typ reflect.Type) []string {
		var names []string
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		return names
	}
	wantMeta := append(tags(reflect.TypeFor[tsdb.BlockMeta]()), "thanos")
	if !sameSet(metaKnown, wantMeta) {
		t.Errorf("metaKnown = %v, structs have %v", metaKnown, wantMeta)
	}
	if want := tags(reflect.TypeFor[Thanos]()); !sameSet(thanosKnown, want) {
		t.Errorf("thanosKnown = %v, struct has %v", thanosKnown, want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
