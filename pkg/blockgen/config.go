package blockgen

import (
	"errors"
	"fmt"
	"time"
)

// Config says what to generate.
type Config struct {
	Seed int64
	// Targets is the number of scraped hosts; each has SeriesPerTarget series.
	Targets int
	// MinTime and MaxTime (ms, MaxTime exclusive) bound the samples.
	MinTime, MaxTime int64
	ScrapeInterval   time.Duration
	// BlockDuration is the range of each block; blocks are aligned to
	// multiples of it since the epoch, as Prometheus aligns them.
	BlockDuration time.Duration
	// Replicas of an HA pair (or more): the same targets scraped by each,
	// with slightly different timestamps and values.
	Replicas int
	// ReplicaLabel and ReplicaValues name the replicas in the external labels.
	ReplicaLabel  string
	ReplicaValues []string
	// ExternalLabels go into each block's thanos section, with the replica label.
	ExternalLabels map[string]string
	// NativeHistograms adds a native histogram per HTTP handler.
	NativeHistograms bool
	// Concurrency is the number of blocks written at once (default: 2).
	Concurrency int
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
	for len(c.ReplicaValues) < c.Replicas {
		c.ReplicaValues = append(c.ReplicaValues, string(rune('a'+len(c.ReplicaValues))))
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
	}
	return nil
}

// SeriesCount is the number of series each replica's blocks hold.
func (c *Config) SeriesCount() int { return c.Targets * SeriesPerTarget(c.NativeHistograms) }
