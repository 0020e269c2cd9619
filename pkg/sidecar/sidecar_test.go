package sidecar

import (
	"testing"
	"time"
)

func TestShipBackoff(t *testing.T) {
	for _, tc := range []struct {
		refresh  time.Duration
		failures int
		want     time.Duration
	}{
		{30 * time.Second, 1, 30 * time.Second},
		{30 * time.Second, 2, time.Minute},
		{30 * time.Second, 4, 4 * time.Minute},
		{30 * time.Second, 5, maxShipBackoff},
		{30 * time.Second, 1000, maxShipBackoff},
		{time.Second, 3, 4 * time.Second},
		// A refresh longer than the cap is never shortened.
		{10 * time.Minute, 3, 10 * time.Minute},
	} {
		if got := shipBackoff(tc.refresh, tc.failures); got != tc.want {
			t.Errorf("shipBackoff(%s, %d) = %s, want %s", tc.refresh, tc.failures, got, tc.want)
		}
	}
}
