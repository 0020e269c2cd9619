package component

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
)

// Default listen addresses, the same as Thanos' so that swapping a component
// keeps Kubernetes Services and scrape configs working.
const (
	DefaultGRPCAddress = "0.0.0.0:10901"
	DefaultHTTPAddress = "0.0.0.0:10902"
)

// Flags are the flags every component has. The gRPC part is nil for
// components that do not serve gRPC (the compactor).
type Flags struct {
	Name string
	Log  promslog.Config
	HTTP HTTPFlags
	GRPC *GRPCServerFlags
	// AutoGoMemLimit and its ratio set the Go memory limit from the
	// container's, with Prometheus' flag names.
	AutoGoMemLimit      bool
	AutoGoMemLimitRatio float64
}

// HTTPFlags configure the HTTP server.
type HTTPFlags struct {
	Address     string
	ConfigFile  string // exporter-toolkit web config: TLS and basic auth.
	GracePeriod time.Duration
}

// GRPCServerFlags configure the gRPC server, with Thanos' flag names.
type GRPCServerFlags struct {
	Address     string
	TLSCert     string
	TLSKey      string
	TLSClientCA string
	GracePeriod time.Duration
}

// NewApp returns a kingpin application with --version and the common flags
// registered. withGRPC adds the gRPC server flags.
func NewApp(name, help string, withGRPC bool) (*kingpin.Application, *Flags) {
	app := kingpin.New(name, help)
	app.Version(version.Print("strata-" + name))
	app.HelpFlag.Short('h')

	f := &Flags{Name: name}
	promslogflag.AddFlags(app, &f.Log)

	app.Flag("http-address", "Listen host:port for HTTP endpoints (/metrics, /-/healthy, /-/ready, /debug/pprof/ and the component's API).").
		Default(DefaultHTTPAddress).StringVar(&f.HTTP.Address)
	app.Flag("http.config", "Path to a configuration file that can enable TLS or basic authentication on the HTTP server (exporter-toolkit web config format).").
		Default("").StringVar(&f.HTTP.ConfigFile)
	app.Flag("http-grace-period", "Time to wait after an interrupt for in-flight HTTP requests to finish.").
		Default("2m").DurationVar(&f.HTTP.GracePeriod)

	app.Flag("auto-gomemlimit", "Set the Go runtime's memory limit (GOMEMLIMIT) to a ratio of the container's memory limit (cgroup), so the garbage collector works harder before the container is OOM-killed. A GOMEMLIMIT environment variable wins.").
		Default("true").BoolVar(&f.AutoGoMemLimit)
	app.Flag("auto-gomemlimit.ratio", "Ratio of the container's memory limit that --auto-gomemlimit sets as the Go memory limit, in (0, 1].").
		Default("0.9").Float64Var(&f.AutoGoMemLimitRatio)

	if withGRPC {
		f.GRPC = &GRPCServerFlags{}
		app.Flag("grpc-address", "Listen host:port for the gRPC StoreAPI, InfoAPI and health service.").
			Default(DefaultGRPCAddress).StringVar(&f.GRPC.Address)
		app.Flag("grpc-server-tls-cert", "TLS certificate for the gRPC server; leave empty to disable TLS.").
			Default("").StringVar(&f.GRPC.TLSCert)
		app.Flag("grpc-server-tls-key", "TLS key for the gRPC server; leave empty to disable TLS.").
			Default("").StringVar(&f.GRPC.TLSKey)
		app.Flag("grpc-server-tls-client-ca", "TLS CA to verify gRPC clients against; when set, clients must present a certificate signed by it (mTLS).").
			Default("").StringVar(&f.GRPC.TLSClientCA)
		app.Flag("grpc-grace-period", "Time to wait after an interrupt for in-flight gRPC requests to finish.").
			Default("2m").DurationVar(&f.GRPC.GracePeriod)
	}
	return app, f
}

// Validate checks combinations the flag parser cannot.
func (f *Flags) Validate() error {
	if f.AutoGoMemLimit && (f.AutoGoMemLimitRatio <= 0 || f.AutoGoMemLimitRatio > 1) {
		return fmt.Errorf("--auto-gomemlimit.ratio must be in (0, 1], got %v", f.AutoGoMemLimitRatio)
	}
	if f.GRPC != nil {
		if (f.GRPC.TLSCert == "") != (f.GRPC.TLSKey == "") {
			return fmt.Errorf("--grpc-server-tls-cert and --grpc-server-tls-key must be given together")
		}
		if f.GRPC.TLSClientCA != "" && f.GRPC.TLSCert == "" {
			return fmt.Errorf("--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key")
		}
	}
	return nil
}

// NewLogger builds the component's logger from the log flags.
func (f *Flags) NewLogger() *slog.Logger {
	return promslog.New(&f.Log).With("component", f.Name)
}
