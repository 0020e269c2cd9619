// Package storeapi holds what every StoreAPI client and server shares beyond
// the generated code: conversions between the wire types and Prometheus'
// labels, matchers and chunk encodings, the external-label rules (which
// stores a request can match, how external labels are attached), and the
// sorted series streaming a server must do.
package storeapi
