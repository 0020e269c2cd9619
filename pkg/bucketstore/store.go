package bucketstore

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/storepb"
	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/downsample"
	"github.com/strata-metrics/strata/pkg/storeapi"
)

// Config of the store gateway.
type Config struct {
	// DataDir keeps the index headers of the blocks, so restarts are fast.
	DataDir string
	// MinTime and MaxTime (ms) restrict the blocks served (time sharding).
	MinTime, MaxTime int64
	// Relabel selects blocks by their external labels (label sharding).
	Relabel                  []*relabel.Config
	IgnoreDeletionMarksDelay time.Duration
	ConsistencyDelay         time.Duration
	IndexCacheBytes          int64
	ChunkCacheBytes          int64
	SyncConcurrency          int
	LimitSeries              int64
	LimitSamples             int64
	MaxConcurrency           int
}

// Store serves the bucket's blocks over the StoreAPI.
type Store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	cfg    Config
	bkt    objstore.InstrumentedBucketReader
	logger *slog.Logger
	lister *block.Lister
	pages  *pageCache
	chunks *pageCache
	gate   chan struct{}
	ctx    context.Context

	mu     sync.RWMutex
	blocks map[ulid.ULID]*bucketBlock

	blocksLoaded                   prometheus.Gauge
	syncs, syncFailures, badBlocks prometheus.Counter
	syncDuration                   prometheus.Histogram
	seriesServed, samplesServed    prometheus.Histogram
}

