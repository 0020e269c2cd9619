package endpoint

import (
	"context"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/query"
)

// infoServer answers Info as a store with one label set.
type infoServer struct {
	infopb.UnimplementedInfoServer
	mint, maxt int64
}

func (s infoServer) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return &infopb.InfoResponse{
		ComponentType: "sidecar",
		LabelSets:     []*labelpb.ZLabelSet{{Labels: []*labelpb.Label{{Name: "replica", Value: "b"}}}},
		Store:         &infopb.StoreInfo{MinTime: s.mint, MaxTime: s.maxt},
	}, nil
}

// serveInfo serves srv on a free 127.0.0.1 port and returns its address and
// a function that stops it.
func serveInfo(t *testing.T, srv infopb.InfoServer) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	infopb.RegisterInfoServer(g, srv)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return l.Addr().String(), g.Stop
}

// TestFailingStoreStaysQueryable: a store that answered Info and then
// fails is still handed to queries, with its last labels and time range,
// so that they fail or warn naming it rather than silently miss its data.
// So is an endpoint that never answered, covering all time.
func TestFailingStoreStaysQueryable(t *testing.T) {
	addr, stop := serveInfo(t, infoServer{mint: 1000, maxt: 2000})
	never := "127.0.0.1:1" // nothing listens on port 1
	s, err := NewSet(Config{
		Endpoints:   []string{addr, never},
		InfoTimeout: time.Second,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	s.Refresh(ctx)
	// The endpoint that never answered is there too, unavailable, so
	// that queries name it.
	byName := func() map[string]query.Store {
		out := map[string]query.Store{}
		for _, st := range s.Stores() {
			out[st.Name()] = st
		}
		return out
	}
	st := byName()
	if len(st) != 2 || st[addr] == nil || st[addr].Unavailable() != nil || st[never] == nil || st[never].Unavailable() == nil {
		t.Fatalf("stores after the first refresh: %v, want %s and %s, unavailable", st, addr, never)
	}
	if mint, maxt := st[never].TimeRange(); mint != math.MinInt64 || maxt != math.MaxInt64 {
		t.Fatalf("an endpoint never seen covers %d..%d, want all time", mint, maxt)
	}

	stop()
	s.Refresh(ctx)
	st = byName()
	if len(st) != 2 || st[addr] == nil || st[addr].Unavailable() == nil {
		t.Fatalf("stores once %s fails: %v, want it still there, unavailable", addr, st)
	}
	if mint, maxt := st[addr].TimeRange(); mint != 1000 || maxt != 2000 {
		t.Fatalf("failing store's time range %d..%d, want its last known 1000..2000", mint, maxt)
	}
	if ls := st[addr].LabelSets(); len(ls) != 1 || ls[0].Get("replica") != "b" {
		t.Fatalf("failing store's label sets %v, want its last known ones", ls)
	}
	for _, status := range s.Status() {
		if status.Healthy || status.LastError == "" {
			t.Fatalf("status of %s: healthy=%v last error %q, want unhealthy with the error", status.Name, status.Healthy, status.LastError)
		}
	}
}

func names[T interface{ Name() string }](st []T) []string {
	out := make([]string, 0, len(st))
	for _, s := range st {
		out = append(out, s.Name())
	}
	return out
}

// TestSDFileGlitchKeepsEndpoints: an SD file caught half written keeps the
// endpoints it named; a file that names none drops them.
func TestSDFileGlitchKeepsEndpoints(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "sd.yml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("- targets: ['127.0.0.1:1', '127.0.0.1:2']\n")
	s, err := NewSet(Config{
		SDFiles:     []string{file},
		InfoTimeout: 100 * time.Millisecond,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	count := func() int {
		t.Helper()
		s.Refresh(ctx)
		return len(s.Status())
	}
	if n := count(); n != 2 {
		t.Fatalf("%d endpoints from the file, want 2", n)
	}
	write("- targets: ['127.0.0.1:1'") // half written
	if n := count(); n != 2 {
		t.Fatalf("a half-written SD file left %d endpoints, want the last 2", n)
	}
	write("[]\n")
	if n := count(); n != 0 {
		t.Fatalf("an SD file naming no endpoints left %d", n)
	}
}

// hangingStore answers Info until hang is set, then neither Info nor
// Series: a wedged store, or a half-open connection to a dead node.
type hangingStore struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer
	hang atomic.Bool
}

func (h *hangingStore) Info(ctx context.Context, r *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	if h.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return infoServer{mint: math.MinInt64, maxt: math.MaxInt64}.Info(ctx, r)
}

func (h *hangingStore) Series(_ *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	<-srv.Context().Done()
	return srv.Context().Err()
}

// TestFailingStoreFailsFast: a store whose last Info failed is not waited
// on: a query warns (partial response) or fails naming it at once, instead
// of hanging until its timeout.
func TestFailingStoreFailsFast(t *testing.T) {
	hs := &hangingStore{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	infopb.RegisterInfoServer(g, hs)
	storepb.RegisterStoreServer(g, hs)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	s, err := NewSet(Config{
		Endpoints:   []string{l.Addr().String()},
		InfoTimeout: 200 * time.Millisecond,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.Refresh(context.Background())
	hs.hang.Store(true)
	s.Refresh(context.Background())

	q := &query.Queryable{Stores: s.Stores, Logger: slog.New(slog.DiscardHandler)}
	for _, partial := range []bool{true, false} {
		// The deadline only bounds a broken test; a store waited on
		// would show as a deadline error instead of its health error.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ctx = query.WithOptions(ctx, query.Options{PartialResponse: partial})
		qr, err := q.Querier(math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		set := qr.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
		for set.Next() {
		}
		got := set.Err()
		if partial {
			if got != nil || len(set.Warnings()) != 1 {
				t.Fatalf("partial response: err %v, warnings %v; want one warning", got, set.Warnings())
			}
			for _, w := range set.Warnings() {
				got = w
			}
		}
		if got == nil || !strings.Contains(got.Error(), "failed its health check") || !strings.Contains(got.Error(), l.Addr().String()) {
			t.Fatalf("partial=%v: want the store's health error naming it, got %v", partial, got)
		}
		qr.Close()
		cancel()
	}
}
