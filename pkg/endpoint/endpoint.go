package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// Config of the endpoint set.
type Config struct {
	// Endpoints as given with --endpoint.
	Endpoints []string
	// SDFiles are file SD files (YAML or JSON lists of {targets: [...]}),
	// re-read at every refresh so edits apply without a restart.
	SDFiles []string
	// Refresh is how often addresses are resolved and Info is called.
	Refresh time.Duration
	// InfoTimeout bounds one Info call.
	InfoTimeout time.Duration
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// ReadBufferSize is the querier's gRPC read buffer per endpoint connection
// (gRPC's default is 32 KiB).
const ReadBufferSize = 256 << 10

// Set is the live set of endpoints.
type Set struct {
	cfg      Config
	resolver *net.Resolver

	mu        sync.RWMutex
	endpoints map[string]*Endpoint

	// The last targets each SD file and DNS name gave: a file caught half
	// written or a failed lookup keeps them rather than dropping their
	// endpoints, as in Prometheus' file SD and Thanos.
	resolveMu sync.Mutex
	lastGood  map[string][]string
}

// NewSet returns a set; call Refresh (or Run) to populate it.
func NewSet(cfg Config) (*Set, error) {
	for _, e := range cfg.Endpoints {
		if _, _, err := parseSpec(e); err != nil {
			return nil, err
		}
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.InfoTimeout <= 0 {
		cfg.InfoTimeout = 5 * time.Second
	}
	return &Set{cfg: cfg, resolver: net.DefaultResolver, endpoints: map[string]*Endpoint{}}, nil
}

// parseSpec splits an --endpoint value into its resolution mode and name.
func parseSpec(spec string) (mode, name string, err error) {
	switch {
	case strings.HasPrefix(spec, "dnssrv+"):
		mode, name = "dnssrv", strings.TrimPrefix(spec, "dnssrv+")
	case strings.HasPrefix(spec, "dns+"):
		mode, name = "dns", strings.TrimPrefix(spec, "dns+")
	default:
		mode, name = "static", spec
	}
	if mode != "dnssrv" {
		if _, _, err := net.SplitHostPort(name); err != nil {
			return "", "", fmt.Errorf("endpoint %q: want host:port, dns+host:port or dnssrv+name: %w", spec, err)
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("endpoint %q is empty", spec)
	}
	return mode, name, nil
}

// Run refreshes the set every Config.Refresh until ctx ends.
func (s *Set) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		s.Refresh(ctx)
		select {
		case <-ctx.Done():
			s.Close()
			return nil
		case <-t.C:
		}
	}
}

// Refresh resolves the addresses, dials new endpoints, drops vanished ones
// and updates every endpoint's Info.
func (s *Set) Refresh(ctx context.Context) {
	addrs := s.resolve(ctx)
	s.mu.Lock()
	for addr, e := range s.endpoints {
		if !addrs[addr] {
			e.close()
			delete(s.endpoints, addr)
		}
	}
	for addr := range addrs {
		if _, ok := s.endpoints[addr]; ok {
			continue
		}
		// gRPC's default 4 MiB receive limit would fail a query whose one
		// series (a long raw range, native histograms) or batch of series
		// is larger; as in Thanos, frames are only bounded by the stores.
		opts := append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
			// Series answers are large: fewer, larger socket reads.
			grpc.WithReadBufferSize(ReadBufferSize),
			// gRPC's reconnect backoff grows to 2 minutes, during which
			// every Info fails at once: an endpoint back from an outage
			// would stay unhealthy that long. Retry about as often as
			// the set refreshes.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2,
				MaxDelay: max(s.cfg.Refresh, time.Second)}, MinConnectTimeout: 20 * time.Second})}, s.cfg.DialOptions...)
		conn, err := grpc.NewClient(addr, opts...)
		e := &Endpoint{addr: addr, conn: conn}
		if err != nil {
			e.lastErr = fmt.Errorf("dial: %w", err)
		} else {
			e.store, e.info = storepb.NewStoreClient(conn), infopb.NewInfoClient(conn)
		}
		s.endpoints[addr] = e
	}
	eps := make([]*Endpoint, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		eps = append(eps, e)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, e := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.update(ctx, s.cfg.InfoTimeout, s.cfg.Logger)
		}()
	}
	wg.Wait()
}

