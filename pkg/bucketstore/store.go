package bucketstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
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
	// MinTimeAgo and MaxTimeAgo, when not zero, set MinTime and MaxTime
	// that far before now, again at every use (--min-time=-2w): a shard
	// of the last two weeks keeps moving with the clock.
	MinTimeAgo, MaxTimeAgo time.Duration
	// Relabel selects blocks by their external labels (label sharding).
	Relabel                  []*relabel.Config
	IgnoreDeletionMarksDelay time.Duration
	ConsistencyDelay         time.Duration
	// IndexCacheBytes is unused: indexes are memory-mapped local copies
	// (see indexFile). Kept for the flag Thanos users pass.
	IndexCacheBytes int64
	ChunkCacheBytes int64
	SyncConcurrency int
	LimitSeries     int64
	LimitSamples    int64
	MaxConcurrency  int
	// EncodedFrames tells that the gRPC server sends storeapi.Encoded
	// messages as they are (storeapi.ServerCodec), so Series may build its
	// frames by hand.
	EncodedFrames bool
}

// Store serves the bucket's blocks over the StoreAPI.
type Store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	cfg    Config
	bkt    objstore.InstrumentedBucketReader
	logger *slog.Logger
	lister *block.Lister
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
	if cfg.DataDir == "" {
		// Indexes need a local directory; without one, a temporary one
		// that goes with ctx.
		dir, err := os.MkdirTemp("", "strata-store-")
		if err == nil {
			cfg.DataDir = dir
			go func() { <-ctx.Done(); os.RemoveAll(dir) }()
		}
	}
	f := promauto.With(reg)
	return &Store{
		cfg: cfg, bkt: bkt, logger: logger, ctx: ctx,
		lister:        newLister(bkt, cfg),
		chunks:        newPageCache("chunks", max(cfg.ChunkCacheBytes, pageSize), reg),
		gate:          make(chan struct{}, cfg.MaxConcurrency),
		blocks:        map[ulid.ULID]*bucketBlock{},
		blocksLoaded:  f.NewGauge(prometheus.GaugeOpts{Name: "strata_store_blocks_loaded", Help: "Blocks served."}),
		syncs:         f.NewCounter(prometheus.CounterOpts{Name: "strata_store_syncs_total", Help: "Bucket syncs."}),
		syncFailures:  f.NewCounter(prometheus.CounterOpts{Name: "strata_store_sync_failures_total", Help: "Bucket syncs that failed."}),
		badBlocks:     f.NewCounter(prometheus.CounterOpts{Name: "strata_store_bad_blocks_total", Help: "Blocks skipped as corrupt or unreadable: at each sync, and when a request under partial response could not read their index."}),
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
	// A time shard serves only its own range, of blocks that reach out
	// of it too (as Thanos' limitMinTime and limitMaxTime).
	mint, maxt = max(mint, s.minTime()), min(maxt, s.maxTime())
	if mint > maxt {
		mint, maxt = 0, 0
	}
	resp.Store = &infopb.StoreInfo{MinTime: mint, MaxTime: maxt, SupportsSharding: true, SupportsWithoutReplicaLabels: true}
	return resp, nil
}

// ixReader adds what tsdb.PostingsForMatchers needs to Prometheus' index reader.
type ixReader struct{ *index.Reader }

func (ixReader) SortedPostings(p index.Postings) index.Postings { return p }

// matched is a series of one stream (one external label set), with its
// chunks from all the stream's blocks, not yet sent.
type matched struct {
	lset labels.Labels // with the stream's external labels, without stripped replica labels
	ext  labels.Labels
	chks []blockChunk
}

// blockChunk is a chunk of a matched series and the block it lives in.
type blockChunk struct {
	b          *bucketBlock
	ref        chunks.ChunkRef
	mint, maxt int64
}

// blockCursor walks one block's matching series in index order, which is
// the order of their labels (without external labels).
type blockCursor struct {
	b          *bucketBlock
	sr         *seriesReader
	p          index.Postings
	mint, maxt int64
	sb         labels.ScratchBuilder
	lset       labels.Labels
	chks       []chunks.Meta // the current series' chunks in [mint, maxt]
	err        error
}

// next moves to the next series with a chunk in the time range.
func (c *blockCursor) next() bool {
	for c.p.Next() {
		if err := c.sr.series(c.p.At(), &c.sb, &c.chks); err != nil {
			c.err = c.b.indexErr(fmt.Errorf("series: %w", err))
			return false
		}
		keep := c.chks[:0]
		for _, m := range c.chks {
			if m.MaxTime >= c.mint && m.MinTime <= c.maxt {
				keep = append(keep, m)
			}
		}
		c.chks = keep
		if len(keep) > 0 {
			c.lset = c.sb.Labels()
			return true
		}
	}
	if err := c.p.Err(); err != nil {
		c.err = c.b.indexErr(err)
	}
	return false
}

