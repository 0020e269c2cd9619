//go:build !linux

package promclient

import (
	"net"
	"net/http"
)

// remoteReadClient: remote read shares the client's connections where
// SO_RCVLOWAT is not used (see readconn_linux.go).
func remoteReadClient(string, *http.Transport) (*http.Client, *spareDialer) { return nil, nil }

type spareDialer struct{}

func coalesceReads(net.Conn) {}

func dialledAhead(net.Conn) bool { return false }
