// Package bench holds the system benchmark of `make bench`: dashboard
// queries through store gateway + querier against Prometheus' engine over a
// local TSDB of the same blocks, bucket requests per query, and compaction
// and shipping throughput, printed as one table.
package bench
