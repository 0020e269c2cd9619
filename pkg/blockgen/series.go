package blockgen

import (
	"fmt"
	"math"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
)

type kind uint8

const (
	kindCounter   kind = iota
	kindGauge          // rounded to hundredths
	kindBytes          // a gauge of bytes, in whole KiB as /proc/meminfo has them
	kindBucket         // classic histogram _bucket series
	kindHistSum        // classic histogram _sum
	kindHistCount      // classic histogram _count
	kindNative         // native (integer) histogram
	kindCPUIdle        // node_cpu_seconds_total{mode="idle"}: what the other modes leave
)

// valueStepMs is the time unit of the value functions: rates are per 15s
// whatever the scrape interval, so a 60s scrape sees the same per-second
// rates as a 15s one.
const valueStepMs = 15000

// seriesDef describes one series and how its values are made. A million
// series keep a million of these in memory, so it is kept small: the
// series of a histogram share one params.
type seriesDef struct {
	lset  labels.Labels
	p     *params // value function parameters
	scale float64 // counters and gauges: unit multiplier
	// Histograms: each bucket's share of the observations (one array per
	// histogram, shared by its series).
	shares []float64
	// kindCPUIdle: the cpu's other modes.
	others *[3]params
	target int32 // scrape target: sets the scrape phase
	kind   kind
	// Classic _bucket: the index of its le bound (len(shares)-1 for +Inf
	// and _count).
	le uint8
}

// params of a value function, derived from a hash so they are deterministic.
type params struct {
	rate       float64 // counter increase per 15s step (in units)
	omega      float64 // angular frequency of the wobble, per step
	phase      float64
	cosPhase   float64 // cos(phase), constant per series
	resetEvery float64 // steps between counter resets
	resetPhase float64
	base, amp  float64 // gauges
	noiseSeed  uint64
}

func newParams(h uint64) *params {
	u := func(i uint64) float64 { return float64(splitmix(h+i)>>11) / (1 << 53) }
	phase := 2 * math.Pi * u(3)
	return &params{
		rate:       1 + 40*u(1),
		omega:      2 * math.Pi / (120 + 2000*u(2)),
		phase:      phase,
		cosPhase:   math.Cos(phase),
		resetEvery: 3000 + 20000*u(4), // about 12h to 4 days at 15s
		resetPhase: 23000 * u(5),
		base:       0.2 + 0.6*u(6),
		amp:        0.05 + 0.2*u(7),
		noiseSeed:  splitmix(h + 8),
	}
}

// counterAt is a counter in whole units at x (in 15s steps since the
// epoch, fractional as scrapes land at any millisecond). It increases by
// between half and one and a half times rate per step and drops to zero at
// resets.
func (p *params) counterAt(x float64) float64 {
	return p.counterSince(p.sinceReset(x))
}

// sinceReset is how many steps before x the counter last reset.
func (p *params) sinceReset(x float64) float64 {
	start := math.Floor((x+p.resetPhase)/p.resetEvery)*p.resetEvery - p.resetPhase
	return x - start
}

// counterSince is the counter xr steps after a reset.
func (p *params) counterSince(xr float64) float64 {
	w := p.rate / p.omega
	return math.Floor(p.rate*xr + 0.5*w*(p.cosPhase-math.Cos(p.omega*xr+p.phase)))
}

// cpuStep is a cpu's time per 15s step in hundredths of a second.
const cpuStep = 1500

// idleAt is the idle counter of a cpu whose other modes are d.others: the
// rest of its time, so the modes of a cpu add up to exactly one second per
// second. The others use at most 1.5*400*1.3 of every 1500, so idle always
// grows.
func (d *seriesDef) idleAt(x float64) float64 {
	xr := d.p.sinceReset(x)
	v := math.Floor(cpuStep * xr)
	for i := range d.others {
		v -= d.others[i].counterSince(xr)
	}
	return v
}

// gaugeAt is a gauge between 0 and 1 at x (in steps), with a little noise
// that differs per scrape k.
func (p *params) gaugeAt(x float64, k int64) float64 {
	noise := float64(int64(splitmix(p.noiseSeed^uint64(k))>>40)-(1<<23)) / (1 << 23)
	return p.base + p.amp*math.Sin(p.omega*x+p.phase) + 0.02*noise
}

// splitmix is SplitMix64: a fast, well-mixed hash for deterministic values.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Classic histogram buckets of http_request_duration_seconds.
var bucketBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// bucketCDF is the share of requests at or below bound, for a latency
// distribution whose median is median seconds.
func bucketCDF(bound, median float64) float64 {
	// Log-logistic distribution: simple, heavy-tailed like real latencies.
	return 1 / (1 + math.Pow(median/bound, 2.5))
}

