package e2e

import (
	"testing"
)

// Strata is one of our running binaries.
type Strata struct {
	*Process
	HTTPAddr string
	// GRPCAddr is empty for binaries started without gRPC.
	GRPCAddr string
}

// StartStrata starts our binary name (sidecar, store, querier, compactor)
// with free --http-address and, when grpc is set, --grpc-address, plus args,
// and waits until /-/ready answers. dir is its working directory (a
// temporary one when empty).
func StartStrata(t testing.TB, name string, grpc bool, dir string, args ...string) *Strata {
	t.Helper()
	s := StartStrataNoWait(t, name, grpc, dir, args...)
	s.WaitReady()
	return s
}

// StartStrataNoWait starts the binary without waiting for readiness.
func StartStrataNoWait(t testing.TB, name string, grpc bool, dir string, args ...string) *Strata {
	t.Helper()
	bin := StrataBinary(t, name)
	if dir == "" {
		dir = t.TempDir()
	}
	s := &Strata{HTTPAddr: FreeAddr(t)}
	all := []string{"--http-address=" + s.HTTPAddr, "--log.level=debug"}
	if grpc {
		s.GRPCAddr = FreeAddr(t)
		all = append(all, "--grpc-address="+s.GRPCAddr)
	}
	s.Process = StartProcess(t, name, dir, nil, bin, append(all, args...)...)
	return s
}

// WaitReady waits until /-/ready answers 200.
func (s *Strata) WaitReady() { s.WaitHTTP("http://"+s.HTTPAddr+"/-/ready", ReadyTimeout) }

// Restart starts the binary again with the same arguments and waits for it.
func (s *Strata) Restart() {
	s.t.Helper()
	if err := s.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.WaitReady()
}
