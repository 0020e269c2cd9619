// Package compact is the compactor: it groups the bucket's blocks by
// external labels (less the deduplication replica labels) and resolution,
// compacts each group's blocks into ever larger ones (2h → 8h → 2d → 14d)
// with Prometheus' tsdb compactor, marks the sources for deletion and deletes
// them after a delay, halts a group on overlapping blocks unless vertical
// compaction is on, applies retention and cleans up abandoned partial
// uploads. Every step is safe to interrupt: the next run finishes the work.
package compact
