package blockgen

import (
	"errors"
	"fmt"
	"time"
)

// Config says what to generate.
type Config struct {
	// Seed picks the data: the same seed and configuration write the same
	// bytes, block names included.
	Seed int64
	// Targets is the number of scraped hosts; each has SeriesPerTarget series.
	Targets int
	// MinTime and MaxTime (ms, MaxTime exclusive) bound the samples.
	MinTime, MaxTime int64
	// ScrapeInterval is the time between scrapes (default 15s).
	ScrapeInterval time.Duration
	// BlockDuration is the range of each block (default 2h); blocks are
	// aligned to multiples of it since the epoch, as Prometheus aligns them.
	BlockDuration time.Duration
	// Replicas of an HA pair (or more): the same targets scraped by each,
	// with slightly different timestamps and values.
	Replicas int
	// ReplicaLabel (default "replica") and ReplicaValues (default "a", "b",
	// ...) name the replicas in the external labels.
	ReplicaLabel  string
	ReplicaValues []string
	// ExternalLabels go into each block's thanos section, with the replica label.
	ExternalLabels map[string]string
	// NativeHistograms adds a native histogram per HTTP handler.
	NativeHistograms bool
	// Outages are spans in which one replica scraped nothing (a restart, a
	// network partition): gaps in that replica's data only, which HA
	// deduplication exists to fill. Counters keep counting through them.
	Outages []Outage
	// Concurrency is how many cores to use (default 2): blocks written at
	// once, or chunk encoders within a block when there are fewer blocks.
	Concurrency int
}

// Outage is a span [Start, End) (ms) without scrapes by replica Replica
// (an index, 0 for the first replica).
type Outage struct {
	Replica    int
	Start, End int64
}

// Defaults fills in what cfg leaves empty.
func (c *Config) Defaults() {
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = 15 * time.Second
	}
	if c.BlockDuration == 0 {
		c.BlockDuration = 2 * time.Hour
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ReplicaLabel == "" {
		c.ReplicaLabel = "replica"
	}
	if len(c.ReplicaValues) < c.Replicas {
		// Copy: appending must not write into the caller's array.
		vals := append(make([]string, 0, c.Replicas), c.ReplicaValues...)
		for i := len(vals); i < c.Replicas; i++ {
			vals = append(vals, replicaName(i))
		}
		c.ReplicaValues = vals
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
}

// Validate checks cfg after Defaults.
func (c *Config) Validate() error {
	switch {
	case c.Targets < 1:
		return errors.New("targets must be at least 1")
	case c.MaxTime <= c.MinTime:
		return fmt.Errorf("max time %d must be after min time %d", c.MaxTime, c.MinTime)
	case c.ScrapeInterval < time.Millisecond:
		return fmt.Errorf("scrape interval %v too short", c.ScrapeInterval)
	case c.BlockDuration < c.ScrapeInterval:
		return fmt.Errorf("block duration %v shorter than the scrape interval", c.BlockDuration)
	case c.Replicas < 1:
		return errors.New("replicas must be at least 1")
	case c.ScrapeInterval%time.Millisecond != 0 || c.BlockDuration%time.Millisecond != 0:
		return errors.New("scrape interval and block duration must be whole milliseconds")
	}
	for _, o := range c.Outages {
		if o.Replica < 0 || o.Replica >= c.Replicas || o.End <= o.Start {
			return fmt.Errorf("outage %+v: want a replica in [0, %d) and End after Start", o, c.Replicas)
		}
	}
	seen := map[string]bool{}
	for _, v := range c.ReplicaValues[:c.Replicas] {
		if v == "" || seen[v] {
			return fmt.Errorf("replica values %q must be distinct and non-empty", c.ReplicaValues[:c.Replicas])
		}
		seen[v] = true
	}
	return nil
}

// SeriesCount is the number of series each replica's blocks hold.
func (c *Config) SeriesCount() int { return c.Targets * SeriesPerTarget(c.NativeHistograms) }

// replicaName is the default name of the i-th replica: a, b, ..., z, r26, ...
func replicaName(i int) string {
	if i < 26 {
		return string(rune('a' + i))
	}
	return fmt.Sprintf("r%d", i)
}
