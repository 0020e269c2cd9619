// Package e2e starts real processes for end-to-end tests: the real
// Prometheus and MinIO that `make tools` installs into .tools/bin, and
// Strata's own binaries from bin/. Every process runs on free 127.0.0.1
// ports in the test's temporary directory, is waited for by polling its
// readiness endpoint with a deadline, has its log printed into the test
// output when the test fails, and is always stopped when the test ends.
package e2e
