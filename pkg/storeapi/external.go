package storeapi

import (
	"github.com/prometheus/prometheus/model/labels"
)

// MatchesExternalLabels tells whether a request with matchers can select
// anything from a store whose series all carry one of the external label
// sets. A store with no label sets may hold anything. A matcher on a label a
// set lacks is tested against the empty value, as Prometheus does.
func MatchesExternalLabels(ms []*labels.Matcher, sets []labels.Labels) bool {
	if len(sets) == 0 {
		return true
	}
	for _, set := range sets {
		if matchesSet(ms, set) {
			return true
		}
	}
	return false
}

func matchesSet(ms []*labels.Matcher, set labels.Labels) bool {
	for _, m := range ms {
		if !set.Has(m.Name) {
			// The label comes from the series, not the store: cannot tell.
			continue
		}
		if !m.Matches(set.Get(m.Name)) {
			return false
		}
	}
	return true
}

// SplitExternalMatchers splits matchers into those on external labels (which
// a store evaluates once against its label set) and the rest, which select
// series. ok is false when an external-label matcher excludes the store.
func SplitExternalMatchers(ms []*labels.Matcher, ext labels.Labels) (series []*labels.Matcher, ok bool) {
	for _, m := range ms {
		if ext.Has(m.Name) {
			if !m.Matches(ext.Get(m.Name)) {
				return nil, false
			}
			continue
		}
		series = append(series, m)
	}
	return series, true
}

// AttachExternalLabels returns lset with the external labels added; external
// labels win over series labels of the same name, as in Thanos.
func AttachExternalLabels(b *labels.Builder, lset, ext labels.Labels) labels.Labels {
	if ext.IsEmpty() {
		return lset
	}
	b.Reset(lset)
	ext.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
	return b.Labels()
}

// WithoutLabels returns lset without the named labels.
func WithoutLabels(b *labels.Builder, lset labels.Labels, names []string) labels.Labels {
	if len(names) == 0 {
		return lset
	}
	b.Reset(lset)
	b.Del(names...)
	return b.Labels()
}
