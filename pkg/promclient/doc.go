// Package promclient talks to the Prometheus a sidecar runs next to: its
// external labels and flags from the status API, label names and values,
// and remote read with streamed XOR chunks.
package promclient
