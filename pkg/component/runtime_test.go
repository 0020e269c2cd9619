package component

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func parse(t *testing.T, withGRPC bool, args ...string) *Flags {
	t.Helper()
	app, f := NewApp("test", "test component", withGRPC)
	base := []string{"--http-address=127.0.0.1:0"}
	if withGRPC {
		base = append(base, "--grpc-address=127.0.0.1:0")
	}
	if _, err := app.Parse(append(base, args...)); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	return f
}

// start runs the runtime until the test ends and returns it.
func start(t *testing.T, f *Flags) *Runtime {
	t.Helper()
	rt, err := New(f)
	if err != nil {
		t.Fatalf("new runtime: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("runtime did not stop within 10s of cancel")
		}
	})
	return rt
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond) // retry interval of a bounded poll, not synchronisation
	}
}

func TestHTTPEndpointsAndReadiness(t *testing.T) {
	rt := start(t, parse(t, true))
	base := "http://" + rt.HTTPAddr().String()

	if code, body := get(t, http.DefaultClient, base+"/-/healthy"); code != 200 {
		t.Fatalf("healthy: %d %s", code, body)
	}
	code, body := get(t, http.DefaultClient, base+"/-/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("ready before SetReady: %d %q, want 503 naming the reason", code, body)
	}

	conn, err := grpc.NewClient(rt.GRPCAddr().String(), mustInsecure(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	waitHealth(t, hc, healthpb.HealthCheckResponse_NOT_SERVING)

	rt.Readiness.SetReady()
	if code, _ := get(t, http.DefaultClient, base+"/-/ready"); code != 200 {
		t.Fatalf("ready after SetReady: %d", code)
	}
	waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)

	code, body = get(t, http.DefaultClient, base+"/metrics")
	if code != 200 || !strings.Contains(body, "strata_test_build_info") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d, missing build info or Go metrics", code)
	}
	if code, body := get(t, http.DefaultClient, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %d", code)
	}
}

func waitHealth(t *testing.T, hc healthpb.HealthClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health: want %v, last %v / %v", want, resp, err)
		}
		time.Sleep(20 * time.Millisecond) // bounded poll interval
	}
}

func mustInsecure(t *testing.T) grpc.DialOption {
	t.Helper()
	opt, err := (&GRPCClientFlags{}).TransportCredentials()
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func TestPortInUseFailsAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	app, f := NewApp("test", "", false)
	if _, err := app.Parse([]string{"--http-address=" + l.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	_, err = New(f)
	if err == nil || !strings.Contains(err.Error(), "--http-address") {
		t.Fatalf("want an error naming --http-address, got %v", err)
	}
}

func TestFlagValidation(t *testing.T) {
	for _, args := range [][]string{
		{"--grpc-server-tls-cert=a.pem"},
		{"--grpc-server-tls-client-ca=ca.pem"},
	} {
		f := parse(t, true, args...)
		if err := f.Validate(); err == nil {
			t.Errorf("%v: want a validation error", args)
		}
	}
	if _, err := (&GRPCClientFlags{Cert: "c.pem"}).TransportCredentials(); err == nil {
		t.Error("client cert without --grpc-client-tls-secure: want an error")
	}
}

// TestGRPCMutualTLS proves the server and client TLS flags work together,
// and that a client without a certificate is refused when a client CA is set.
func TestGRPCMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	srvCert, srvKey := ca.issue(t, dir, "server")
	cliCert, cliKey := ca.issue(t, dir, "client")

	rt := start(t, parse(t, true,
		"--grpc-server-tls-cert="+srvCert, "--grpc-server-tls-key="+srvKey, "--grpc-server-tls-client-ca="+ca.certPath))
	rt.Readiness.SetReady()

	good := &GRPCClientFlags{Secure: true, CA: ca.certPath, Cert: cliCert, Key: cliKey, ServerName: "localhost"}
	opt, err := good.TransportCredentials()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(rt.GRPCAddr().String(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitHealth(t, healthpb.NewHealthClient(conn), healthpb.HealthCheckResponse_SERVING)

	noCert := &GRPCClientFlags{Secure: true, CA: ca.certPath, ServerName: "localhost"}
	opt, err = noCert.TransportCredentials()
	if err != nil {
		t.Fatal(err)
	}
	conn2, err := grpc.NewClient(rt.GRPCAddr().String(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn2).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("client without certificate was accepted by an mTLS server")
	}
}

// TestHTTPBasicAuth proves --http.config is read by exporter-toolkit.
func TestHTTPBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "basic_auth_users:\n  admin: %s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := start(t, parse(t, false, "--http.config="+cfg))
	url := "http://" + rt.HTTPAddr().String() + "/-/healthy"
	if code, _ := get(t, http.DefaultClient, url); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("admin", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d, want 200", resp.StatusCode)
	}
}

type testCA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certPath string
}

func newCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "strata test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(dir, "ca.pem")
	writePEM(t, p, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, certPath: p}
}

func (ca *testCA) issue(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "EC PRIVATE KEY", kder)
	return certPath, keyPath
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
