// Package sidecar is the component that runs next to a Prometheus: it keeps
// Prometheus' external labels and settings up to date, ships its blocks
// (package shipper) and serves its data over the StoreAPI by remote read
// with streamed chunks.
package sidecar
