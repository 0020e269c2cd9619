package queryshard

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// TestPlan: which aggregations are sharded, and by which key. Every case
// that is not sharded would change the answer if it were.
func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want string // parts as "node | by labels | combine", "" for none
	}{
		{`sum by (job) (rate(x[5m]))`, `sum by (job) (rate(x[5m])) | true [job] | 0`},
		{`sum by (job, replica) (x)`, `sum by (job, replica) (x) | true [job] | 0`},
		{`sum without (instance) (x)`, `sum without (instance) (x) | false [__name__ __type__ __unit__ instance replica] | 0`},
		{`count({__name__=~".+"})`, `count({__name__=~".+"}) | true [instance] | sum`},
		{`sum without (job) (x)`, `sum without (job) (x) | true [instance] | 0`},
		{`group(x)`, `group(x) | true [instance] | group`},
		{`max(x)`, ``},                // on ties (-0 and 0, NaNs) the first series wins
		{`sum by (__type__) (x)`, ``}, // dropped by functions, as the name is
		{`count_values by (job) ("v", x)`, `count_values by (job) ("v", x) | true [job] | 0`},
		{`count_values by (job) ("job", x)`, ``}, // the value replaces the label hashed
		{`count_values without (i) ("v", x)`, ``},
		{`histogram_count(sum by (job) (h))`, ``}, // bucketless reads below it
		{`timestamp(sum by (job) (x))`, ``},
		{`histogram_quantile(0.9, sum by (le) (rate(b[5m])))`, `sum by (le) (rate(b[5m])) | true [le] | 0`},
		{`sum by (a) (x) / sum by (a) (y)`, `sum by (a) (x) | true [a] | 0; sum by (a) (y) | true [a] | 0`},
		{`topk(5, max_over_time(x[1h]))`, ``},                             // ties pick by input order
		{`topk by (job) (5, x)`, `topk by (job) (5, x) | true [job] | 0`}, // at the root
		{`abs(topk by (job) (5, x))`, ``},                                 // not at the root
		{`sum(x)`, ``},                                                    // float sums of parts differ in the last bits
		{`avg(x)`, ``},
		{`sum by (__name__) (x)`, ``},
		{`sum by (replica) (x)`, ``},        // one shard would get everything
		{`sum by (job) (x * on (i) y)`, ``}, // series of two selectors matched
		{`sum by (job) (label_replace(x, "job", "$1", "i", "(.*)"))`, ``},
		{`count(vector(1))`, ``}, // no series selected: every shard counts it
		{`count(hour())`, ``},
		{`sum by (job) (x > scalar(y))`, ``}, // the scalar reads series of all shards
		{`sum by (job) (x > 2)`, `sum by (job) (x > 2) | true [job] | 0`},
		{`absent(sum by (job) (x))`, ``},               // reads its argument's matchers
		{`max_over_time(sum by (job) (x)[1h:5m])`, ``}, // steps of its own
		{`sum by (job) (max_over_time(x[1h:5m]))`, `sum by (job) (max_over_time(x[1h:5m])) | true [job] | 0`},
		{`quantile by (job) (0.9, x)`, `quantile by (job) (0.9, x) | true [job] | 0`},
		{`quantile by (job) (scalar(y), x)`, ``},
		{`sum by (job) (sum by (job, i) (x))`, `sum by (job, i) (x) | true [job i] | 0`},
	} {
		t.Run(tc.q, func(t *testing.T) {
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for i, p := range plan(expr, []string{"replica"}) {
				if i > 0 {
					got += "; "
				}
				comb := "0"
				if p.combine != 0 {
					comb = p.combine.String()
				}
				got += fmt.Sprintf("%s | %v %v | %s", p.node, p.by, p.labels, comb)
			}
			if got != tc.want {
				t.Fatalf("plan:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