// Native histogram layout: schema 0 (powers of two), 12 buckets from 2^-9 s.
const (
	nativeSchema  = 0
	nativeOffset  = -9
	nativeBuckets = 12
)

// catalog returns the sorted series of cfg's targets.
func catalog(cfg *Config) []seriesDef {
	defs := make([]seriesDef, 0, cfg.SeriesCount())
	seed := uint64(cfg.Seed)
	// Counters reset when their process restarts: all series of a target's
	// job at once.
	var restart *params
	add := func(d seriesDef) {
		d.p.resetEvery, d.p.resetPhase = restart.resetEvery, restart.resetPhase
		defs = append(defs, d)
	}
	for t := 0; t < cfg.Targets; t++ {
		host := fmt.Sprintf("host-%05d", t)
		node := host + ":9100"
		th := splitmix(seed ^ hashString(node))
		restart = newParams(th ^ 0x5eed)
		for cpu := 0; cpu < 2; cpu++ {
			busy := 0.5 + newParams(th+uint64(cpu*16+5)*97).base // 0.7 to 1.3
			others := new([3]params)
			for mi, mode := range []string{"iowait", "system", "user"} {
				p := newParams(th + uint64(cpu*16+mi+1)*97)
				// Hundredths of a second per 15s step.
				p.rate = []float64{20, 120, 260}[mi] * busy
				p.resetEvery, p.resetPhase = restart.resetEvery, restart.resetPhase
				others[mi] = *p
				add(seriesDef{kind: kindCounter, target: int32(t), p: p, scale: 0.01, lset: labels.FromStrings(
					"__name__", "node_cpu_seconds_total", "cpu", fmt.Sprint(cpu), "instance", node, "job", "node", "mode", mode)})
			}
			add(seriesDef{kind: kindCPUIdle, target: int32(t), p: newParams(th + uint64(cpu*16)*97), scale: 0.01, others: others, lset: labels.FromStrings(
				"__name__", "node_cpu_seconds_total", "cpu", fmt.Sprint(cpu), "instance", node, "job", "node", "mode", "idle")})
		}
		add(seriesDef{kind: kindBytes, target: int32(t), p: newParams(th + 1001), scale: 16e9, lset: labels.FromStrings(
			"__name__", "node_memory_MemAvailable_bytes", "instance", node, "job", "node")})
		add(seriesDef{kind: kindGauge, target: int32(t), p: newParams(th + 1002), scale: 4, lset: labels.FromStrings(
			"__name__", "node_load1", "instance", node, "job", "node")})
		pn := newParams(th + 1003)
		pn.rate *= 20000
		add(seriesDef{kind: kindCounter, target: int32(t), p: pn, scale: 1, lset: labels.FromStrings(
			"__name__", "node_network_receive_bytes_total", "device", "eth0", "instance", node, "job", "node")})

		api := host + ":8080"
		ah := splitmix(seed ^ hashString(api))
		restart = newParams(ah ^ 0x5eed)
		for hi, handler := range []string{"/api/v1/query", "/metrics"} {
			for mi, method := range []string{"GET", "POST"} {
				for ci, code := range []string{"200", "500"} {
					p := newParams(ah + uint64(hi*100+mi*10+ci))
					if code == "500" {
						p.rate *= 0.01
					}
					add(seriesDef{kind: kindCounter, target: int32(t), p: p, scale: 1, lset: labels.FromStrings(
						"__name__", "http_requests_total", "code", code, "handler", handler, "instance", api, "job", "api", "method", method)})
				}
			}
			hp := newParams(ah + uint64(hi+1)*7919)
			median := 0.02 + 0.3*hp.base
			shares := classicShares(median)
			for i, le := range bucketBounds {
				add(seriesDef{kind: kindBucket, target: int32(t), p: hp, shares: shares, le: uint8(i), lset: labels.FromStrings(
					"__name__", "http_request_duration_seconds_bucket", "handler", handler, "instance", api, "job", "api", "le", formatLe(le))})
			}
			add(seriesDef{kind: kindBucket, target: int32(t), p: hp, shares: shares, le: uint8(len(bucketBounds)), lset: labels.FromStrings(
				"__name__", "http_request_duration_seconds_bucket", "handler", handler, "instance", api, "job", "api", "le", "+Inf")})
			add(seriesDef{kind: kindHistSum, target: int32(t), p: hp, scale: median * 1.3, lset: labels.FromStrings(
				"__name__", "http_request_duration_seconds_sum", "handler", handler, "instance", api, "job", "api")})
			add(seriesDef{kind: kindHistCount, target: int32(t), p: hp, shares: shares, le: uint8(len(bucketBounds)), lset: labels.FromStrings(
				"__name__", "http_request_duration_seconds_count", "handler", handler, "instance", api, "job", "api")})
			if cfg.NativeHistograms {
				add(seriesDef{kind: kindNative, target: int32(t), p: hp, scale: median, shares: nativeShares(median), lset: labels.FromStrings(
					"__name__", "http_request_duration_native_seconds", "handler", handler, "instance", api, "job", "api")})
			}
		}
	}
	sort.Slice(defs, func(i, j int) bool { return labels.Compare(defs[i].lset, defs[j].lset) < 0 })
	return defs
}

