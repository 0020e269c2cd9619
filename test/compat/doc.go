// Package compat proves that Strata's StoreAPI and InfoAPI messages are
// wire-compatible with Thanos' own generated types (v0.41.0): every message,
// with every field set, marshalled by one side and unmarshalled by the other.
// Build and test with -tags slicelabels, as Thanos' release build does.
package compat
