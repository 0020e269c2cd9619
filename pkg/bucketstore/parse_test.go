package bucketstore

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

var metricParser = parser.NewParser(parser.Options{})

func parseMetric(s string) (labels.Labels, error) { return metricParser.ParseMetric(s) }