// New returns a store gateway over bkt; call Sync (or Run) to load blocks.
func New(ctx context.Context, cfg Config, bkt objstore.InstrumentedBucketReader, logger *slog.Logger, reg prometheus.Registerer) *Store {
	if cfg.SyncConcurrency < 1 {
		cfg.SyncConcurrency = 20
	}
	if cfg.MaxConcurrency < 1 {
		cfg.MaxConcurrency = 20
	}
	if cfg.MaxTime == 0 {
		cfg.MaxTime = math.MaxInt64
	}
	if cfg.MinTime == 0 {
		cfg.MinTime = math.MinInt64
	}
	f := promauto.With(reg)
	return &Store{
		cfg: cfg, bkt: bkt, logger: logger, ctx: ctx,
		lister:        newLister(bkt, cfg),
		pages:         newPageCache("index", max(cfg.IndexCacheBytes, pageSize), reg),
		chunks:        newPageCache("chunks", max(cfg.ChunkCacheBytes, pageSize), reg),
		gate:          make(chan struct{}, cfg.MaxConcurrency),
		blocks:        map[ulid.ULID]*bucketBlock{},
		blocksLoaded:  f.NewGauge(prometheus.GaugeOpts{Name: "strata_store_blocks_loaded", Help: "Blocks served."}),
		syncs:         f.NewCounter(prometheus.CounterOpts{Name: "strata_store_syncs_total", Help: "Bucket syncs."}),
		syncFailures:  f.NewCounter(prometheus.CounterOpts{Name: "strata_store_sync_failures_total", Help: "Bucket syncs that failed."}),
		badBlocks:     f.NewCounter(prometheus.CounterOpts{Name: "strata_store_bad_blocks_total", Help: "Blocks skipped as corrupt or unreadable, per sync."}),
		syncDuration:  f.NewHistogram(prometheus.HistogramOpts{Name: "strata_store_sync_duration_seconds", Help: "Duration of bucket syncs.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}),
		seriesServed:  f.NewHistogram(prometheus.HistogramOpts{Name: "strata_store_series_per_request", Help: "Series sent per Series request.", Buckets: prometheus.ExponentialBuckets(1, 10, 7)}),
		samplesServed: f.NewHistogram(prometheus.HistogramOpts{Name: "strata_store_chunks_per_request", Help: "Chunks sent per Series request.", Buckets: prometheus.ExponentialBuckets(1, 10, 8)}),
	}
}

// newLister keeps metas in --data-dir when there is one, so a restart does
// not GET every meta.json again.
func newLister(bkt objstore.InstrumentedBucketReader, cfg Config) *block.Lister {
	l := block.NewLister(bkt, cfg.SyncConcurrency)
	if cfg.DataDir != "" {
		l.WithMetaCache(filepath.Join(cfg.DataDir, "meta-cache"))
	}
	return l
}

// Register registers the Store and Info services.
func (s *Store) Register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
}

// Sync lists the bucket and updates the served blocks: complete blocks in
// the time range that the relabel config keeps, not marked for deletion for
// longer than the delay. Corrupt and unreadable blocks are logged, counted
// and skipped.
func (s *Store) Sync(ctx context.Context) error {
	start := time.Now()
	s.syncs.Inc()
	defer func() { s.syncDuration.Observe(time.Since(start).Seconds()) }()
	l, err := s.lister.List(ctx)
	if err != nil {
		s.syncFailures.Inc()
		return err
	}
	for id, err := range l.Corrupt {
		s.badBlocks.Inc()
		s.logger.Warn("skipping corrupt block", "block", id, "err", err)
	}
	for id, err := range l.Failed {
		s.badBlocks.Inc()
		s.logger.Warn("skipping block that could not be read", "block", id, "err", err)
	}
	keep := map[ulid.ULID]*block.Meta{}
	for id, m := range l.Metas {
		if mark := l.DeletionMarks[id]; mark != nil && time.Since(time.Unix(mark.DeletionTime, 0)) > s.cfg.IgnoreDeletionMarksDelay {
			continue
		}
		if m.MaxTime <= s.cfg.MinTime || m.MinTime > s.cfg.MaxTime {
			continue
		}
		if s.cfg.ConsistencyDelay > 0 && time.Since(ulid.Time(id.Time())) < s.cfg.ConsistencyDelay {
			continue
		}
		if len(s.cfg.Relabel) > 0 {
			if !relabel.ProcessBuilder(labels.NewBuilder(m.LabelSet()), s.cfg.Relabel...) {
				continue
			}
		}
		keep[id] = m
	}
	s.mu.Lock()
	for id := range s.blocks {
		if keep[id] == nil {
			delete(s.blocks, id)
			if s.cfg.DataDir != "" {
				_ = os.Remove(headerPath(s.cfg.DataDir, id.String()))
			}
		}
	}
	for id, m := range keep {
		if s.blocks[id] == nil {
			s.blocks[id] = newBucketBlock(s.ctx, m, s.bkt, s.pages, s.chunks, s.cfg.DataDir)
		}
	}
	s.blocksLoaded.Set(float64(len(s.blocks)))
	s.mu.Unlock()
	return nil
}

// Run syncs every interval until ctx ends.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("bucket sync failed; serving the blocks of the last sync", "err", err)
		}
	}
}

func (s *Store) snapshot() []*bucketBlock {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*bucketBlock, 0, len(s.blocks))
	for _, b := range s.blocks {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.MinTime < out[j].meta.MinTime })
	return out
}

// Info advertises the label sets and time range of the served blocks.
func (s *Store) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	resp := &infopb.InfoResponse{ComponentType: "store"}
	mint, maxt := int64(math.MaxInt64), int64(math.MinInt64)
	seen := map[uint64]bool{}
	for _, b := range s.snapshot() {
		mint, maxt = min(mint, b.meta.MinTime), max(maxt, b.meta.MaxTime-1)
		if h := b.ext.Hash(); !seen[h] {
			seen[h] = true
			resp.LabelSets = append(resp.LabelSets, &labelpb.ZLabelSet{Labels: storeapi.LabelsToProto(b.ext)})
		}
	}
	if mint > maxt {
		mint, maxt = 0, 0
	}
	resp.Store = &infopb.StoreInfo{MinTime: mint, MaxTime: maxt, SupportsWithoutReplicaLabels: true}
	return resp, nil
}

