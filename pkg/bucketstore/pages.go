package bucketstore

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// pageSize is the unit of ranged reads: reads of neighbouring bytes share a
// request and a cache entry.
const pageSize = 32 << 10

// pageCache is a size-bounded LRU of object pages.
type pageCache struct {
	mu       sync.Mutex
	max, cur int64
	ll       *list.List
	items    map[pageKey]*list.Element

	hits, misses prometheus.Counter
	bytes        prometheus.Gauge
}

type pageKey struct {
	object string
	page   int64
	// end is set for assembled multi-page ranges, whose page is -(start+1).
	end int64
}

type pageEntry struct {
	key  pageKey
	data []byte
}

func newPageCache(name string, maxBytes int64, reg prometheus.Registerer) *pageCache {
	c := &pageCache{max: maxBytes, ll: list.New(), items: map[pageKey]*list.Element{},
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_store_cache_hits_total", Help: "Cache hits.", ConstLabels: prometheus.Labels{"cache": name}}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_store_cache_misses_total", Help: "Cache misses.", ConstLabels: prometheus.Labels{"cache": name}}),
		bytes:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_store_cache_bytes", Help: "Bytes held in the cache.", ConstLabels: prometheus.Labels{"cache": name}}),
	}
	if reg != nil {
		reg.MustRegister(c.hits, c.misses, c.bytes)
	}
	return c
}

func (c *pageCache) get(k pageKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		c.hits.Inc()
		return e.Value.(*pageEntry).data, true
	}
	c.misses.Inc()
	return nil, false
}

func (c *pageCache) put(k pageKey, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.ll.PushFront(&pageEntry{key: k, data: data})
	c.cur += int64(len(data))
	for c.cur > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		pe := e.Value.(*pageEntry)
		c.ll.Remove(e)
		delete(c.items, pe.key)
		c.cur -= int64(len(pe.data))
	}
	c.bytes.Set(float64(c.cur))
}

// objectReader reads one object of the bucket by pages, for Prometheus'
// index reader (the index.ByteSlice interface) and for chunks. A read that
// fails returns zeros and records the error: the index decoders then fail
// their checksums, and callers report the recorded error, which names the
// object.
type objectReader struct {
	ctx   context.Context
	bkt   objstore.BucketReader
	name  string
	size  int64
	cache *pageCache

	mu  sync.Mutex
	err error
}

func (r *objectReader) Len() int { return int(r.size) }

// Err is the first read error, if any.
func (r *objectReader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *objectReader) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

// Range returns bytes [start, end) of the object, fetching the missing pages
// with as few ranged reads as their runs allow.
func (r *objectReader) Range(start, end int) []byte {
	if start < 0 || end > int(r.size) || start > end {
		r.fail(fmt.Errorf("read %s: range [%d, %d) outside the object's %d bytes", r.name, start, end, r.size))
		return make([]byte, max(end-start, 0))
	}
	if end == start {
		return []byte{}
	}
	first, last := int64(start)/pageSize, int64(end-1)/pageSize
	// Prometheus' index reader asks for whole sections again and again (the
	// postings offset table on every postings lookup): multi-page ranges are
	// cached assembled, and single-page ones are served without a copy.
	rangeKey := pageKey{r.name, -1 - int64(start), int64(end)}
	if first != last {
		if d, ok := r.cache.get(rangeKey); ok {
			return d
		}
	}
	pages := make([][]byte, last-first+1)
	var missing []int64
	for p := first; p <= last; p++ {
		if d, ok := r.cache.get(pageKey{object: r.name, page: p}); ok {
			pages[p-first] = d
		} else {
			missing = append(missing, p)
		}
	}
	for i := 0; i < len(missing); {
		j := i
		for j+1 < len(missing) && missing[j+1] == missing[j]+1 {
			j++
		}
		if err := r.fetch(missing[i], missing[j], pages[missing[i]-first:]); err != nil {
			r.fail(err)
			return make([]byte, end-start)
		}
		i = j + 1
	}
	if first == last {
		lo := int64(start) - first*pageSize
		return pages[0][lo : lo+int64(end-start) : lo+int64(end-start)]
	}
	out := make([]byte, 0, end-start)
	for i, d := range pages {
		p := first + int64(i)
		lo, hi := int64(0), int64(len(d))
		if p == first {
			lo = int64(start) - p*pageSize
		}
		if p == last {
			hi = int64(end) - p*pageSize
		}
		out = append(out, d[lo:hi]...)
	}
	r.cache.put(rangeKey, out)
	return out
}

// fetch reads pages [from, to] in one request into dst and the cache.
func (r *objectReader) fetch(from, to int64, dst [][]byte) error {
	off := from * pageSize
	length := min((to+1)*pageSize, r.size) - off
	rc, err := r.bkt.GetRange(r.ctx, r.name, off, length)
	if err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", r.name, off, off+length, err)
	}
	defer rc.Close()
	buf := make([]byte, length)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return fmt.Errorf("read %s bytes %d-%d: %w", r.name, off, off+length, err)
	}
	for p := from; p <= to; p++ {
		lo := (p - from) * pageSize
		hi := min(lo+pageSize, int64(len(buf)))
		page := buf[lo:hi:hi]
		dst[p-from] = page
		r.cache.put(pageKey{object: r.name, page: p}, page)
	}
	return nil
}
