// Package queryshard evaluates the aggregations of PromQL range queries
// shard by shard (vertical sharding): each shard selects a disjoint part of
// the series, so a wide query holds a fraction of its series at a time.
// Answers stay the Prometheus engine's own.
package queryshard
