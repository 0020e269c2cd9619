package component

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// GRPCClientFlags configure how a component dials gRPC peers (the querier
// dialing stores), with Thanos' flag names.
type GRPCClientFlags struct {
	Secure     bool
	SkipVerify bool
	Cert       string
	Key        string
	CA         string
	ServerName string
}

// RegisterGRPCClientFlags adds the --grpc-client-tls-* flags to app.
func RegisterGRPCClientFlags(app *kingpin.Application) *GRPCClientFlags {
	f := &GRPCClientFlags{}
	app.Flag("grpc-client-tls-secure", "Use TLS when talking to the gRPC endpoints.").Default("false").BoolVar(&f.Secure)
	app.Flag("grpc-client-tls-skip-verify", "Disable verification of the endpoints' server certificates (insecure; for testing).").Default("false").BoolVar(&f.SkipVerify)
	app.Flag("grpc-client-tls-cert", "TLS client certificate presented to the endpoints.").Default("").StringVar(&f.Cert)
	app.Flag("grpc-client-tls-key", "TLS key for the client certificate.").Default("").StringVar(&f.Key)
	app.Flag("grpc-client-tls-ca", "TLS CA certificates to verify the endpoints' server certificates against.").Default("").StringVar(&f.CA)
	app.Flag("grpc-client-server-name", "Server name expected in the endpoints' certificates.").Default("").StringVar(&f.ServerName)
	return f
}

// TransportCredentials returns the dial option for the configured client TLS.
func (f *GRPCClientFlags) TransportCredentials() (grpc.DialOption, error) {
	if !f.Secure {
		if f.Cert != "" || f.CA != "" {
			return nil, fmt.Errorf("--grpc-client-tls-cert or --grpc-client-tls-ca given without --grpc-client-tls-secure")
		}
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("--grpc-client-tls-cert and --grpc-client-tls-key must be given together")
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: f.SkipVerify, //nolint:gosec // explicitly requested by the operator.
		ServerName:         f.ServerName,
	}
	if f.CA != "" {
		pool, err := readCertPool(f.CA)
		if err != nil {
			return nil, fmt.Errorf("--grpc-client-tls-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" {
		// Reload on every handshake so rotated certificates are picked up
		// without a restart, as cert-manager rotates them in place.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				return nil, fmt.Errorf("load gRPC client certificate %s: %w", f.Cert, err)
			}
			return &c, nil
		}
		if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
			return nil, fmt.Errorf("load --grpc-client-tls-cert %s / --grpc-client-tls-key %s: %w", f.Cert, f.Key, err)
		}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

// serverTLS builds the gRPC server's TLS config, or nil when TLS is off.
func (f *GRPCServerFlags) serverTLS() (*tls.Config, error) {
	if f.TLSCert == "" {
		return nil, nil
	}
	if _, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey); err != nil {
		return nil, fmt.Errorf("load --grpc-server-tls-cert %s / --grpc-server-tls-key %s: %w", f.TLSCert, f.TLSKey, err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Reload on every handshake so rotated certificates are picked up.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("load gRPC server certificate %s: %w", f.TLSCert, err)
			}
			return &c, nil
		},
	}
	if f.TLSClientCA != "" {
		pool, err := readCertPool(f.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--grpc-server-tls-client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func readCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates found in %s", path)
	}
	return pool, nil
}
