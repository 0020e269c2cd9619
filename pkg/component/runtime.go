package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Runtime holds what a running component shares: logger, metrics registry,
// readiness, the HTTP mux and the gRPC server. Components register their
// handlers and services on it, add their own loops with Add or AddService,
// then call Run.
type Runtime struct {
	Name      string
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	Readiness *Readiness
	// Mux serves the HTTP endpoints; components add their API under it.
	Mux *http.ServeMux
	// GRPC is nil when the component serves no gRPC.
	GRPC *grpc.Server

	flags        *Flags
	health       *health.Server
	httpListener net.Listener
	grpcListener net.Listener
	group        run.Group
}

// New sets up the runtime and binds its listeners, so that a port already in
// use fails at start-up with a clear error rather than after the component
// has done expensive work.
func New(f *Flags, grpcOpts ...grpc.ServerOption) (*Runtime, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	logger := f.NewLogger()
	if f.AutoGoMemLimit {
		setMemoryLimit(logger, f.AutoGoMemLimitRatio, cgroupLimitFiles)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("strata_"+f.Name),
	)

	r := &Runtime{
		Name:      f.Name,
		Logger:    logger,
		Registry:  reg,
		Readiness: NewReadiness("starting"),
		Mux:       http.NewServeMux(),
		flags:     f,
	}
	r.registerHTTPEndpoints()

	l, err := net.Listen("tcp", f.HTTP.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on --http-address %s: %w", f.HTTP.Address, err)
	}
	r.httpListener = l
	if f.HTTP.ConfigFile != "" {
		if err := web.Validate(f.HTTP.ConfigFile); err != nil {
			l.Close()
			return nil, fmt.Errorf("--http.config %s: %w", f.HTTP.ConfigFile, err)
		}
	}

	if f.GRPC != nil {
		tlsCfg, err := f.GRPC.serverTLS()
		if err != nil {
			l.Close()
			return nil, err
		}
		opts := []grpc.ServerOption{
			// Series frames can be large; the limit that protects the
			// process is the per-request series/sample limits, not this.
			grpc.MaxRecvMsgSize(math.MaxInt32),
			grpc.MaxSendMsgSize(math.MaxInt32),
		}
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		r.GRPC = grpc.NewServer(append(opts, grpcOpts...)...)
		r.health = health.NewServer()
		healthpb.RegisterHealthServer(r.GRPC, r.health)
		reflection.Register(r.GRPC)
		gl, err := net.Listen("tcp", f.GRPC.Address)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("listen on --grpc-address %s: %w", f.GRPC.Address, err)
		}
		r.grpcListener = gl
		r.Readiness.OnChange(func(ready bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ready {
				st = healthpb.HealthCheckResponse_SERVING
			}
			r.health.SetServingStatus("", st)
		})
	}
	return r, nil
}

// HTTPAddr is the address the HTTP server listens on.
func (r *Runtime) HTTPAddr() net.Addr { return r.httpListener.Addr() }

// GRPCAddr is the address the gRPC server listens on, or nil without gRPC.
func (r *Runtime) GRPCAddr() net.Addr {
	if r.grpcListener == nil {
		return nil
	}
	return r.grpcListener.Addr()
}

// Add adds an actor to the run group: execute runs until interrupt is called;
// the first actor to return stops all the others.
func (r *Runtime) Add(execute func() error, interrupt func(error)) {
	r.group.Add(execute, interrupt)
}

// AddService runs fn until the runtime shuts down; fn must return when ctx is
// cancelled. A non-nil error other than ctx's stops the whole component.
func (r *Runtime) AddService(name string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	r.group.Add(func() error {
		err := fn(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}, func(error) { cancel() })
}

// Run serves HTTP and gRPC and runs every added actor until a signal arrives
// or one actor returns. It returns the first actor's error, nil on a signal.
func (r *Runtime) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.group.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))

	srv := &http.Server{Handler: r.Mux, ReadHeaderTimeout: 30 * time.Second}
	r.group.Add(func() error {
		noSystemd := false
		addrs := []string{r.flags.HTTP.Address}
		err := web.Serve(r.httpListener, srv, &web.FlagConfig{
			WebListenAddresses: &addrs,
			WebSystemdSocket:   &noSystemd,
			WebConfigFile:      &r.flags.HTTP.ConfigFile,
		}, r.Logger)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("HTTP server: %w", err)
	}, func(error) {
		r.Readiness.SetNotReady("shutting down")
		sctx, scancel := context.WithTimeout(context.Background(), r.flags.HTTP.GracePeriod)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			r.Logger.Warn("HTTP server did not shut down gracefully", "err", err)
		}
	})

	if r.GRPC != nil {
		r.group.Add(func() error {
			if err := r.GRPC.Serve(r.grpcListener); err != nil {
				return fmt.Errorf("gRPC server: %w", err)
			}
			return nil
		}, func(error) {
			r.Readiness.SetNotReady("shutting down")
			r.health.Shutdown()
			stopped := make(chan struct{})
			go func() { r.GRPC.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(r.flags.GRPC.GracePeriod):
				r.Logger.Warn("gRPC requests still running after the grace period; closing them")
				r.GRPC.Stop()
			}
		})
	}

	r.Logger.Info("starting", "http", r.HTTPAddr(), "grpc", r.GRPCAddr())
	err := r.group.Run()
	var sig *run.SignalError
	if errors.As(err, &sig) {
		r.Logger.Info("stopped", "signal", sig.Signal)
		return nil
	}
	if err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return err
	}
	r.Logger.Info("stopped")
	return nil
}

func (r *Runtime) registerHTTPEndpoints() {
	r.Mux.Handle("/metrics", promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	r.Mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "strata %s is healthy.\n", r.Name)
	})
	r.Mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		ready, reason := r.Readiness.Status()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "strata %s is not ready: %s\n", r.Name, reason)
			return
		}
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "strata %s is ready.\n", r.Name)
	})
	r.Mux.HandleFunc("/debug/pprof/", pprof.Index)
	r.Mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	r.Mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.Mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.Mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
