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

	uploads, failures, bytes prometheus.Counter
	lastSuccess              prometheus.Gauge
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
	if err := json.Unmarshal(b, &st); err != nil {
		// A damaged state file: the bucket is the truth.
		s.logger.Warn("shipper state file unreadable; checking the bucket instead", "file", StateFilename, "err", err)
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
	return os.Rename(tmp, path)
}

// blocks returns the complete blocks of the directory, oldest first.
// Prometheus writes a block under a temporary name and renames it when
// complete, so a ULID-named directory with a readable meta.json is done.
func (s *Shipper) blocks() ([]*block.Meta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read TSDB directory: %w", err)
	}
	var out []*block.Meta
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := ulid.Parse(e.Name()); err != nil {
			continue
		}
		m, err := block.ReadMeta(filepath.Join(s.dir, e.Name()))
		if err != nil {
			s.logger.Warn("skipping block with unreadable meta.json (will retry)", "block", e.Name(), "err", err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MinTime < out[j].MinTime })
	return out, nil
}

// Sync uploads every complete block not uploaded yet and returns how many
// it uploaded. A failed block is retried at the next sync.
func (s *Shipper) Sync(ctx context.Context) (int, error) {
	uploaded, haveState, err := s.readState()
	if err != nil {
		return 0, err
	}
	metas, err := s.blocks()
	if err != nil {
		return 0, err
	}
	ext := s.labels()
	if ext.IsEmpty() {
		return 0, errors.New("no external labels: every shipped block needs them (set global.external_labels in Prometheus' config)")
	}
	n := 0
	var errs []error
	for _, m := range metas {
		if uploaded[m.ULID] {
			continue
		}
		if m.Compaction.Level > 1 && !s.uploadCompacted {
			continue
		}
		if !haveState {
			// No state file: the bucket is the truth.
			ok, err := s.bkt.Exists(ctx, m.ULID.String()+"/"+block.MetaFilename)
			if err != nil {
				s.failures.Inc()
				errs = append(errs, fmt.Errorf("check block %s in the bucket: %w", m.ULID, err))
				continue
			}
			if ok {
				uploaded[m.ULID] = true
				continue
			}
		}
		if err := s.upload(ctx, m, ext); err != nil {
			s.failures.Inc()
			errs = append(errs, err)
			continue
		}
		uploaded[m.ULID] = true
		n++
		if err := s.writeState(uploaded); err != nil {
			return n, err
		}
	}
	if !haveState || n > 0 {
		// Forget blocks Prometheus deleted (retention), so the file stays small.
		present := map[ulid.ULID]bool{}
		for _, m := range metas {
			present[m.ULID] = true
		}
		for id := range uploaded {
			if !present[id] {
				delete(uploaded, id)
			}
		}
		if err := s.writeState(uploaded); err != nil {
			return n, err
		}
	}
	return n, errors.Join(errs...)
}

func (s *Shipper) upload(ctx context.Context, m *block.Meta, ext labels.Labels) error {
	dir := filepath.Join(s.dir, m.ULID.String())
	meta := *m
	meta.Thanos = block.Thanos{Version: 1, Labels: ext.Map(), Source: block.SourceSidecar}
	start := time.Now()
	if err := block.UploadWithMeta(ctx, s.logger, s.bkt, dir, &meta); err != nil {
		// If Prometheus deleted the block under us, remove what was
		// uploaded; without meta.json no store reads it anyway.
		if _, statErr := os.Stat(dir); errors.Is(statErr, os.ErrNotExist) {
			_ = block.Delete(ctx, s.logger, s.bkt, m.ULID)
			s.logger.Info("block deleted by Prometheus during upload; removed the partial upload", "block", m.ULID)
			return nil
		}
		return fmt.Errorf("ship block %s: %w", m.ULID, err)
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
