// Package promql runs Prometheus' own PromQL test suite (the
// promql/promqltest/testdata files of the Prometheus module we build on)
// through the distributed path: the suite's data served over the StoreAPI,
// a querier with HA deduplication in front, and every eval sent over the
// querier's HTTP API and turned back into a PromQL result for promqltest to
// judge. Each eval runs on its own, after replaying the loads before it, so
// one failure does not hide the rest; the report gives per-file counts.
package promql
