// Package blockgen writes realistic Prometheus TSDB blocks for tests,
// benchmarks and the demo: node-exporter- and HTTP-service-like series
// (counters with resets, gauges, classic and native histograms) scraped every
// 15s from many targets, by one or more HA replicas that see slightly
// different timestamps and values, as a real Prometheus pair does.
//
// Blocks are written straight with the tsdb index and chunk writers, not
// through a head, so generation runs at tens of millions of samples a second
// and memory is bounded by the label sets, not the samples. Output is
// deterministic for a seed: the same configuration writes the same bytes.
package blockgen
