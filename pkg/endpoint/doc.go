// Package endpoint keeps the querier's set of StoreAPI endpoints: it resolves
// --endpoint values (host:port, dns+host:port, dnssrv+_grpc._tcp.name) and
// file SD entries, dials them, calls Info on each to learn its external
// labels, time range and abilities, and keeps that up to date, marking
// endpoints that fail as unhealthy until they answer again.
package endpoint
