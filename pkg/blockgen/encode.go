package blockgen

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// samplesPerChunk is where Prometheus' head cuts chunks.
const samplesPerChunk = 120

// seriesPerBatch is how many series a worker encodes at a time: enough to
// make handing batches around cheap, few enough to bound the chunks held
// in memory to a few megabytes per worker.
const seriesPerBatch = 512

// encodedBatch holds the chunks of defs[first:first+len(samples)]; series
// i's chunks are metas[offs[i]:offs[i+1]].
type encodedBatch struct {
	first   int
	metas   []chunks.Meta
	offs    []int
	samples []int
	err     error
	done    chan struct{}
}

// encodeSeries encodes the chunks of every series of defs in spec with
// workers goroutines and hands them to write in series order, one batch at
// a time, so a single writer adds them to the index in sorted order while
// encoding, the expensive part, runs in parallel.
func encodeSeries(ctx context.Context, cfg *Config, defs []seriesDef, spec blockSpec, workers int, write func(*encodedBatch) error) error {
	if workers <= 1 {
		var g sampleGen
		for first := 0; first < len(defs); first += seriesPerBatch {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := &encodedBatch{first: first}
			encodeBatch(cfg, defs[first:min(first+seriesPerBatch, len(defs))], spec, &g, b)
			if b.err != nil {
				return b.err
			}
			if err := write(b); err != nil {
				return err
			}
		}
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		// ordered bounds how far encoding runs ahead of writing.
		ordered = make(chan *encodedBatch, 2*workers)
		jobs    = make(chan *encodedBatch)
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(jobs)
		for first := 0; first < len(defs); first += seriesPerBatch {
			b := &encodedBatch{first: first, done: make(chan struct{})}
			select {
			case ordered <- b:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var g sampleGen
			for b := range jobs {
				encodeBatch(cfg, defs[b.first:min(b.first+seriesPerBatch, len(defs))], spec, &g, b)
				close(b.done)
			}
		}()
	}
	err := func() error {
		for b := range ordered {
			select {
			case <-b.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if b.err != nil {
				return b.err
			}
			if err := write(b); err != nil {
				return err
			}
		}
		return ctx.Err()
	}()
	cancel()
	wg.Wait()
	return err
}

// encodeBatch fills b with the chunks of defs within spec.
func encodeBatch(cfg *Config, defs []seriesDef, spec blockSpec, g *sampleGen, b *encodedBatch) {
	b.offs = append(b.offs[:0], 0)
	for i := range defs {
		g.reset(cfg, &defs[i], spec.replica, spec.min, spec.max)
		var n int
		b.metas, n, b.err = appendChunks(b.metas, g)
		if b.err != nil {
			b.err = fmt.Errorf("encode series %s: %w", defs[i].lset, b.err)
			return
		}
		b.offs = append(b.offs, len(b.metas))
		b.samples = append(b.samples, n)
	}
}

// appendChunks encodes what g yields into chunks of at most
// samplesPerChunk samples, appends them to metas and counts the samples.
func appendChunks(metas []chunks.Meta, g *sampleGen) ([]chunks.Meta, int, error) {
	native := g.d.kind == kindNative
	var (
		app  chunkenc.Appender
		inCh int
		n    int
	)
	for g.next() {
		if app == nil || inCh == samplesPerChunk {
			var c chunkenc.Chunk = chunkenc.NewXORChunk()
			if native {
				c = chunkenc.NewHistogramChunk()
			}
			a, err := c.Appender()
			if err != nil {
				return metas, 0, err
			}
			app, inCh = a, 0
			metas = append(metas, chunks.Meta{MinTime: g.t, Chunk: c})
		}
		if native {
			c, recoded, a, err := app.AppendHistogram(nil, 0, g.t, &g.h, false)
			if err != nil {
				return metas, 0, err
			}
			if c != nil {
				if !recoded {
					// A counter reset: the chunk so far ends, as in the head.
					metas = append(metas, chunks.Meta{MinTime: g.t})
					inCh = 0
				}
				metas[len(metas)-1].Chunk = c
				app = a
			}
		} else {
			app.Append(0, g.t, g.v)
		}
		metas[len(metas)-1].MaxTime = g.t
		inCh++
		n++
	}
	return metas, n, nil
}
