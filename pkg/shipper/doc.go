// Package shipper uploads the finished TSDB blocks of a Prometheus data
// directory to the bucket, each exactly once, with the thanos meta section,
// and remembers what it shipped in thanos.shipper.json: the only file it
// writes into the data directory.
package shipper