// ixReader adds what tsdb.PostingsForMatchers needs to Prometheus' index reader.
type ixReader struct{ *index.Reader }

func (ixReader) SortedPostings(p index.Postings) index.Postings { return p }

// matched is a series found in a block, not yet sent.
type matched struct {
	lset  labels.Labels
	block *bucketBlock
	chks  []chunks.Meta
}

// selectBlock resolves the matchers on one block's postings.
func (s *Store) selectBlock(ctx context.Context, b *bucketBlock, ms []*labels.Matcher, mint, maxt int64, strip []string, skipChunks bool, out []matched) ([]matched, error) {
	series, ok := storeapi.SplitExternalMatchers(ms, b.ext)
	if !ok {
		return out, nil
	}
	ir, err := b.index()
	if err != nil {
		return out, err
	}
	if len(series) == 0 {
		series = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".*")}
	}
	p, err := tsdb.PostingsForMatchers(ctx, ixReader{ir}, series...)
	if err != nil {
		return out, b.indexErr(fmt.Errorf("postings: %w", err))
	}
	var (
		sb   labels.ScratchBuilder
		lb   labels.Builder
		chks []chunks.Meta
	)
	for p.Next() {
		if err := ir.Series(p.At(), &sb, &chks); err != nil {
			return out, b.indexErr(fmt.Errorf("series: %w", err))
		}
		var keep []chunks.Meta
		for _, c := range chks {
			if c.MaxTime >= mint && c.MinTime <= maxt {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 {
			continue
		}
		lset := storeapi.AttachExternalLabels(&lb, sb.Labels(), b.ext)
		lset = storeapi.WithoutLabels(&lb, lset, strip)
		if skipChunks {
			keep = nil
		}
		out = append(out, matched{lset: lset, block: b, chks: keep})
	}
	if err := p.Err(); err != nil {
		return out, b.indexErr(err)
	}
	return out, nil
}

// Series streams the matching series of all blocks, sorted by labels, one
// series with the chunks of all its blocks.
func (s *Store) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ctx := srv.Context()
	select {
	case s.gate <- struct{}{}:
		defer func() { <-s.gate }()
	case <-ctx.Done():
		return ctx.Err()
	}
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var all []matched
	var strip []string
	for _, b := range blocksFor(s.snapshot(), req.MinTime, req.MaxTime, req.MaxResolutionWindow) {
		strip = strip[:0]
		for _, l := range req.WithoutReplicaLabels {
			if b.ext.Has(l) {
				strip = append(strip, l)
			}
		}
		all, err = s.selectBlock(ctx, b, ms, req.MinTime, req.MaxTime, strip, req.SkipChunks, all)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if s.cfg.LimitSeries > 0 && int64(len(all)) > s.cfg.LimitSeries {
			return status.Errorf(codes.ResourceExhausted, "the request selects more than %d series (--store.limits.request-series); narrow the selector or the time range", s.cfg.LimitSeries)
		}
	}
	if s.cfg.LimitSamples > 0 {
		var nchk int64
		for _, m := range all {
			nchk += int64(len(m.chks))
		}
		// A chunk holds at most 120 samples: the estimate Thanos uses too.
		if nchk*120 > s.cfg.LimitSamples {
			return status.Errorf(codes.ResourceExhausted, "the request would read up to %d samples, more than %d (--store.limits.request-samples); narrow the selector or the time range", nchk*120, s.cfg.LimitSamples)
		}
	}
	// Sorted by labels; series of one stream (same external labels) from
	// several blocks are sent as one; replicas whose labels became equal
	// without their replica labels stay separate, next to each other, in
	// the order of their external labels, for the querier to deduplicate.
	sort.SliceStable(all, func(i, j int) bool {
		if c := labels.Compare(all[i].lset, all[j].lset); c != 0 {
			return c < 0
		}
		if c := labels.Compare(all[i].block.ext, all[j].block.ext); c != 0 {
			return c < 0
		}
		return all[i].block.meta.MinTime < all[j].block.meta.MinTime
	})

	var sent, chunksSent int64
	sender := storeapi.NewSeriesSender(srv, req.ResponseBatchSize)
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && labels.Equal(all[i].lset, all[j].lset) && labels.Equal(all[i].block.ext, all[j].block.ext) {
			j++
		}
		if req.Limit > 0 && sent >= req.Limit {
			break
		}
		out := &storepb.Series{Labels: storeapi.LabelsToProto(all[i].lset)}
		for _, m := range all[i:j] {
			for _, c := range m.chks {
				enc, data, err := m.block.chunk(c.Ref)
				if err != nil {
					return status.Error(codes.Internal, err.Error())
				}
				if enc == downsample.ChunkEncAggr {
					ac := &storepb.AggrChunk{MinTime: c.MinTime, MaxTime: c.MaxTime}
					if err := aggrChunk(data, req.Aggregates, ac); err != nil {
						return status.Errorf(codes.InvalidArgument, "block %s: %v", m.block.meta.ULID, err)
					}
					out.Chunks = append(out.Chunks, ac)
					continue
				}
				typ, err := storeapi.EncodingToProto(enc)
				if err != nil {
					return status.Errorf(codes.Internal, "block %s: %v", m.block.meta.ULID, err)
				}
				out.Chunks = append(out.Chunks, &storepb.AggrChunk{MinTime: c.MinTime, MaxTime: c.MaxTime,
					Raw: &storepb.Chunk{Type: typ, Data: slices.Clone(data)}})
			}
		}
		sort.SliceStable(out.Chunks, func(a, b int) bool { return out.Chunks[a].MinTime < out.Chunks[b].MinTime })
		if err := sender.Send(out); err != nil {
			return err
		}
		sent++
		chunksSent += int64(len(out.Chunks))
		i = j
	}
	if err := sender.Flush(); err != nil {
		return err
	}
	s.seriesServed.Observe(float64(sent))
	s.samplesServed.Observe(float64(chunksSent))
	return nil
}

