package query

import (
	"context"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

// Options are the per-request settings of the Thanos query parameters.
type Options struct {
	// Dedup merges series that differ only in replica labels.
	Dedup bool
	// ReplicaLabels name the labels that tell HA replicas apart.
	ReplicaLabels []string
	// PartialResponse turns a failing store into a warning instead of an error.
	PartialResponse bool
	// MaxResolution (ms) is the coarsest downsampling resolution wanted; 0 is raw.
	MaxResolution int64
	// Shard restricts the series selected to one shard of them (a query
	// evaluated shard by shard); nil selects all.
	Shard *storepb.ShardInfo
}

type optionsKey struct{}

// WithOptions returns ctx carrying opts for the queries run under it; the
// HTTP API sets them from the request's parameters.
func WithOptions(ctx context.Context, opts Options) context.Context {
	return context.WithValue(ctx, optionsKey{}, opts)
}

// OptionsFrom returns the options in ctx, or def.
func OptionsFrom(ctx context.Context, def Options) Options {
	if o, ok := ctx.Value(optionsKey{}).(Options); ok {
		return o
	}
	return def
}
