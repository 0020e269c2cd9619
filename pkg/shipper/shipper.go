package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/pkg/block"
)

// StateFilename is the shipper's progress file, in Thanos' format.
const StateFilename = "thanos.shipper.json"

type state struct {
	Version  int         `json:"version"`
	Uploaded []ulid.ULID `json:"uploaded"`
}

// Shipper uploads new blocks of dir.
type Shipper struct {
	dir             string
	bkt             objstore.Bucket
	labels          func() labels.Labels
	uploadCompacted bool
	logger          *slog.Logger

	uploads, failures, bytes, stateFailures   prometheus.Counter
	lastSuccess, skippedCompacted, unreadable prometheus.Gauge

	warned map[ulid.ULID]bool // compacted blocks already logged as skipped

	// RetryBase is the wait before a failed block is tried again,
	// doubled per further failure up to maxRetryDelay; 0 is 30s.
	RetryBase time.Duration
	retries   map[ulid.ULID]*retry
}

// retry is the backoff of one block that failed to ship.
type retry struct {
	failures int
	next     time.Time
}

// maxRetryDelay bounds the wait before a failed block is tried again.
const maxRetryDelay = 5 * time.Minute

// retryDelay is the wait after the given number of failures in a row: base,
// doubled per further failure, at most maxRetryDelay (never less than base).
func retryDelay(base time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < maxRetryDelay; i++ {
		d *= 2
	}
	return max(min(d, maxRetryDelay), base)
}

// failed records a failure of block id and when to try it again.
func (s *Shipper) failed(id ulid.ULID) {
	s.failures.Inc()
	r := s.retries[id]
	if r == nil {
		r = &retry{}
		s.retries[id] = r
	}
	r.failures++
	base := s.RetryBase
	if base <= 0 {
		base = 30 * time.Second
	}
	r.next = time.Now().Add(retryDelay(base, r.failures))
}

// New returns a shipper of the TSDB directory dir; labels gives the
// external labels put in each block's meta.
func New(dir string, bkt objstore.Bucket, lbls func() labels.Labels, uploadCompacted bool, logger *slog.Logger, reg prometheus.Registerer) *Shipper {
	f := promauto.With(reg)
	return &Shipper{
		dir: dir, bkt: bkt, labels: lbls, uploadCompacted: uploadCompacted, logger: logger,
		uploads:     f.NewCounter(prometheus.CounterOpts{Name: "strata_shipper_uploads_total", Help: "Blocks uploaded."}),
		failures:    f.NewCounter(prometheus.CounterOpts{Name: "strata_shipper_upload_failures_total", Help: "Block uploads that failed (retried at the next sync)."}),
		bytes:       f.NewCounter(prometheus.CounterOpts{Name: "strata_shipper_uploaded_bytes_total", Help: "Bytes of blocks uploaded."}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{Name: "strata_shipper_last_successful_upload_timestamp_seconds", Help: "When a block was last uploaded."}),
		stateFailures: f.NewCounter(prometheus.CounterOpts{Name: "strata_shipper_state_write_failures_total",
			Help: "Failed writes of the shipper's state file in the TSDB directory (shipped blocks are then found in the bucket)."}),
		skippedCompacted: f.NewGauge(prometheus.GaugeOpts{Name: "strata_shipper_skipped_compacted_blocks",
			Help: "Blocks Prometheus compacted itself that are not shipped because --shipper.upload-compacted is off."}),
		unreadable: f.NewGauge(prometheus.GaugeOpts{Name: "strata_shipper_unreadable_blocks",
			Help: "Block directories in the TSDB directory whose meta.json could not be read at the last sync."}),
		warned:  map[ulid.ULID]bool{},
		retries: map[ulid.ULID]*retry{},
	}
}

func (s *Shipper) readState() (map[ulid.ULID]bool, bool, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, StateFilename))
	if errors.Is(err, os.ErrNotExist) {
		return map[ulid.ULID]bool{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", StateFilename, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Version != 1 {
		// A damaged state file, or one of a format this shipper does
		// not know: the bucket is the truth.
		s.logger.Warn("shipper state file unreadable; checking the bucket instead", "file", StateFilename, "version", st.Version, "err", err)
		return map[ulid.ULID]bool{}, false, nil
	}
	out := map[ulid.ULID]bool{}
	for _, id := range st.Uploaded {
		out[id] = true
	}
	return out, true, nil
}

