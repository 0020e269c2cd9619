// Command compactor is Strata's compactor. Compactor: compacts, downsamples and applies retention to the bucket.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/strata-metrics/strata/pkg/component"
)

func main() {
	app, flags := component.NewApp("compactor", "Compactor: compacts, downsamples and applies retention to the bucket.", false)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-compactor: %v\n", err)
		os.Exit(2)
	}
	rt, err := component.New(flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-compactor: %v\n", err)
		os.Exit(1)
	}
	// The compactor itself lands with its own issue; until then the binary only
	// serves the shared runtime and says so in /-/ready.
	rt.Readiness.SetNotReady("the compactor is not implemented yet")
	if err := rt.Run(context.Background()); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}
