// Package queryapi is the querier's HTTP API. The Prometheus endpoints are
// Prometheus' own handlers (web/api/v1) over the querier's storage, so JSON
// shapes, error types, status codes, stats and annotations are Prometheus'
// to the byte; a thin layer in front turns the Thanos parameters (dedup,
// partial_response, max_source_resolution, replicaLabels[]) into query
// options. It also serves /api/v1/stores and a status page of the endpoints.
package queryapi
