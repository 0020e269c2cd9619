package query

import (
	"slices"
	"testing"

	"github.com/strata-metrics/strata/api/proto/storepb"
)

func TestAggregatesFor(t *testing.T) {
	avg := []storepb.Aggr{storepb.Aggr_COUNT, storepb.Aggr_SUM}
	for fn, want := range map[string][]storepb.Aggr{
		"max_over_time":   {storepb.Aggr_MAX},
		"min":             {storepb.Aggr_MIN},
		"count_over_time": {storepb.Aggr_COUNT},
		"sum_over_time":   {storepb.Aggr_SUM},
		"sum":             avg, // sum() adds samples across series
		"rate":            {storepb.Aggr_COUNTER},
		"increase":        {storepb.Aggr_COUNTER},
		"xrate":           {storepb.Aggr_COUNTER},
		"avg_over_time":   avg,
		"":                avg,
	} {
		if got := aggregatesFor(fn); !slices.Equal(got, want) {
			t.Errorf("aggregatesFor(%q) = %v, want %v", fn, got, want)
		}
	}
}
