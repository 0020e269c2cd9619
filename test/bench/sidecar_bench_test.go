package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/blockgen"
	"github.com/strata-metrics/strata/pkg/endpoint"
	"github.com/strata-metrics/strata/pkg/promclient"
	"github.com/strata-metrics/strata/pkg/query"
	"github.com/strata-metrics/strata/test/e2e"
)

// BenchmarkSidecarSeries compares the sidecar's Series stream with reading
// the same data straight from Prometheus' remote read endpoint (streamed
// XOR chunks), for two selections 10x apart, and reports the sidecar's
// peak RSS after each: it must not grow with the size of the result.
// STRATA_BENCH_TARGETS sets the number of blockgen targets (default 200,
// about 9k series over 6h).
func BenchmarkSidecarSeries(b *testing.B) {
	targets := 200
	if s := os.Getenv("STRATA_BENCH_TARGETS"); s != "" {
		fmt.Sscan(s, &targets)
	}
	ctx := context.Background()
	end := time.Now().Add(-24 * time.Hour).Truncate(2 * time.Hour)
	mint, maxt := end.Add(-6*time.Hour).UnixMilli(), end.UnixMilli()
	data := b.TempDir()
	if _, err := blockgen.WriteDir(ctx, blockgen.Config{Seed: 5, Targets: targets, MinTime: mint, MaxTime: maxt}, data); err != nil {
		b.Fatal(err)
	}
	prom := e2e.StartPrometheus(b, e2e.PrometheusOptions{DataDir: data, BlockDuration: 2 * time.Hour,
		ExternalLabels: map[string]string{"cluster": "bench", "replica": "a"}})
	sc := e2e.StartStrata(b, "sidecar", true, "", "--prometheus.url="+prom.URL, "--tsdb.path="+data)
	// The direct reader is a plain HTTP client (kept-alive connections),
	// as Prometheus' own remote read client and Thanos' sidecar read.
	// STRATA_BENCH_DIRECT=strata reads with the sidecar's own client
	// instead (see promclient/readconn_linux.go).
	plain := http.DefaultTransport.(*http.Transport).Clone()
	plain.ReadBufferSize = 256 << 10
	hc := &http.Client{Transport: plain}
	if os.Getenv("STRATA_BENCH_DIRECT") == "strata" {
		hc = nil
	}
	client, err := promclient.New(prom.URL, hc)
	if err != nil {
		b.Fatal(err)
	}
	// Dialled as the querier dials its endpoints.
	conn, err := grpc.NewClient(sc.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)), grpc.WithReadBufferSize(endpoint.ReadBufferSize))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	// A tenth of the targets, then all of them (blockgen targets are
	// host-00000 ... host-NNNNN). The small read takes some 20 ms, where
	// the machine's noise (the other process' GC, the scheduler) is a good
	// part of one reading: the ratio of one pair of reads ranges from 0.75
	// to 1.15. The median of 161 pairs is stable to a few hundredths from
	// run to run, the best times of each far less (an extreme value).
	selections := []struct {
		name  string
		regex string
		reps  int
	}{
		{"10% of targets", fmt.Sprintf("host-(%s):.*", targetAlternation(targets/10)), 161},
		{"all targets", "host-.*", 15},
	}
	fmt.Printf("\nsidecar Series vs Prometheus remote read: %d targets x 6h, %s\n", targets, "alternating, samples decoded by the client")
	fmt.Printf("%-16s %10s %12s %12s %12s %12s %7s %7s %14s\n", "selection", "series", "samples", "remote read", "sidecar", "sidecar/s", "ratio", "median", "sidecar RSS")
	for _, sel := range selections {
		// Alternate the two readers so that both see the same state of
		// Prometheus (its GC, page cache). The times are the best of each;
		// the median is that of the pairs' ratios (direct / sidecar).
		var (
			direct, viaSidecar counts
			directT, sidecarT  time.Duration
			ratios             []float64
		)
		for i := 0; i < sel.reps; i++ {
			t0 := time.Now()
			c, err := readRemote(ctx, client, sel.regex, mint, maxt)
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			if i == 0 || d < directT {
				directT = d
			}
			direct = c
			t0 = time.Now()
			if c, err = readSidecar(ctx, conn, sel.regex, mint, maxt); err != nil {
				b.Fatal(err)
			}
			sd := time.Since(t0)
			if i == 0 || sd < sidecarT {
				sidecarT = sd
			}
			viaSidecar = c
			ratios = append(ratios, d.Seconds()/sd.Seconds())
		}
		if direct != viaSidecar || direct.samples == 0 {
			b.Fatalf("%s: remote read returned %+v, the sidecar %+v", sel.name, direct, viaSidecar)
		}
		slices.Sort(ratios)
		rate := float64(viaSidecar.samples) / sidecarT.Seconds()
		fmt.Printf("%-16s %10d %12d %12s %12s %11.1fM %6.2fx %6.2fx %10d MiB\n", sel.name, viaSidecar.series, viaSidecar.samples,
			directT.Round(time.Millisecond), sidecarT.Round(time.Millisecond), rate/1e6,
			directT.Seconds()/sidecarT.Seconds(), ratios[len(ratios)/2], sc.PeakRSS()>>20)
		b.ReportMetric(rate, "samples/s-"+map[bool]string{true: "all", false: "tenth"}[sel.regex == "host-.*"])
	}
	fmt.Println("ratio: best remote read time / best sidecar time (1.00x = as fast as Prometheus' own endpoint); median: of the pairs' ratios; RSS is the sidecar's peak so far")
}

// targetAlternation is a regex alternation of the first n blockgen hosts.
func targetAlternation(n int) string {
	s := ""
	for i := 0; i < max(n, 1); i++ {
		if i > 0 {
			s += "|"
		}
		s += fmt.Sprintf("%05d", i)
	}
	return s
}

type counts struct{ series, samples int }

func readRemote(ctx context.Context, c *promclient.Client, regex string, mint, maxt int64) (counts, error) {
	stream, err := c.RemoteRead(ctx, &prompb.Query{StartTimestampMs: mint, EndTimestampMs: maxt,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "instance", Value: regex}}})
	if err != nil {
		return counts{}, err
	}
	defer stream.Close()
	var out counts
	for {
		frame, err := stream.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, s := range frame.ChunkedSeries {
			out.series++
			for _, ch := range s.Chunks {
				chk, err := chunkenc.FromData(chunkenc.Encoding(ch.Type), ch.Data)
				if err != nil {
					return out, err
				}
				out.samples += chk.NumSamples()
			}
		}
	}
}

// readSidecar reads through the querier's own decoder, batched as the
// querier asks.
func readSidecar(ctx context.Context, conn grpc.ClientConnInterface, regex string, mint, maxt int64) (counts, error) {
	var out counts
	err := query.ReadSeries(ctx, conn, &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, ResponseBatchSize: 64,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "instance", Value: regex}}},
		func(_ labels.Labels, chunks []chunkenc.Chunk) error {
			out.series++
			for _, chk := range chunks {
				out.samples += chk.NumSamples()
			}
			return nil
		})
	return out, err
}