// selectStream resolves the matchers on the blocks of one stream (blocks
// with the same external labels) and merges their series: each series once,
// with its chunks from every block. Within a stream every block lists its
// series in label order, so a merge of the blocks' cursors is exact and
// keeps one entry per series rather than one per series and block.
//
// selected counts the series of the request's streams together, for the
// series limit.
//
// skip decides whether a block whose index cannot be read is left out (a
// warning under partial response) rather than failing the request.
func (s *Store) selectStream(ctx context.Context, blocks []*bucketBlock, ms []*labels.Matcher, mint, maxt int64, strip []string, skipChunks bool, shard *storeapi.ShardMatcher, selected *atomic.Int64, skip func(*bucketBlock, error) bool) ([]matched, error) {
	var out []matched
	ext := blocks[0].ext
	series, ok := storeapi.SplitExternalMatchers(ms, ext)
	if !ok {
		return out, nil
	}
	if len(series) == 0 {
		series = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".*")}
	}
	curs := make([]*blockCursor, 0, len(blocks))
	for _, b := range blocks {
		// Opening an index may download its header: not for a request
		// that has failed or gone.
		if err := ctx.Err(); err != nil {
			return out, err
		}
		sr, err := b.seriesReader()
		if err != nil {
			if skip(b, err) {
				continue
			}
			return out, err
		}
		p, err := tsdb.PostingsForMatchers(ctx, ixReader{sr.ir}, series...)
		if err != nil {
			if err = b.indexErr(fmt.Errorf("postings: %w", err)); ctx.Err() == nil && skip(b, err) {
				continue
			}
			return out, err
		}
		// A shard keyed by one series label: its series are those with
		// some of the label's values, found in the postings rather than
		// by reading every series (the other shards' work, mostly).
		if name, ok := shard.ByLabel(); ok && !ext.Has(name) {
			var none bool
			if p, none, err = shardPostings(ctx, sr.ir, p, shard, name); err != nil {
				if err = b.indexErr(err); ctx.Err() == nil && skip(b, err) {
					continue
				}
				return out, err
			}
			if none {
				continue
			}
		}
		c := &blockCursor{b: b, sr: sr, p: p, mint: mint, maxt: maxt}
		if c.next() {
			curs = append(curs, c)
		} else if c.err != nil {
			return out, c.err
		}
	}
	var lb labels.Builder
	for n := 0; len(curs) > 0; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return out, ctx.Err()
		}
		lset := curs[0].lset
		for _, c := range curs[1:] {
			if labels.Compare(c.lset, lset) < 0 {
				lset = c.lset
			}
		}
		m := matched{ext: ext, lset: storeapi.WithoutLabels(&lb, storeapi.AttachExternalLabels(&lb, lset, ext), strip)}
		// Out of the request's shard: only the cursors move on.
		inShard := shard.Matches(m.lset)
		if !skipChunks && inShard {
			// Sized exactly: on wide requests these lists are most of
			// what a request holds.
			n := 0
			for _, c := range curs {
				if labels.Equal(c.lset, lset) {
					n += len(c.chks)
				}
			}
			m.chks = make([]blockChunk, 0, n)
		}
		live := curs[:0]
		for _, c := range curs {
			if labels.Equal(c.lset, lset) {
				if !skipChunks && inShard {
					for _, ch := range c.chks {
						m.chks = append(m.chks, blockChunk{b: c.b, ref: ch.Ref, mint: ch.MinTime, maxt: ch.MaxTime})
					}
				}
				if !c.next() {
					if c.err != nil {
						return out, c.err
					}
					continue
				}
			}
			live = append(live, c)
		}
		curs = live
		if !inShard {
			continue
		}
		out = append(out, m)
		if s.cfg.LimitSeries > 0 && selected.Add(1) > s.cfg.LimitSeries {
			return out, errTooManySeries
		}
	}
	return out, nil
}

// shardPostings narrows p to the series of the shard, keyed by label name
// alone, with the postings of the label's values; none tells that no
// series of the block is in the shard.
func shardPostings(ctx context.Context, ir *index.Reader, p index.Postings, shard *storeapi.ShardMatcher, name string) (_ index.Postings, none bool, _ error) {
	vals, err := ir.SortedLabelValues(ctx, name, nil)
	if err != nil {
		return nil, false, fmt.Errorf("values of %s: %w", name, err)
	}
	in, out, absentIn := shard.SplitValues(name, vals)
	switch {
	case len(out) == 0 && absentIn:
		return p, false, nil
	case len(in) == 0 && !absentIn:
		return nil, true, nil
	case absentIn:
		// Series without the label are in: drop those of the values
		// that are not.
		drop, err := ir.Postings(ctx, name, out...)
		if err != nil {
			return nil, false, fmt.Errorf("postings of %s: %w", name, err)
		}
		return index.Without(p, drop), false, nil
	}
	keep, err := ir.Postings(ctx, name, in...)
	if err != nil {
		return nil, false, fmt.Errorf("postings of %s: %w", name, err)
	}
	return index.Intersect(p, keep), false, nil
}

