// Package docs holds Strata's documentation. Its test checks that the flag
// reference in components/ is what the binaries' --help prints today; run
// `make docs` to regenerate it.
package docs