// LabelNames returns the label names of the matching series.
func (s *Store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	set := map[string]struct{}{}
	for _, b := range s.snapshot() {
		if b.meta.MaxTime <= req.Start || b.meta.MinTime > req.End {
			continue
		}
		series, ok := storeapi.SplitExternalMatchers(ms, b.ext)
		if !ok {
			continue
		}
		ir, err := b.index()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		names, err := ir.LabelNames(ctx, series...)
		if err != nil {
			return nil, status.Error(codes.Internal, b.indexErr(err).Error())
		}
		if len(names) == 0 {
			continue
		}
		for _, n := range names {
			set[n] = struct{}{}
		}
		b.ext.Range(func(l labels.Label) {
			if !slices.Contains(req.WithoutReplicaLabels, l.Name) {
				set[l.Name] = struct{}{}
			}
		})
	}
	return &storepb.LabelNamesResponse{Names: sortedKeys(set)}, nil
}

// LabelValues returns the values of a label over the matching series.
func (s *Store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	ms, err := storeapi.MatchersFromProto(req.Matchers)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	set := map[string]struct{}{}
	for _, b := range s.snapshot() {
		if b.meta.MaxTime <= req.Start || b.meta.MinTime > req.End {
			continue
		}
		series, ok := storeapi.SplitExternalMatchers(ms, b.ext)
		if !ok {
			continue
		}
		if b.ext.Has(req.Label) {
			if !slices.Contains(req.WithoutReplicaLabels, req.Label) {
				set[b.ext.Get(req.Label)] = struct{}{}
			}
			continue
		}
		ir, err := b.index()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		vals, err := ir.LabelValues(ctx, req.Label, nil, series...)
		if err != nil {
			return nil, status.Error(codes.Internal, b.indexErr(err).Error())
		}
		for _, v := range vals {
			set[v] = struct{}{}
		}
	}
	return &storepb.LabelValuesResponse{Values: sortedKeys(set)}, nil
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
