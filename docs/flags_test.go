package docs_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-metrics/strata/test/e2e"
)

var update = flag.Bool("update", false, "rewrite components/*.md from the binaries' --help")

var components = []struct{ name, title, intro string }{
	{"sidecar", "Sidecar", "Runs next to each Prometheus: uploads its finished blocks to the bucket and serves its recent data over the StoreAPI."},
	{"store", "Store gateway", "Serves the blocks in the bucket over the StoreAPI."},
	{"querier", "Querier", "The Prometheus HTTP API over every sidecar and store gateway, with HA deduplication."},
	{"compactor", "Compactor", "Compacts, downsamples and applies retention to the blocks in the bucket."},
	{"blockgen", "blockgen", "Writes realistic TSDB blocks for tests, benchmarks and the demo."},
}

func render(title, intro, name, help string) string {
	return fmt.Sprintf("# %s\n\n%s\n\nGenerated from `%s --help-long` by `make docs`; a test keeps it current.\n\n```\n%s```\n",
		title, intro, name, help)
}

// TestFlagReferenceIsCurrent compares components/<name>.md with the
// binary's help text.
func TestFlagReferenceIsCurrent(t *testing.T) {
	for _, c := range components {
		out, err := exec.Command(e2e.StrataBinary(t, c.name), "--help-long").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help-long: %v\n%s", c.name, err, out)
		}
		want := render(c.title, c.intro, c.name, string(out))
		path := filepath.Join("components", c.name+".md")
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is not what `%s --help-long` prints: run make docs (%v)", path, c.name, firstDiff(string(got), want))
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d: %q vs %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("%d lines vs %d", len(al), len(bl))
}