// resolve returns the set of addresses the configuration names now. A
// file that cannot be read or a failed lookup keeps what it gave last
// time, and is logged.
func (s *Set) resolve(ctx context.Context) map[string]bool {
	s.resolveMu.Lock()
	defer s.resolveMu.Unlock()
	if s.lastGood == nil {
		s.lastGood = map[string][]string{}
	}
	// remember records a good answer for key, or on err returns the last.
	remember := func(key string, got []string, err error) []string {
		if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
			// The name is gone, not unreachable: so are its endpoints.
			err = nil
		}
		if err != nil {
			return s.lastGood[key]
		}
		s.lastGood[key] = got
		return got
	}
	specs := slices.Clone(s.cfg.Endpoints)
	for _, f := range s.cfg.SDFiles {
		targets, err := readSDFile(f)
		if err != nil {
			s.cfg.Logger.Warn("cannot read endpoint SD file; keeping its last targets", "file", f, "err", err, "kept", len(s.lastGood["file:"+f]))
		}
		specs = append(specs, remember("file:"+f, targets, err)...)
	}
	out := map[string]bool{}
	for _, spec := range specs {
		mode, name, err := parseSpec(spec)
		if err != nil {
			s.cfg.Logger.Warn("ignoring endpoint", "err", err)
			continue
		}
		switch mode {
		case "static":
			out[name] = true
		case "dns":
			host, port, _ := net.SplitHostPort(name)
			ips, err := s.resolver.LookupHost(ctx, host)
			var addrs []string
			for _, ip := range ips {
				addrs = append(addrs, net.JoinHostPort(ip, port))
			}
			if err != nil {
				s.cfg.Logger.Warn("DNS lookup of endpoint failed; keeping its last addresses", "endpoint", spec, "err", err, "kept", len(s.lastGood[spec]))
			}
			for _, a := range remember(spec, addrs, err) {
				out[a] = true
			}
		case "dnssrv":
			_, srvs, err := s.resolver.LookupSRV(ctx, "", "", name)
			var addrs []string
			for _, srv := range srvs {
				addrs = append(addrs, net.JoinHostPort(strings.TrimSuffix(srv.Target, "."), strconv.Itoa(int(srv.Port))))
			}
			if err != nil {
				s.cfg.Logger.Warn("DNS SRV lookup of endpoint failed; keeping its last addresses", "endpoint", spec, "err", err, "kept", len(s.lastGood[spec]))
			}
			for _, a := range remember(spec, addrs, err) {
				out[a] = true
			}
		}
	}
	return out
}

type sdGroup struct {
	Targets []string `yaml:"targets"`
}

func readSDFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var groups []sdGroup
	if err := yaml.Unmarshal(b, &groups); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out []string
	for _, g := range groups {
		out = append(out, g.Targets...)
	}
	return out, nil
}