// writeState replaces the state file atomically.
func (s *Shipper) writeState(uploaded map[ulid.ULID]bool) error {
	st := state{Version: 1, Uploaded: []ulid.ULID{}}
	for id := range uploaded {
		st.Uploaded = append(st.Uploaded, id)
	}
	sort.Slice(st.Uploaded, func(i, j int) bool { return st.Uploaded[i].Compare(st.Uploaded[j]) < 0 })
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, StateFilename)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", StateFilename, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", StateFilename, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", StateFilename, err)
	}
	// The rename is durable once the directory is.
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// blocks returns the complete blocks of the directory, oldest first, and
// every block directory present (complete or not). Prometheus writes a
// block under a temporary name and renames it when complete, so a
// ULID-named directory with a readable meta.json is done.
func (s *Shipper) blocks() ([]*block.Meta, map[ulid.ULID]bool, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read TSDB directory: %w", err)
	}
	var out []*block.Meta
	present := map[ulid.ULID]bool{}
	unreadable := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id, err := ulid.Parse(e.Name())
		if err != nil {
			continue
		}
		present[id] = true
		m, err := block.ReadMeta(filepath.Join(s.dir, e.Name()))
		if err != nil {
			unreadable++
			s.logger.Warn("skipping block with unreadable meta.json (will retry)", "block", e.Name(), "err", err)
			continue
		}
		out = append(out, m)
	}
	s.unreadable.Set(float64(unreadable))
	sort.Slice(out, func(i, j int) bool { return out[i].MinTime < out[j].MinTime })
	return out, present, nil
}

