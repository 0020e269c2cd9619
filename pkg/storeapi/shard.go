package storeapi

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

// ShardMatcher tells whether a series belongs to one shard of a
// SeriesRequest's ShardInfo. The hash is Thanos' (xxhash of name, 0xff,
// value, 0xff for each hashed label in label order), so a series lands in
// the same shard on every store, ours or Thanos'.
//
// A nil ShardMatcher matches every series.
type ShardMatcher struct {
	index, total uint64
	by           bool
	names        map[string]struct{}
	buf          []byte
}

// NewShardMatcher returns the matcher of info, nil when info does not
// shard, or an error for a shard index outside the shard count.
func NewShardMatcher(info *storepb.ShardInfo) (*ShardMatcher, error) {
	if info == nil || info.TotalShards < 1 {
		return nil, nil
	}
	if info.ShardIndex < 0 || info.ShardIndex >= info.TotalShards {
		return nil, fmt.Errorf("shard index %d out of range for %d shards", info.ShardIndex, info.TotalShards)
	}
	m := &ShardMatcher{index: uint64(info.ShardIndex), total: uint64(info.TotalShards), by: info.By, names: make(map[string]struct{}, len(info.Labels))}
	for _, n := range info.Labels {
		m.names[n] = struct{}{}
	}
	return m, nil
}

// Matches reports whether lset (a series' complete labels, external labels
// included) is in the shard. Not safe for concurrent use.
func (m *ShardMatcher) Matches(lset labels.Labels) bool {
	if m == nil {
		return true
	}
	m.buf = m.buf[:0]
	lset.Range(m.add)
	return m.done()
}

// MatchesList is Matches for labels sorted by name in a slice.
func (m *ShardMatcher) MatchesList(ls []labels.Label) bool {
	if m == nil {
		return true
	}
	m.buf = m.buf[:0]
	for _, l := range ls {
		m.add(l)
	}
	return m.done()
}

func (m *ShardMatcher) add(l labels.Label) {
	if _, listed := m.names[l.Name]; listed != m.by {
		return
	}
	m.buf = append(m.buf, l.Name...)
	m.buf = append(m.buf, 0xff)
	m.buf = append(m.buf, l.Value...)
	m.buf = append(m.buf, 0xff)
}

func (m *ShardMatcher) done() bool {
	return xxhash.Sum64(m.buf)%m.total == m.index
}

// ByLabel returns the one label the shard is keyed by, when it is keyed by
// one label only: its series can then be picked by that label's values
// (SplitValues) from an index, without reading each series.
func (m *ShardMatcher) ByLabel() (string, bool) {
	if m == nil || !m.by || len(m.names) != 1 {
		return "", false
	}
	for n := range m.names {
		return n, true
	}
	return "", false
}

// ValueInShard tells whether series whose ByLabel label has value v are in
// the shard; v "" stands for series without the label.
func (m *ShardMatcher) ValueInShard(name, v string) bool {
	m.buf = m.buf[:0]
	if v != "" {
		m.add(labels.Label{Name: name, Value: v})
	}
	return m.done()
}

// SplitValues sorts the values vals of label name (all of them in an
// index) into those whose series are in the shard and those whose are not,
// and tells whether series without the label are.
func (m *ShardMatcher) SplitValues(name string, vals []string) (in, out []string, absentIn bool) {
	for _, v := range vals {
		if v == "" {
			continue
		}
		if m.ValueInShard(name, v) {
			in = append(in, v)
		} else {
			out = append(out, v)
		}
	}
	return in, out, m.ValueInShard(name, "")
}