// Stores returns the endpoints that serve the StoreAPI: the healthy ones
// and those failing since they last answered Info. A failing endpoint stays
// in, with the labels and time range it last advertised, so that a query
// that needs it fails or warns naming it instead of silently answering
// without its data.
func (s *Set) Stores() []query.Store {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []query.Store
	for _, e := range s.endpoints {
		if e.servesStore() {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// MetadataEndpoints returns the endpoints offering the metadata API, as
// Stores does for the StoreAPI.
func (s *Set) MetadataEndpoints() []*Endpoint {
	return s.filter(func(e *Endpoint) bool { return e.hasMetadata })
}

// ExemplarEndpoints returns the endpoints offering the exemplars API.
func (s *Set) ExemplarEndpoints() []*Endpoint {
	return s.filter(func(e *Endpoint) bool { return e.hasExemplars })
}

func (s *Set) filter(keep func(*Endpoint) bool) []*Endpoint {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Endpoint
	for _, e := range s.endpoints {
		e.mu.RLock()
		ok := keep(e)
		e.mu.RUnlock()
		if ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

// Status lists every endpoint, healthy or not.
func (s *Set) Status() []Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Status, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		out = append(out, e.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close closes every connection.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, e := range s.endpoints {
		e.close()
		delete(s.endpoints, addr)
	}
}

// Status is what /api/v1/stores shows of an endpoint.
type Status struct {
	Name          string              `json:"name"`
	ComponentType string              `json:"component_type,omitempty"`
	LabelSets     []map[string]string `json:"label_sets"`
	MinTime       int64               `json:"min_time"`
	MaxTime       int64               `json:"max_time"`
	Healthy       bool                `json:"healthy"`
	LastCheck     time.Time           `json:"last_check"`
	LastError     string              `json:"last_error,omitempty"`
}

// Endpoint is one StoreAPI endpoint.
type Endpoint struct {
	addr  string
	conn  *grpc.ClientConn
	store storepb.StoreClient
	info  infopb.InfoClient

	mu             sync.RWMutex
	labelSets      []labels.Labels
	mint, maxt     int64
	hasStore       bool
	seen           bool // answered Info at least once
	withoutRL      bool
	hasMetadata    bool
	hasExemplars   bool
	exMint, exMaxt int64
	componentType  string
	lastErr        error
	lastCheck      time.Time
}

func (e *Endpoint) update(ctx context.Context, timeout time.Duration, logger *slog.Logger) {
	if e.info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := e.info.Info(ctx, &infopb.InfoRequest{})
	e.mu.Lock()
	defer e.mu.Unlock()
	first := e.lastCheck.IsZero()
	wasHealthy := e.lastErr == nil && !first
	e.lastCheck = time.Now()
	if err != nil {
		e.lastErr = fmt.Errorf("info: %w", err)
		if wasHealthy || first {
			logger.Warn("endpoint unhealthy", "endpoint", e.addr, "err", err)
		}
		return
	}
	if !wasHealthy {
		logger.Info("endpoint healthy", "endpoint", e.addr, "component", resp.ComponentType)
	}
	e.lastErr = nil
	e.seen = true
	e.componentType = resp.ComponentType
	var b labels.ScratchBuilder
	// A new slice: queries in flight may hold the old one.
	e.labelSets = make([]labels.Labels, 0, len(resp.LabelSets))
	for _, ls := range resp.LabelSets {
		e.labelSets = append(e.labelSets, storeapi.LabelsFromProto(&b, ls.Labels))
	}
	e.hasStore = resp.Store != nil
	e.hasMetadata = resp.MetricMetadata != nil
	e.hasExemplars = resp.Exemplars != nil
	if resp.Exemplars != nil {
		e.exMint, e.exMaxt = resp.Exemplars.MinTime, resp.Exemplars.MaxTime
	}
	if resp.Store != nil {
		e.mint, e.maxt, e.withoutRL = resp.Store.MinTime, resp.Store.MaxTime, resp.Store.SupportsWithoutReplicaLabels
	}
}

// servesStore tells whether the endpoint's last successful Info
// advertised the StoreAPI, whether or not it fails now. An endpoint that
// never answered may serve it: queries name it (Unavailable) rather than
// silently answer without it.
func (e *Endpoint) servesStore() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.hasStore || !e.seen
}

func (e *Endpoint) status() Status {
	e.mu.RLock()
	defer e.mu.RUnlock()
	st := Status{Name: e.addr, ComponentType: e.componentType, MinTime: e.mint, MaxTime: e.maxt,
		Healthy: e.lastErr == nil && !e.lastCheck.IsZero(), LastCheck: e.lastCheck, LabelSets: []map[string]string{}}
	if e.lastErr != nil {
		st.LastError = e.lastErr.Error()
	}
	for _, ls := range e.labelSets {
		st.LabelSets = append(st.LabelSets, ls.Map())
	}
	return st
}

func (e *Endpoint) close() {
	if e.conn != nil {
		_ = e.conn.Close()
	}
}

// Name is the endpoint's address.
func (e *Endpoint) Name() string { return e.addr }

// Client is the endpoint's StoreAPI client.
func (e *Endpoint) Client() storepb.StoreClient { return e.store }

// Conn is the endpoint's connection.
func (e *Endpoint) Conn() grpc.ClientConnInterface { return e.conn }

// LabelSets are the endpoint's external label sets (none known for one
// that never answered: it may match any).
func (e *Endpoint) LabelSets() []labels.Labels {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.labelSets
}

// TimeRange is the range of data the endpoint holds; all time for one
// that never answered.
func (e *Endpoint) TimeRange() (int64, int64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if !e.seen {
		return math.MinInt64, math.MaxInt64
	}
	return e.mint, e.maxt
}

// ExemplarsTimeRange is the range of exemplars the endpoint holds.
func (e *Endpoint) ExemplarsTimeRange() (int64, int64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.exMint, e.exMaxt
}

// Unavailable is the error of the endpoint's last Info, or nil after a
// successful one.
func (e *Endpoint) Unavailable() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.lastErr != nil {
		if !e.seen {
			return fmt.Errorf("never answered its health check (last at %s): %w", e.lastCheck.UTC().Format(time.RFC3339), e.lastErr)
		}
		return fmt.Errorf("failed its health check at %s: %w", e.lastCheck.UTC().Format(time.RFC3339), e.lastErr)
	}
	if !e.seen {
		return errors.New("not checked yet")
	}
	return nil
}

// SupportsWithoutReplicaLabels tells whether the endpoint drops replica
// labels itself.
func (e *Endpoint) SupportsWithoutReplicaLabels() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.withoutRL
}