// Sync uploads every complete block not uploaded yet and returns how many
// it uploaded. A failed block is retried at the next sync.
func (s *Shipper) Sync(ctx context.Context) (int, error) {
	uploaded, haveState, err := s.readState()
	if err != nil {
		return 0, err
	}
	metas, present, err := s.blocks()
	if err != nil {
		return 0, err
	}
	ext := s.labels()
	if ext.IsEmpty() {
		return 0, errors.New("no external labels: every shipped block needs them (set global.external_labels in Prometheus' config)")
	}
	var (
		n, skipped int
		errs       []error
		changed    = !haveState
		inBucket   *overlapCheck
	)
	for _, m := range metas {
		if uploaded[m.ULID] {
			continue
		}
		if r := s.retries[m.ULID]; r != nil && time.Now().Before(r.next) {
			continue // failed lately: tried again after its backoff
		}
		if m.Compaction.Level > 1 {
			if !s.uploadCompacted {
				// Prometheus compacted this block itself (a local
				// compaction, or out-of-order data merged into an
				// overlapping block): its data would be lost to the
				// bucket, so say so.
				skipped++
				if !s.warned[m.ULID] {
					s.warned[m.ULID] = true
					s.logger.Warn("not shipping a block Prometheus compacted itself; its data will be missing from the bucket unless it is shipped with --shipper.upload-compacted",
						"block", m.ULID, "level", m.Compaction.Level, "min_time", time.UnixMilli(m.MinTime).UTC(), "max_time", time.UnixMilli(m.MaxTime).UTC())
				}
				continue
			}
			if inBucket == nil {
				inBucket = &overlapCheck{bkt: s.bkt, ext: ext}
			}
			shipped, err := inBucket.covered(ctx, m)
			if err != nil {
				s.failed(m.ULID)
				errs = append(errs, err)
				continue
			}
			if shipped {
				// Its sources are in the bucket already: uploading it
				// would duplicate their data.
				uploaded[m.ULID], changed = true, true
				continue
			}
		}
		// Not in the state file (lost, stale, or the sidecar stopped
		// between an upload and writing it): the bucket decides, as in
		// Thanos, so a block is never uploaded twice.
		ok, err := s.bkt.Exists(ctx, m.ULID.String()+"/"+block.MetaFilename)
		if err != nil {
			s.failed(m.ULID)
			errs = append(errs, fmt.Errorf("check block %s in the bucket: %w", m.ULID, err))
			continue
		}
		if ok {
			delete(s.retries, m.ULID)
			uploaded[m.ULID], changed = true, true
			continue
		}
		if err := s.upload(ctx, m, ext); errors.Is(err, errVanished) {
			continue
		} else if err != nil {
			s.failed(m.ULID)
			errs = append(errs, err)
			continue
		}
		delete(s.retries, m.ULID)
		uploaded[m.ULID], changed = true, true
		n++
	}
	s.skippedCompacted.Set(float64(skipped))
	// Forget blocks whose directory Prometheus deleted (retention), so the
	// file stays small. A block whose meta.json could not be read this
	// time stays: it is still there.
	for id := range uploaded {
		if !present[id] {
			delete(uploaded, id)
			changed = true
		}
	}
	for id := range s.warned {
		if !present[id] {
			delete(s.warned, id)
		}
	}
	for id := range s.retries {
		if !present[id] {
			delete(s.retries, id)
		}
	}
	if changed {
		if err := s.writeState(uploaded); err != nil {
			// Blocks shipped now are found in the bucket next time.
			s.stateFailures.Inc()
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// errVanished: Prometheus deleted the block (retention) while it was being
// uploaded.
var errVanished = errors.New("block deleted by Prometheus during upload")

func (s *Shipper) upload(ctx context.Context, m *block.Meta, ext labels.Labels) error {
	dir := filepath.Join(s.dir, m.ULID.String())
	meta := *m
	meta.Thanos = block.Thanos{Version: 1, Labels: ext.Map(), Source: block.SourceSidecar}
	start := time.Now()
	if err := block.UploadWithMeta(ctx, s.logger, s.bkt, dir, &meta); err != nil {
		if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
			return fmt.Errorf("ship block %s: %w", m.ULID, err)
		}
		// Prometheus deleted the block under us. Without meta.json no
		// store reads what was uploaded, and the compactor removes it
		// once it is old; remove it now. A block whose meta.json is in
		// the bucket is complete there and stays.
		if ok, exErr := s.bkt.Exists(ctx, m.ULID.String()+"/"+block.MetaFilename); exErr != nil || ok {
			s.logger.Info("block deleted by Prometheus during upload; left the bucket as it is", "block", m.ULID, "complete_in_bucket", ok, "err", exErr)
			return errVanished
		}
		if delErr := block.Delete(ctx, s.logger, s.bkt, m.ULID); delErr != nil {
			s.logger.Warn("block deleted by Prometheus during upload; could not remove the partial upload (the compactor will)", "block", m.ULID, "err", delErr)
			return errVanished
		}
		s.logger.Info("block deleted by Prometheus during upload; removed the partial upload", "block", m.ULID)
		return errVanished
	}
	var size int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			size += info.Size()
		}
		return nil
	})
	s.uploads.Inc()
	s.bytes.Add(float64(size))
	s.lastSuccess.SetToCurrentTime()
	s.logger.Info("shipped block", "block", m.ULID, "min_time", time.UnixMilli(m.MinTime).UTC(), "max_time", time.UnixMilli(m.MaxTime).UTC(),
		"bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Run syncs every interval until ctx ends, backing off after failures.
func (s *Shipper) Run(ctx context.Context, interval time.Duration) error {
	wait := interval
	for {
		if _, err := s.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.logger.Error("shipping blocks failed; retrying", "err", err, "retry_in", wait)
			wait = min(wait*2, 5*time.Minute)
		} else {
			wait = interval
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// overlapCheck decides, from the bucket, whether a block Prometheus
// compacted itself holds data already shipped: its time range overlaps
// blocks of the same external labels there. Thanos refuses such a block;
// so does the shipper, unless the overlapping blocks hold all of its
// sources (it was compacted from blocks shipped before), when it is
// skipped.
type overlapCheck struct {
	bkt    objstore.Bucket
	ext    labels.Labels
	metas  []*block.Meta
	listed bool
}

func (c *overlapCheck) covered(ctx context.Context, m *block.Meta) (bool, error) {
	if !c.listed {
		listing, err := block.NewLister(objstore.WithNoopInstr(c.bkt), 8).List(ctx)
		if err != nil {
			return false, fmt.Errorf("list the bucket to check compacted block %s: %w", m.ULID, err)
		}
		if len(listing.Failed) > 0 {
			return false, fmt.Errorf("list the bucket to check compacted block %s: %d blocks unreadable", m.ULID, len(listing.Failed))
		}
		for _, bm := range listing.Metas {
			if bm.Thanos.Downsample.Resolution == 0 && labels.Equal(labels.FromMap(bm.Thanos.Labels), c.ext) {
				c.metas = append(c.metas, bm)
			}
		}
		c.listed = true
	}
	sources := map[ulid.ULID]bool{}
	var overlaps []string
	for _, bm := range c.metas {
		if bm.ULID == m.ULID || bm.MaxTime <= m.MinTime || bm.MinTime >= m.MaxTime {
			continue
		}
		overlaps = append(overlaps, bm.ULID.String())
		for _, id := range bm.Compaction.Sources {
			sources[id] = true
		}
	}
	if len(overlaps) == 0 {
		return false, nil
	}
	for _, id := range m.Compaction.Sources {
		if !sources[id] {
			return false, fmt.Errorf("compacted block %s overlaps blocks %v already in the bucket, which do not hold all of its sources: uploading it would duplicate data, skipping it would lose some; remove it from the TSDB directory or move its missing data by hand", m.ULID, overlaps)
		}
	}
	return true, nil
}
