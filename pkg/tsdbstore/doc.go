// Package tsdbstore serves a local Prometheus TSDB (or any
// storage.ChunkQueryable) over the StoreAPI and InfoAPI, with external
// labels. It is the stand-in store of querier tests and of the PromQL
// conformance test; it buffers and sorts each response, so it is not meant
// for large results.
package tsdbstore
