package block

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"
)

// rawObject returns the JSON object stored at name, decoded generically.
func rawObject(t *testing.T, bkt objstore.BucketReader, name string) map[string]any {
	t.Helper()
	r, err := bkt.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s is not JSON: %v: %s", name, err, b)
	}
	return out
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func TestDeletionMark(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	id := ulid.MustNew(1, nil)
	if _, err := ReadMarker[DeletionMark](ctx, bkt, id); !errors.Is(err, ErrMarkerNotFound) {
		t.Fatalf("want ErrMarkerNotFound, got %v", err)
	}
	before := time.Now().Unix()
	if ok, err := MarkForDeletion(ctx, logger, bkt, id, "compacted"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	first, err := ReadMarker[DeletionMark](ctx, bkt, id)
	if err != nil || first.ID != id || first.Version != 1 || first.Details != "compacted" || first.DeletionTime < before || first.DeletionTime > time.Now().Unix() {
		t.Fatalf("%+v %v", first, err)
	}
	raw := rawObject(t, bkt, id.String()+"/deletion-mark.json")
	if got := keys(raw); !slices.Equal(got, []string{"deletion_time", "details", "id", "version"}) {
		t.Errorf("deletion-mark.json keys %v", got)
	}
	if raw["id"] != id.String() || raw["version"] != 1.0 {
		t.Errorf("deletion-mark.json = %v", raw)
	}
	// A second mark keeps the first: the delay counts from the first one.
	if ok, err := MarkForDeletion(ctx, logger, bkt, id, "again"); err != nil || ok {
		t.Fatalf("second mark must not overwrite: %v %v", ok, err)
	}
	if again, _ := ReadMarker[DeletionMark](ctx, bkt, id); !reflect.DeepEqual(again, first) {
		t.Fatalf("mark changed: %+v", again)
	}
}

func TestNoCompactAndNoDownsampleMarks(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	id := ulid.MustNew(2, nil)
	if ok, err := MarkForNoCompaction(ctx, logger, bkt, id, IndexSizeExceedingNoCompactReason, "64GB"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	nc, err := ReadMarker[NoCompactMark](ctx, bkt, id)
	if err != nil || nc.Reason != "index-size-exceeding" || nc.Details != "64GB" || nc.NoCompactTime == 0 || nc.ID != id {
		t.Fatalf("%+v %v", nc, err)
	}
	if got := keys(rawObject(t, bkt, id.String()+"/no-compact-mark.json")); !slices.Equal(got, []string{"details", "id", "no_compact_time", "reason", "version"}) {
		t.Errorf("no-compact-mark.json keys %v", got)
	}
	if ok, err := MarkForNoDownsample(ctx, logger, bkt, id, ManualNoDownsampleReason, ""); err != nil || !ok {
		t.Fatal(ok, err)
	}
	nd, err := ReadMarker[NoDownsampleMark](ctx, bkt, id)
	if err != nil || nd.Reason != "manual" || nd.NoDownsampleTime == 0 {
		t.Fatalf("%+v %v", nd, err)
	}
	// details is omitted when empty, as Thanos does.
	if got := keys(rawObject(t, bkt, id.String()+"/no-downsample-mark.json")); !slices.Equal(got, []string{"id", "no_downsample_time", "reason", "version"}) {
		t.Errorf("no-downsample-mark.json keys %v", got)
	}
}

func TestReadMarkerRejectsInvalid(t *testing.T) {
	ctx := context.Background()
	bkt := newBucket(t)
	id := ulid.MustNew(3, nil)
	for _, tc := range []struct {
		name, content string
		is            error
	}{
		{"cut off", `{"id": "01`, ErrUnmarshalMarker},
		{"not JSON", `garbage`, ErrUnmarshalMarker},
		{"version 2", `{"id":"` + id.String() + `","version":2,"deletion_time":1}`, errMarkerVersion},
		{"no version", `{"id":"` + id.String() + `","deletion_time":1}`, errMarkerVersion},
	} {
		if err := bkt.Upload(ctx, id.String()+"/"+DeletionMarkFilename, strings.NewReader(tc.content)); err != nil {
			t.Fatal(err)
		}
		_, err := ReadMarker[DeletionMark](ctx, bkt, id)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), DeletionMarkFilename) {
			t.Errorf("%s: got %v, want %v naming the file", tc.name, err, tc.is)
		}
	}
	// A failing bucket is neither "not found" nor "invalid".
	rb := &recordingBucket{InstrumentedBucket: bkt, failGet: DeletionMarkFilename}
	if _, err := ReadMarker[DeletionMark](ctx, rb, id); !errors.Is(err, errInjected) || errors.Is(err, ErrMarkerNotFound) || errors.Is(err, ErrUnmarshalMarker) {
		t.Errorf("bucket failure: got %v", err)
	}
}