func formatLe(v float64) string {
	return fmt.Sprintf("%g", v)
}

// SeriesPerTarget is how many series one target has.
func SeriesPerTarget(nativeHistograms bool) int {
	n := 8 + 3 + 8 + 2*(len(bucketBounds)+1+2)
	if nativeHistograms {
		n += 2
	}
	return n
}

// floatAt returns the value of a float series at x (in steps) for scrape k.
func (d *seriesDef) floatAt(x float64, k int64) float64 {
	switch d.kind {
	case kindCounter:
		return d.p.counterAt(x) * d.scale
	case kindCPUIdle:
		return d.idleAt(x) * d.scale
	case kindGauge:
		return math.Round(d.p.gaugeAt(x, k)*d.scale*100) / 100
	case kindBytes:
		return math.Round(d.p.gaugeAt(x, k)*d.scale/1024) * 1024
	case kindHistSum:
		return math.Round(d.p.counterAt(x)*d.scale*1e6) / 1e6
	case kindBucket, kindHistCount:
		return d.cumulativeCount(d.p.counterAt(x))
	}
	panic("blockgen: not a float series")
}

// histogramAt fills h with the native histogram at x (in steps).
func (d *seriesDef) histogramAt(x float64, h *histogram.Histogram) {
	count := d.p.counterAt(x)
	h.Schema = nativeSchema
	h.ZeroThreshold = 2.938735877055719e-39 // 2^-128, client_golang's default
	h.ZeroCount = 0
	h.Sum = math.Round(count*d.scale*1.3*1e6) / 1e6
	if len(h.PositiveSpans) != 1 {
		h.PositiveSpans = []histogram.Span{{Offset: nativeOffset, Length: nativeBuckets}}
	}
	if cap(h.PositiveBuckets) < nativeBuckets {
		h.PositiveBuckets = make([]int64, nativeBuckets)
	}
	h.PositiveBuckets = h.PositiveBuckets[:nativeBuckets]
	// Every bucket is a counter of its own, its share of the requests
	// rounded down, so no bucket ever decreases between resets (a decrease
	// would read as a counter reset); Count is their total.
	var total, prev int64
	for i, share := range d.shares {
		n := int64(count * share)
		h.PositiveBuckets[i] = n - prev // delta encoded
		prev = n
		total += n
	}
	h.Count = uint64(total)
	h.CounterResetHint = histogram.UnknownCounterReset
}

// cumulativeCount is a classic histogram's count at or below bucket d.le
// after count requests. Each bucket counts its share of the requests,
// rounded down, and the cumulative count adds them up, so between two
// scrapes a bucket never grows more than the ones above it, as when a
// client library counts each observation in all buckets it fits. Rounding
// the cumulative share itself would break that and make rate()s of the
// buckets non-monotonic.
func (d *seriesDef) cumulativeCount(count float64) float64 {
	var cum float64
	for _, share := range d.shares[:int(d.le)+1] {
		cum += math.Floor(count * share)
	}
	return cum
}

// classicShares is the share of requests in each classic histogram bucket,
// the last one being everything above the highest bound.
func classicShares(median float64) []float64 {
	return sharesOf(len(bucketBounds)+1, func(i int) float64 { return bucketBounds[i] }, median)
}

// nativeShares is the share of requests in each native histogram bucket,
// bucket i holding (2^(offset+i-1), 2^(offset+i)] seconds and the last one
// everything above too.
func nativeShares(median float64) []float64 {
	return sharesOf(nativeBuckets, func(i int) float64 { return math.Ldexp(1, nativeOffset+i) }, median)
}

// sharesOf splits requests into n buckets with upper bounds bound(i), the
// last bucket open-ended.
func sharesOf(n int, bound func(int) float64, median float64) []float64 {
	s := make([]float64, n)
	prev := 0.0
	for i := range s {
		cdf := 1.0
		if i < n-1 {
			cdf = bucketCDF(bound(i), median)
		}
		s[i] = cdf - prev
		prev = cdf
	}
	return s
}
