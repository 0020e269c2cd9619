package sidecar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"

	"github.com/strata-metrics/strata/pkg/block"
	"github.com/strata-metrics/strata/pkg/component"
	"github.com/strata-metrics/strata/pkg/promclient"
	"github.com/strata-metrics/strata/pkg/shipper"
)

// Config of the sidecar, from its flags.
type Config struct {
	PrometheusURL   string
	TSDBPath        string
	UploadCompacted bool
	ReadyTimeout    time.Duration
	// Refresh is how often external labels, flags and the time range are
	// read again, and blocks are looked for.
	Refresh time.Duration
	// GetConfigTimeout bounds one reading of Prometheus' settings: a
	// Prometheus that accepts connections but does not answer must not
	// hold up shipping or ReadyTimeout. 0 is 30s.
	GetConfigTimeout time.Duration
}

// Sidecar is a running sidecar.
type Sidecar struct {
	cfg  Config
	rt   *component.Runtime
	prom *promclient.Client
	bkt  objstore.Bucket

	mu      sync.RWMutex
	ext     labels.Labels
	minTime int64
}

// New sets the sidecar up on rt; bkt may be nil (no shipping).
func New(cfg Config, rt *component.Runtime, bkt objstore.Bucket) (*Sidecar, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.GetConfigTimeout <= 0 {
		cfg.GetConfigTimeout = 30 * time.Second
	}
	if _, err := os.Stat(cfg.TSDBPath); err != nil {
		return nil, fmt.Errorf("--tsdb.path: %w", err)
	}
	prom, err := promclient.New(cfg.PrometheusURL, nil)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, rt: rt, prom: prom, bkt: bkt, ext: labels.EmptyLabels(), minTime: math.MinInt64}
	if rt.GRPC != nil {
		(&store{prom: prom, ext: s.externalLabels, minTime: s.oldest}).register(rt.GRPC)
	}
	rt.Readiness.SetNotReady("waiting for Prometheus at " + cfg.PrometheusURL)
	rt.AddService("sidecar", s.run)
	return s, nil
}

func (s *Sidecar) externalLabels() labels.Labels {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ext
}

func (s *Sidecar) oldest() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.minTime
}

// errRefused is a configuration the sidecar cannot work with.
type errRefused struct{ msg string }

func (e errRefused) Error() string { return e.msg }

func (s *Sidecar) checkBounded(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.GetConfigTimeout)
	defer cancel()
	return s.check(ctx)
}

// check reads Prometheus' settings and refuses what cannot work.
func (s *Sidecar) check(ctx context.Context) error {
	ext, err := s.prom.ExternalLabels(ctx)
	if err != nil {
		return err
	}
	if ext.IsEmpty() {
		return errRefused{"Prometheus has no external labels: set global.external_labels (for example cluster and replica) in its config; the querier and the bucket need them to tell its data apart"}
	}
	flags, err := s.prom.Flags(ctx)
	if err != nil {
		return err
	}
	if !s.cfg.UploadCompacted {
		minB, maxB := flags["storage.tsdb.min-block-duration"], flags["storage.tsdb.max-block-duration"]
		// Compared as durations: 2h and 120m are the same.
		minD, minErr := model.ParseDuration(minB)
		maxD, maxErr := model.ParseDuration(maxB)
		if minErr != nil || maxErr != nil {
			return fmt.Errorf("read Prometheus' block durations (--storage.tsdb.min-block-duration=%q, --storage.tsdb.max-block-duration=%q): %w", minB, maxB, errors.Join(minErr, maxErr))
		}
		if minD != maxD {
			return errRefused{fmt.Sprintf("Prometheus compacts blocks locally (--storage.tsdb.min-block-duration=%s, --storage.tsdb.max-block-duration=%s): set both to the same value (2h) or pass --shipper.upload-compacted", minB, maxB)}
		}
	}
	minT := s.blocksMinTime()
	if headMin, ok, err := s.prom.HeadMinTime(ctx); err == nil && ok && headMin < minT {
		minT = headMin
	}
	if minT == math.MaxInt64 {
		minT = time.Now().UnixMilli()
	}
	s.mu.Lock()
	s.ext, s.minTime = ext, minT
	s.mu.Unlock()
	return nil
}

// blocksMinTime is the oldest block's start in the TSDB directory.
func (s *Sidecar) blocksMinTime() int64 {
	minT := int64(math.MaxInt64)
	entries, err := os.ReadDir(s.cfg.TSDBPath)
	if err != nil {
		return minT
	}
	for _, e := range entries {
		if _, err := ulid.Parse(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		if m, err := block.ReadMeta(filepath.Join(s.cfg.TSDBPath, e.Name())); err == nil {
			minT = min(minT, m.MinTime)
		}
	}
	return minT
}

func (s *Sidecar) run(ctx context.Context) error {
	logger := s.rt.Logger
	deadline := time.Now().Add(s.cfg.ReadyTimeout)
	for {
		err := s.checkBounded(ctx)
		if err == nil {
			break
		}
		var refused errRefused
		if errors.As(err, &refused) {
			return refused
		}
		if ctx.Err() != nil {
			return nil
		}
		reason := fmt.Sprintf("Prometheus at %s does not answer: %v", s.prom.URL(), err)
		s.rt.Readiness.SetNotReady(reason)
		logger.Warn("waiting for Prometheus", "err", err)
		if s.cfg.ReadyTimeout > 0 && time.Now().After(deadline) {
			return fmt.Errorf("Prometheus not ready within --prometheus.ready_timeout=%s: %w", s.cfg.ReadyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	logger.Info("Prometheus answered", "external_labels", s.externalLabels().String())
	s.rt.Readiness.SetReady()

	var sh *shipper.Shipper
	if s.bkt != nil {
		sh = shipper.New(s.cfg.TSDBPath, s.bkt, s.externalLabels, s.cfg.UploadCompacted, logger, s.rt.Registry)
		sh.RetryBase = s.cfg.Refresh
	} else {
		logger.Info("no bucket configured: serving the StoreAPI only, not shipping blocks")
	}
	wait := time.Duration(0)
	// The shipper backs off per block: a bucket that is down is not
	// hammered, and one block that keeps failing does not hold up the
	// others.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = s.cfg.Refresh
		refusedNow := false
		if err := s.checkBounded(ctx); err != nil {
			var refused errRefused
			if errors.As(err, &refused) {
				// Refused at start, the sidecar exits; a Prometheus
				// reloaded into a configuration it refuses does not
				// take the StoreAPI down with it, but no block is
				// shipped until it is fixed.
				refusedNow = true
				s.rt.Readiness.SetNotReady(refused.Error())
				logger.Error("Prometheus' configuration changed to one the sidecar refuses; not shipping until it is fixed", "err", refused)
			} else {
				s.rt.Readiness.SetNotReady(fmt.Sprintf("Prometheus at %s does not answer: %v", s.prom.URL(), err))
				logger.Warn("cannot read Prometheus' settings; keeping the last ones", "err", err)
			}
		} else {
			s.rt.Readiness.SetReady()
		}
		if sh != nil && !refusedNow {
			if _, err := sh.Sync(ctx); err != nil && ctx.Err() == nil {
				logger.Error("shipping blocks failed; each is retried after its own backoff", "err", err)
			}
		}
	}
}