var errTooManySeries = errors.New("too many series")

// encodedFrameBytes bounds a hand-built batch frame (unless one series is
// larger): the querier keeps frames in 4 MiB slabs, four to a slab.
const encodedFrameBytes = 1 << 20

// assumedChunkBytes is a typical chunk's size on disk (120 samples of a
// float series), to estimate what a request reads before reading it.
const assumedChunkBytes = 200

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
	if _, err := storeapi.NewShardMatcher(req.ShardInfo); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	req.MinTime, req.MaxTime = max(req.MinTime, s.minTime()), min(req.MaxTime, s.maxTime())
	if req.MinTime > req.MaxTime {
		return nil // outside the time shard
	}
	// Blocks by stream, in the order blocksFor gives them.
	var streams [][]*bucketBlock
	byExt := map[string]int{}
	for _, b := range blocksFor(s.snapshot(), req.MinTime, req.MaxTime, req.MaxResolutionWindow) {
		k := b.ext.String()
		i, ok := byExt[k]
		if !ok {
			i = len(streams)
			byExt[k] = i
			streams = append(streams, nil)
		}
		streams[i] = append(streams[i], b)
	}
	// The streams' index work is independent: over both replicas of an HA
	// pair it runs on two cores while the querier waits for the first
	// series.
	parts := make([][]matched, len(streams))
	var (
		selected atomic.Int64
		warnMu   sync.Mutex
		warnings []string
	)
	// A block whose index cannot be read (corrupt, or the bucket failing)
	// is a warning under partial response, as a failed store is; without
	// it, the request fails naming the block.
	skip := func(b *bucketBlock, err error) bool {
		if req.PartialResponseDisabled || req.PartialResponseStrategy == storepb.PartialResponseStrategy_ABORT {
			return false
		}
		s.badBlocks.Inc()
		s.logger.Warn("skipping a block whose index cannot be read", "block", b.meta.ULID, "err", err)
		warnMu.Lock()
		defer warnMu.Unlock()
		warnings = append(warnings, fmt.Sprintf("block %s left out: %v", b.meta.ULID, err))
		return true
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, blocks := range streams {
		var strip []string
		for _, l := range req.WithoutReplicaLabels {
			if blocks[0].ext.Has(l) {
				strip = append(strip, l)
			}
		}
		g.Go(func() error {
			// A matcher per stream: it keeps a buffer.
			shard, err := storeapi.NewShardMatcher(req.ShardInfo)
			if err != nil {
				return err
			}
			parts[i], err = s.selectStream(gctx, blocks, ms, req.MinTime, req.MaxTime, strip, req.SkipChunks, shard, &selected, skip)
			return err
		})
	}
	var all []matched
	if err = g.Wait(); err == nil {
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		all = make([]matched, 0, n)
		for _, p := range parts {
			all = append(all, p...)
		}
	}
	if errors.Is(err, errTooManySeries) {
		return status.Errorf(codes.ResourceExhausted, "the request selects more than %d series (--store.limits.request-series); narrow the selector or the time range", s.cfg.LimitSeries)
	}
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Error(codes.Internal, err.Error())
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
	// Sorted by labels: a stream's cursors ran in label order without the
	// external labels, and adding them (or dropping replica labels) can
	// change the order (a series whose labels are a prefix of another's).
	// Replicas whose labels became equal without their replica labels stay
	// separate, next to each other, in the order of their external labels,
	// for the querier to deduplicate.
	sort.SliceStable(all, func(i, j int) bool {
		if c := labels.Compare(all[i].lset, all[j].lset); c != 0 {
			return c < 0
		}
		return labels.Compare(all[i].ext, all[j].ext) < 0
	})

	// Small requests read through the page cache, where a dashboard that
	// repeats them finds their pages; a request whose chunks would take
	// more than a quarter of the cache reads them in planned windows.
	// Batches of raw data go out as frames built by hand when the server's
	// codec sends them as they are (Config.EncodedFrames); requests that
	// may read downsampled blocks keep the messages, which carry
	// aggregates.
	var (
		enc    *storeapi.SeriesFrameEncoder
		rawBuf []storeapi.RawChunk
		batch  = int(min(max(req.ResponseBatchSize, 1), storeapi.MaxResponseBatch))
	)
	if s.cfg.EncodedFrames && req.ResponseBatchSize > 1 && req.MaxResolutionWindow < block.Resolution5m {
		enc = &storeapi.SeriesFrameEncoder{SizeHint: encodedFrameBytes + 64<<10}
	}
	readChunk := func(b *bucketBlock, ref chunks.ChunkRef) (chunkenc.Encoding, []byte, error) { return b.chunk(ref) }
	var (
		nchk    int64
		windows *chunkWindows
	)
	for _, m := range all {
		nchk += int64(len(m.chks))
	}
	if nchk*assumedChunkBytes > s.cfg.ChunkCacheBytes/4 {
		windows = newChunkWindows(all)
		// The frame encoder copies a series' chunks before the next
		// series is read: windows can be reused.
		windows.recycle = enc != nil
		defer windows.close()
		readChunk = windows.chunk
	}
	var sent, chunksSent int64
	sender := storeapi.NewSeriesSender(srv, req.ResponseBatchSize)
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && labels.Equal(all[i].lset, all[j].lset) && labels.Equal(all[i].ext, all[j].ext) {
			j++
		}
		if req.Limit > 0 && sent >= req.Limit {
			break
		}
		if enc != nil {
			rawBuf = rawBuf[:0]
			for _, m := range all[i:j] {
				for _, c := range m.chks {
					ce, data, err := readChunk(c.b, c.ref)
					if err != nil {
						return status.Error(codes.Internal, err.Error())
					}
					typ, err := storeapi.EncodingToProto(ce)
					if err != nil {
						return status.Errorf(codes.Internal, "block %s: %v", c.b.meta.ULID, err)
					}
					rawBuf = append(rawBuf, storeapi.RawChunk{MinTime: c.mint, MaxTime: c.maxt, Type: typ, Data: data})
				}
			}
			sort.SliceStable(rawBuf, func(a, b int) bool { return rawBuf[a].MinTime < rawBuf[b].MinTime })
			if !enc.FitsLabels(all[i].lset, rawBuf, encodedFrameBytes) {
				if err := srv.SendMsg(enc.Frame()); err != nil {
					return err
				}
			}
			enc.Add(all[i].lset, rawBuf)
			if windows != nil {
				windows.release()
			}
			if n, size := enc.Len(); n >= batch || size >= encodedFrameBytes {
				if err := srv.SendMsg(enc.Frame()); err != nil {
					return err
				}
			}
			sent++
			chunksSent += int64(len(rawBuf))
			i = j
			continue
		}
		out := &storepb.Series{Labels: storeapi.LabelsToProto(all[i].lset)}
		// The messages of a series' chunks in two allocations, not two
		// per chunk: wide requests send millions of chunks.
		n := 0
		for _, m := range all[i:j] {
			n += len(m.chks)
		}
		aggrs, raws := make([]storepb.AggrChunk, n), make([]storepb.Chunk, n)
		out.Chunks = make([]*storepb.AggrChunk, 0, n)
		for _, m := range all[i:j] {
			for _, c := range m.chks {
				enc, data, err := readChunk(c.b, c.ref)
				if err != nil {
					return status.Error(codes.Internal, err.Error())
				}
				if enc == downsample.ChunkEncAggr {
					ac := &storepb.AggrChunk{MinTime: c.mint, MaxTime: c.maxt}
					if err := aggrChunk(data, req.Aggregates, ac); err != nil {
						return status.Errorf(codes.InvalidArgument, "block %s: %v", c.b.meta.ULID, err)
					}
					out.Chunks = append(out.Chunks, ac)
					continue
				}
				typ, err := storeapi.EncodingToProto(enc)
				if err != nil {
					return status.Errorf(codes.Internal, "block %s: %v", c.b.meta.ULID, err)
				}
				// No copy: cached pages and windows are never written
				// to, and the frame is marshalled before they go.
				k := len(out.Chunks)
				raws[k].Type, raws[k].Data = typ, data
				aggrs[k].MinTime, aggrs[k].MaxTime, aggrs[k].Raw = c.mint, c.maxt, &raws[k]
				out.Chunks = append(out.Chunks, &aggrs[k])
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
	if enc != nil {
		if f := enc.Frame(); f != nil {
			if err := srv.SendMsg(f); err != nil {
				return err
			}
		}
	}
	for _, w := range warnings {
		if err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: w}}); err != nil {
			return err
		}
	}
	s.seriesServed.Observe(float64(sent))
	s.samplesServed.Observe(float64(chunksSent))
	return nil
}
