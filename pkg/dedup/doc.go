// Package dedup merges the series of HA replica pairs (two or more
// Prometheus scraping the same targets, differing only in a replica label)
// into one series, with the penalty algorithm Thanos uses: stay on one
// replica and switch only across a gap of more than about two scrape
// intervals. Counters are kept from jumping down at a switch, so rate() shows
// no spike, while real counter resets pass through untouched.
package dedup
