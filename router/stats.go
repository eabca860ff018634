package router

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is log-linear over microseconds: exact below 64 µs,
// then 32 buckets per power of two, so a bucket is at most 1/32 (about 3 %)
// wide and its midpoint is within 1.6 % of any value in it, while every bucket
// stays a plain atomic counter that Observe can bump without a lock. A gate
// compares its bound with the lower end of the p99's bucket (quantileFloor), so
// it never reports a breach that did not happen; a p99 at most 3 % above the
// gate can go unseen.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	// histBuckets reaches 2^34 µs (about 4.8 hours); slower values land in
	// the last bucket.
	histBuckets = (34-histSubBits)*histSub + histSub
)

func histIndex(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	us := uint64(d / time.Microsecond)
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1
	i := (shift+1)*histSub + int((us>>uint(shift))&(histSub-1))
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histBounds returns the bucket's lower and upper bound in microseconds.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i) + 1
	}
	shift := uint(i/histSub - 1)
	low := uint64(i % histSub)
	return (histSub + low) << shift, (histSub + low + 1) << shift
}

// histCounts is a plain copy of a histogram, for windows and deltas.
type histCounts [histBuckets]uint64

func (h *histCounts) total() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// quantile returns the midpoint of the bucket holding the q-th value, or 0
// for an empty histogram.
func (h *histCounts) quantile(q float64) time.Duration {
	i := h.quantileBucket(q)
	if i < 0 {
		return 0
	}
	lo, hi := histBounds(i)
	if hi-lo == 1 {
		return time.Duration(lo) * time.Microsecond
	}
	return time.Duration((lo+hi)/2) * time.Microsecond
}

// quantileFloor returns the lower bound of the bucket holding the q-th value:
// the q-th value is at least this. It is 0 for an empty histogram.
func (h *histCounts) quantileFloor(q float64) time.Duration {
	i := h.quantileBucket(q)
	if i < 0 {
		return 0
	}
	lo, _ := histBounds(i)
	return time.Duration(lo) * time.Microsecond
}

// quantileBucket returns the index of the bucket holding the q-th value, or -1
// for an empty histogram.
func (h *histCounts) quantileBucket(q float64) int {
	n := h.total()
	if n == 0 {
		return -1
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h {
		cum += c
		if cum >= rank {
			return i
		}
	}
	return -1
}

// routeStats are one route's counters since its state was created. They
// only grow; windows are differences of two copies. There is no request
// counter: the latency histogram counts every attempt that went upstream and
// unserved those that could not (each a failure), and one contended atomic
// less per attempt is worth summing 960 buckets on the rare read.
type routeStats struct {
	errors   atomic.Uint64
	unserved atomic.Uint64
	// before and beforeErrors count the attempts of requests that arrived before
	// the canary's window opened (Observe): the route's totals count them, no
	// window does.
	before, beforeErrors atomic.Uint64
	lat                  [histBuckets]atomic.Uint64
	ttft                 [histBuckets]atomic.Uint64
	// The pad keeps the next route's hot counters off this one's last
	// cache line.
	_ [64]byte
}

func (s *routeStats) observe(latency, ttft time.Duration, failed bool) {
	// Latency first: copyFrom reads errors before the histogram, so a copy
	// never holds more errors than attempts.
	s.lat[histIndex(latency)].Add(1)
	if failed {
		s.errors.Add(1)
	}
	if ttft > 0 {
		s.ttft[histIndex(ttft)].Add(1)
	}
}

// observeBefore counts an attempt in the route's totals alone (routeStats.before).
func (s *routeStats) observeBefore(failed bool) {
	s.before.Add(1)
	if failed {
		s.beforeErrors.Add(1)
	}
}

// refuse counts an attempt the route's backend could not send upstream because
// none of its targets was in service: a failed attempt with no latency.
func (s *routeStats) refuse() {
	s.unserved.Add(1)
	s.errors.Add(1)
}

// window is a route's traffic over some span: a difference of two copies of
// its counters, or the sum of every replica's counts read from Redis.
type window struct {
	requests, errors uint64
	lat, ttft        histCounts
}

// copyFrom takes a copy of s. The counters are read one by one, so a copy
// taken under traffic may be a few requests out of step between fields;
// the gates compare ratios over many requests and do not notice.
func (w *window) copyFrom(s *routeStats) {
	w.errors = s.errors.Load()
	w.requests = s.unserved.Load()
	for i := range s.lat {
		w.lat[i] = s.lat[i].Load()
		w.ttft[i] = s.ttft[i].Load()
		w.requests += w.lat[i]
	}
}

// requests is the route's total of attempts, those that count toward no window
// included.
func (s *routeStats) requests() uint64 {
	n := s.unserved.Load() + s.before.Load()
	for i := range s.lat {
		n += s.lat[i].Load()
	}
	return n
}

// sub sets w to a - b, clamping at zero.
func (w *window) sub(a, b *window) {
	w.requests = sat(a.requests, b.requests)
	w.errors = sat(a.errors, b.errors)
	for i := range a.lat {
		w.lat[i] = sat(a.lat[i], b.lat[i])
		w.ttft[i] = sat(a.ttft[i], b.ttft[i])
	}
}

// add adds o to w.
func (w *window) add(o *window) {
	w.requests += o.requests
	w.errors += o.errors
	for i := range w.lat {
		w.lat[i] += o.lat[i]
		w.ttft[i] += o.ttft[i]
	}
}

func sat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func (w *window) errorRate() float64 {
	if w.requests == 0 {
		return 0
	}
	return float64(w.errors) / float64(w.requests)
}

// WindowStats summarises a canary's traffic since its current step began.
type WindowStats struct {
	Requests  uint64        `json:"requests"`
	Errors    uint64        `json:"errors"`
	ErrorRate float64       `json:"error_rate"`
	P99       time.Duration `json:"p99_ns"`
	TTFTP99   time.Duration `json:"ttft_p99_ns"`
}

func (w *window) summary() WindowStats {
	return WindowStats{
		Requests:  w.requests,
		Errors:    w.errors,
		ErrorRate: w.errorRate(),
		P99:       w.lat.quantile(0.99),
		TTFTP99:   w.ttft.quantile(0.99),
	}
}
