// Package querier wires the querier component: the endpoint set, the
// StoreAPI-backed storage with deduplication, Prometheus' PromQL engine and
// the Prometheus-compatible HTTP API, on the shared component runtime.
package querier
