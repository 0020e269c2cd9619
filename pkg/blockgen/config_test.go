package blockgen

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "defaults are valid", change: func(*Config) {}},
		{name: "no targets", change: func(c *Config) { c.Targets = 0 }, wantErr: "targets"},
		{name: "empty range", change: func(c *Config) { c.MaxTime = c.MinTime }, wantErr: "max time"},
		{name: "sub-millisecond interval", change: func(c *Config) { c.ScrapeInterval = 1500 * time.Microsecond }, wantErr: "whole milliseconds"},
		{name: "block shorter than a scrape", change: func(c *Config) { c.BlockDuration = time.Second }, wantErr: "block duration"},
		{name: "outage of a missing replica", change: func(c *Config) { c.Outages = []Outage{{Replica: 2, Start: 0, End: 1}} }, wantErr: "outage"},
		{name: "empty outage", change: func(c *Config) { c.Outages = []Outage{{Replica: 1, Start: 5, End: 5}} }, wantErr: "outage"},
		{name: "duplicate replica names", change: func(c *Config) { c.ReplicaValues = []string{"x", "x"} }, wantErr: "distinct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			cfg.Defaults()
			err := cfg.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultReplicaNames(t *testing.T) {
	given := make([]string, 1, 8)
	given[0] = "p1"
	cfg := Config{Replicas: 30, ReplicaValues: given}
	cfg.Defaults()
	if got := cfg.ReplicaValues; len(got) != 30 || got[0] != "p1" || got[1] != "b" || got[25] != "z" || got[26] != "r26" {
		t.Fatalf("replica names %q", got)
	}
	if given[:2][1] != "" {
		t.Fatal("Defaults wrote into the caller's slice")
	}
}
