package storeapi

import (
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

// TestShardMatcher: a series is in exactly one shard, the one Thanos'
// hash (xxhash over name 0xff value 0xff of the hashed labels) gives it.
func TestShardMatcher(t *testing.T) {
	lset := labels.FromStrings("__name__", "up", "instance", "h:9100", "job", "node", "replica", "a")
	for _, tc := range []struct {
		by     bool
		labels []string
		hashed string
	}{
		{by: true, labels: []string{"job"}, hashed: "job\xffnode\xff"},
		{by: true, labels: []string{"job", "instance"}, hashed: "instance\xffh:9100\xffjob\xffnode\xff"},
		{by: false, labels: []string{"__name__", "replica"}, hashed: "instance\xffh:9100\xffjob\xffnode\xff"},
		{by: false, labels: nil, hashed: "__name__\xffup\xffinstance\xffh:9100\xffjob\xffnode\xffreplica\xffa\xff"},
	} {
		const total = 7
		want := xxhash.Sum64String(tc.hashed) % total
		in := 0
		for i := range int64(total) {
			m, err := NewShardMatcher(&storepb.ShardInfo{ShardIndex: i, TotalShards: total, By: tc.by, Labels: tc.labels})
			if err != nil {
				t.Fatal(err)
			}
			ls := []labels.Label{}
			lset.Range(func(l labels.Label) { ls = append(ls, l) })
			if m.Matches(lset) != m.MatchesList(ls) {
				t.Fatalf("%v: Matches and MatchesList disagree", tc.labels)
			}
			if m.Matches(lset) {
				in++
				if uint64(i) != want {
					t.Fatalf("by=%v %v: in shard %d, Thanos' hash puts it in %d", tc.by, tc.labels, i, want)
				}
			}
		}
		if in != 1 {
			t.Fatalf("by=%v %v: in %d shards", tc.by, tc.labels, in)
		}
	}
	if m, err := NewShardMatcher(nil); m != nil || err != nil || !m.Matches(lset) {
		t.Fatal("no shard info must match everything")
	}
	if _, err := NewShardMatcher(&storepb.ShardInfo{ShardIndex: 3, TotalShards: 3}); err == nil {
		t.Fatal("shard index 3 of 3 must be refused")
	}
}
