// Package promql runs Prometheus' own PromQL test suite (the
// promql/promqltest/testdata files of the Prometheus module we build on)
// through the distributed path: each time the suite's data change they are
// written as a TSDB block with Thanos meta (external label replica="r1")
// into a bucket, the store gateway serves it over the StoreAPI, a querier
// with --query.replica-label=replica sits in front, and every eval sent over the
// querier's HTTP API and turned back into a PromQL result for promqltest to
// judge. Each eval runs on its own, after replaying the loads before it, so
// one failure does not hide the rest; the report gives per-file counts.
package promql
