// Package query is the querier's storage: a Prometheus storage.Queryable over
// the StoreAPI endpoints. A Select goes to every store whose time range and
// external labels can match, streams each store's sorted series, merges the
// streams by labels and deduplicates HA replicas (package dedup). Store
// failures become warnings under partial response, errors otherwise.
package query
