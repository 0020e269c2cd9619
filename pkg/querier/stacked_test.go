package querier

import (
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/prometheus/model/labels"
)

// TestStackedQueriers: a global querier over a regional querier's StoreAPI
// answers what the regional one answers, deduplicated.
func TestStackedQueriers(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dirA, dirB := haPair(t, end, -1)
	a, _ := serveStore(t, dirA, labels.FromStrings("cluster", "c1", "replica", "a"))
	b, _ := serveStore(t, dirB, labels.FromStrings("cluster", "c1", "replica", "b"))
	regional, rURL, rGRPC := startQuerierGRPC(t, a, b)
	waitStores(t, rURL, 2)
	global, gURL := startQuerier(t, rGRPC)
	waitStores(t, gURL, 1)
	r := promv1.Range{Start: end.Add(-5 * time.Hour), End: end.Add(-time.Minute), Step: 5 * time.Minute}
	for _, q := range []string{`sum by (job) (rate(http_requests_total[5m]))`, `count(node_load1)`, `node_load1`} {
		want, _, _, err := regional.QueryRange(ctx(t), q, r)
		if err != nil {
			t.Fatal(err)
		}
		got, _, _, err := global.QueryRange(ctx(t), q, r)
		if err != nil {
			t.Fatal(err)
		}
		if normalise(got) != normalise(want) {
			t.Fatalf("%s through the stacked querier differs:\ngot:\n%.1500s\nwant:\n%.1500s", q, normalise(got), normalise(want))
		}
	}
}
