package store_test

import (
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

func promRange(end time.Time) promv1.Range {
	return promv1.Range{Start: end.Add(-8 * time.Hour).Add(10 * time.Minute), End: end.Add(-time.Minute), Step: 5 * time.Minute}
}
