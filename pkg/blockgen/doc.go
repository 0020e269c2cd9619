// Package blockgen writes realistic Prometheus TSDB blocks for tests,
// benchmarks and the demo: node-exporter- and HTTP-service-like series
// (counters that reset together when a target restarts, gauges, classic and
// native histograms) scraped every 15s from many targets, by one or more HA
// replicas that see slightly different timestamps and values, as a real
// Prometheus pair does.
//
// WriteDir writes a Prometheus data directory, WriteBucket a bucket with
// Thanos metadata; SeriesSet gives tests the exact samples the blocks hold.
//
// Blocks are written straight with the tsdb index and chunk writers, not
// through a head, so generation runs at millions of samples a second per
// core and memory is bounded by the label sets, not the samples. Output is
// deterministic for a seed: the same configuration writes the same bytes.
package blockgen
