// Package component is the runtime every Strata binary shares: the common
// flags (version, logging, HTTP and gRPC servers with TLS), the HTTP endpoints
// an operator relies on (/metrics, /-/healthy, /-/ready, /debug/pprof/), the
// gRPC health service, and one oklog/run group that starts everything and shuts
// it all down cleanly on SIGTERM or SIGINT.
package component
