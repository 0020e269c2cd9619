package query

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// peer is an in-process endpoint serving fixed metadata and exemplars, or
// failing.
type peer struct {
	metadatapb.UnimplementedMetadataServer
	exemplarspb.UnimplementedExemplarsServer
	name   string
	conn   *grpc.ClientConn
	ext    labels.Labels
	md     map[string][]MetricMeta
	series []*exemplarspb.ExemplarData
	fail   bool
	asked  int
}

func (p *peer) Name() string                       { return p.name }
func (p *peer) Conn() grpc.ClientConnInterface     { return p.conn }
func (p *peer) LabelSets() []labels.Labels         { return []labels.Labels{p.ext} }
func (p *peer) ExemplarsTimeRange() (int64, int64) { return 0, 1000 }

func (p *peer) MetricMetadata(_ *metadatapb.MetricMetadataRequest, srv grpc.ServerStreamingServer[metadatapb.MetricMetadataResponse]) error {
	if p.fail {
		return errors.New("boom")
	}
	out := &metadatapb.MetricMetadata{Metadata: map[string]*metadatapb.MetricMetadataEntry{}}
	for n, ms := range p.md {
		e := &metadatapb.MetricMetadataEntry{}
		for _, m := range ms {
			e.Metas = append(e.Metas, &metadatapb.Meta{Type: m.Type, Help: m.Help, Unit: m.Unit})
		}
		out.Metadata[n] = e
	}
	return srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Metadata{Metadata: out}})
}

func (p *peer) Exemplars(_ *exemplarspb.ExemplarsRequest, srv grpc.ServerStreamingServer[exemplarspb.ExemplarsResponse]) error {
	p.asked++
	for _, d := range p.series {
		if err := srv.Send(&exemplarspb.ExemplarsResponse{Result: &exemplarspb.ExemplarsResponse_Data{Data: d}}); err != nil {
			return err
		}
	}
	return nil
}

func startPeer(t *testing.T, p *peer) *peer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	metadatapb.RegisterMetadataServer(srv, p)
	exemplarspb.RegisterExemplarsServer(srv, p)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	p.conn, err = grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	p.name = l.Addr().String()
	return p
}

// TestMetadataMerge: entries known to several endpoints show once, limits
// cut as Prometheus', a failing endpoint is an error or a warning naming it.
func TestMetadataMerge(t *testing.T) {
	counter := MetricMeta{Type: "counter", Help: "Requests."}
	a := startPeer(t, &peer{md: map[string][]MetricMeta{"req": {counter}, "up": {{Type: "gauge"}}}})
	b := startPeer(t, &peer{md: map[string][]MetricMeta{"req": {counter, {Type: "counter", Help: "Older help."}}, "zz": {{Type: "gauge"}}}})
	bad := startPeer(t, &peer{fail: true})
	ctx := context.Background()

	md, warns, err := Metadata(ctx, []*peer{a, b}, "", 0, 0, false)
	if err != nil || len(warns) != 0 || len(md) != 3 || len(md["req"]) != 2 || md["req"][1] != counter {
		t.Fatalf("merged metadata %v %v %v", md, warns, err)
	}
	if md, _, _ := Metadata(ctx, []*peer{a, b}, "", 2, 1, false); len(md) != 2 || len(md["req"]) != 1 || md["zz"] != nil {
		t.Fatalf("limit 2, limit_per_metric 1: %v", md)
	}
	if _, _, err := Metadata(ctx, []*peer{a, bad}, "", 0, 0, false); err == nil || !strings.Contains(err.Error(), bad.name) {
		t.Fatalf("strict: want an error naming %s, got %v", bad.name, err)
	}
	md, warns, err = Metadata(ctx, []*peer{a, bad}, "", 0, 0, true)
	if err != nil || len(md) != 2 || len(warns) != 1 || !strings.Contains(warns[0], bad.name) {
		t.Fatalf("partial: %v %v %v", md, warns, err)
	}
}

// TestExemplarsDedup: an HA pair's identical exemplars show once under the
// series without the replica label; endpoints whose external labels cannot
// match are not asked.
func TestExemplarsDedup(t *testing.T) {
	series := func(replica string, ts ...int64) *exemplarspb.ExemplarData {
		d := &exemplarspb.ExemplarData{SeriesLabels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(
			labels.FromStrings("__name__", "req_total", "cluster", "c1", "replica", replica))}}
		for _, t := range ts {
			d.Exemplars = append(d.Exemplars, &exemplarspb.Exemplar{Labels: &labelpb.LabelSet{Labels: storeapi.LabelsToProto(labels.FromStrings("trace_id", "x"))}, Value: 1, Ts: t})
		}
		return d
	}
	a := startPeer(t, &peer{ext: labels.FromStrings("cluster", "c1", "replica", "a"), series: []*exemplarspb.ExemplarData{series("a", 20, 10)}})
	b := startPeer(t, &peer{ext: labels.FromStrings("cluster", "c1", "replica", "b"), series: []*exemplarspb.ExemplarData{series("b", 10, 30)}})
	other := startPeer(t, &peer{ext: labels.FromStrings("cluster", "c2")})
	sel := [][]*labels.Matcher{{labels.MustNewMatcher(labels.MatchEqual, "__name__", "req_total"), labels.MustNewMatcher(labels.MatchEqual, "cluster", "c1")}}
	opts := Options{Dedup: true, ReplicaLabels: []string{"replica"}}

	res, _, err := Exemplars(context.Background(), []*peer{a, b, other}, sel, 0, 100, opts)
	if err != nil || len(res) != 1 {
		t.Fatalf("deduplicated: %v %v", res, err)
	}
	var ts []int64
	for _, e := range res[0].Exemplars {
		ts = append(ts, e.Ts)
	}
	if res[0].SeriesLabels.Has("replica") || len(ts) != 3 || ts[0] != 10 || ts[1] != 20 || ts[2] != 30 {
		t.Fatalf("deduplicated series %s with exemplars at %v, want 10 20 30 without replica", res[0].SeriesLabels, ts)
	}
	if other.asked != 0 {
		t.Fatal("an endpoint of cluster c2 was asked for cluster c1's exemplars")
	}
	opts.Dedup = false
	if res, _, _ := Exemplars(context.Background(), []*peer{a, b}, sel, 0, 100, opts); len(res) != 2 {
		t.Fatalf("dedup off: %d series, want both replicas'", len(res))
	}
	if res, _, _ := Exemplars(context.Background(), []*peer{a, b}, sel, 2000, 3000, opts); len(res) != 0 {
		t.Fatalf("outside the endpoints' exemplar range: %v", res)
	}
}
