package compat

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/protobuf/proto"

	theirinfo "github.com/thanos-io/thanos/pkg/info/infopb"
	theirlabels "github.com/thanos-io/thanos/pkg/store/labelpb"
	theirstore "github.com/thanos-io/thanos/pkg/store/storepb"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

// gogoCodec marshals Thanos' gogo messages with their own methods, as Thanos'
// binaries do, and ours with google.golang.org/protobuf.
type gogoCodec struct{}

func (gogoCodec) Name() string { return "proto" }
func (gogoCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(gogoMessage); ok {
		return m.Marshal()
	}
	return gproto.Marshal(v.(gproto.Message))
}
func (gogoCodec) Unmarshal(b []byte, v any) error {
	if m, ok := v.(gogoMessage); ok {
		return m.Unmarshal(b)
	}
	return gproto.Unmarshal(b, v.(gproto.Message))
}

var _ encoding.Codec = gogoCodec{}

// ourStore is a minimal Store and Info server built on our generated code.
type ourStore struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer
}

func (ourStore) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: &storepb.Series{
		Labels: []*labelpb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: req.Matchers[0].Value}},
		Chunks: []*storepb.AggrChunk{{MinTime: req.MinTime, MaxTime: req.MaxTime, Raw: &storepb.Chunk{Type: storepb.Chunk_XOR, Data: []byte{1, 2, 3}}}},
	}}}); err != nil {
		return err
	}
	return srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: "partial"}})
}

func (ourStore) LabelNames(_ context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	return &storepb.LabelNamesResponse{Names: []string{"__name__", "job"}, Warnings: []string{"w"}}, nil
}

func (ourStore) LabelValues(_ context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	return &storepb.LabelValuesResponse{Values: []string{req.Label + "-a"}}, nil
}

func (ourStore) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return &infopb.InfoResponse{
		LabelSets:     []*labelpb.ZLabelSet{{Labels: []*labelpb.Label{{Name: "cluster", Value: "eu"}}}},
		ComponentType: "store",
		Store:         &infopb.StoreInfo{MinTime: 10, MaxTime: 20, SupportsWithoutReplicaLabels: true},
	}, nil
}

// TestThanosClientCallsOurServer proves the gRPC method names and messages
// match: Thanos' generated clients talk to our generated servers.
func TestThanosClientCallsOurServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	storepb.RegisterStoreServer(srv, ourStore{})
	infopb.RegisterInfoServer(srv, ourStore{})
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(l.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(gogoCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	info, err := theirinfo.NewInfoClient(conn).Info(ctx, &theirinfo.InfoRequest{})
	if err != nil {
		t.Fatalf("Thanos Info client: %v", err)
	}
	if info.ComponentType != "store" || info.Store == nil || info.Store.MinTime != 10 || !info.Store.SupportsWithoutReplicaLabels ||
		len(info.LabelSets) != 1 || info.LabelSets[0].Labels[0].Name != "cluster" {
		t.Fatalf("unexpected Info: %+v", info)
	}

	store := theirstore.NewStoreClient(conn)
	stream, err := store.Series(ctx, &theirstore.SeriesRequest{MinTime: 1, MaxTime: 2,
		Matchers: []theirstore.LabelMatcher{{Type: theirstore.LabelMatcher_EQ, Name: "job", Value: "api"}}})
	if err != nil {
		t.Fatal(err)
	}
	var series []*theirstore.Series
	var warnings []string
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Thanos Series client: %v", err)
		}
		if s := r.GetSeries(); s != nil {
			series = append(series, s)
		}
		if w := r.GetWarning(); w != "" {
			warnings = append(warnings, w)
		}
	}
	if len(series) != 1 || len(warnings) != 1 {
		t.Fatalf("got %d series and %d warnings, want 1 and 1", len(series), len(warnings))
	}
	lbls := theirlabels.ZLabelsToPromLabels(series[0].Labels)
	if lbls.Get("job") != "api" || series[0].Chunks[0].Raw == nil || series[0].Chunks[0].MaxTime != 2 {
		t.Fatalf("unexpected series: %v %+v", lbls, series[0].Chunks)
	}

	names, err := store.LabelNames(ctx, &theirstore.LabelNamesRequest{})
	if err != nil || len(names.Names) != 2 || len(names.Warnings) != 1 {
		t.Fatalf("LabelNames: %v %v", names, err)
	}
	vals, err := store.LabelValues(ctx, &theirstore.LabelValuesRequest{Label: "job"})
	if err != nil || len(vals.Values) != 1 || vals.Values[0] != "job-a" {
		t.Fatalf("LabelValues: %v %v", vals, err)
	}
}
