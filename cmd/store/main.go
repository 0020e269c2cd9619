// Command store is Strata's store. Store gateway: serves the blocks in the bucket over the StoreAPI.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/strata-metrics/strata/pkg/component"
)

func main() {
	app, flags := component.NewApp("store", "Store gateway: serves the blocks in the bucket over the StoreAPI.", true)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "strata-store: %v\n", err)
		os.Exit(2)
	}
	rt, err := component.New(flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-store: %v\n", err)
		os.Exit(1)
	}
	// The store itself lands with its own issue; until then the binary only
	// serves the shared runtime and says so in /-/ready.
	rt.Readiness.SetNotReady("the store is not implemented yet")
	if err := rt.Run(context.Background()); err != nil {
		rt.Logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}
