// Package kubernetes holds example manifests for running Strata on
// Kubernetes; its test decodes them strictly into the Kubernetes API types
// and checks that they fit together.
package kubernetes
