package providers

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"
)

// Fair is what a backend's queue shares its freed slots by (queue.fair): with none,
// the requests waiting are served in arrival order; with one, each tenant (an API
// key, a user, an endpoint or a client address) is served in turn, in proportion to
// its weight, so that one tenant's flood waits behind its own requests and not in
// front of everyone's.
type Fair uint8

const (
	FairNone Fair = iota
	FairAPIKey
	FairUser
	FairEndpoint
	FairIP
)

// ParseFair reads queue.fair.
func ParseFair(s string) (Fair, bool) {
	switch s {
	case "":
		return FairNone, true
	case "api_key":
		return FairAPIKey, true
	case "user":
		return FairUser, true
	case "endpoint", "model":
		return FairEndpoint, true
	case "ip":
		return FairIP, true
	}
	return FairNone, false
}

// Tenants tells whose a call is, for a backend queue that shares its slots fairly. It
// is asked only when the call has to wait, on the call's goroutine; the bytes it
// returns are read before the wait begins and not kept.
type Tenants interface {
	Tenant(f Fair) []byte
}

// ipTenant is the address a queue.weights name gives under fair: ip, written as the
// gateway writes a tenant's (netip's form, an IPv4-mapped address as IPv4): an
// address, or a prefix (with limiter.ipv6_prefix, the tenant is its masked address).
func ipTenant(name string) (string, bool) {
	if a, err := netip.ParseAddr(name); err == nil {
		return a.Unmap().String(), true
	}
	if p, err := netip.ParsePrefix(name); err == nil {
		return p.Masked().Addr().Unmap().String(), true
	}
	return "", false
}

// MaxQueueWeight is the largest weight queue.weights gives a tenant.
const MaxQueueWeight = 1000

// fairScale is the virtual time one request of a tenant of weight 1 takes: a tenant of
// weight w advances its own clock by fairScale/w a request, so that while several
// wait, each is handed freed slots in proportion to its weight. 720720 is the least
// common multiple of 1 to 16: those weights (and 18, 20, 24, 30 … every divisor) take
// exact steps, so that their ties fall to arrival order, not to rounding. The clock moves
// only while requests wait: at a hundred thousand a second, always waiting, it would
// take eight years to go round.
const fairScale = 720720

var tenantSeed = maphash.MakeSeed()

// flow is one tenant's share of a queue while it has requests waiting (start-time
// fair queuing, one unit a request): last is the finish tag of its newest waiter.
// A tenant with none waiting has no flow; it comes back level with the queue's
// virtual time, neither owed nor owing.
type flow struct {
	key     uint64
	weight  uint64
	step    uint64
	last    uint64
	waiting int
}

// QueueOutcome is how a request that found every slot of a backend taken left its
// queue (QueueStats).
type QueueOutcome uint8

const (
	// QueueServed: it waited, then took a freed slot.
	QueueServed QueueOutcome = iota
	// QueueFull: the queue had no room for it (503 upstream_overloaded).
	QueueFull
	// QueuePushedOut: it waited, and a fair queue full of its tenant's requests gave its
	// place to another tenant's (503 upstream_overloaded).
	QueuePushedOut
	// QueueTimeout: queue.timeout, or the request's own deadline, ran out first.
	QueueTimeout
	// QueueClientGone: its client hung up while it waited.
	QueueClientGone
	// QueueStranded: every target of the backend left service while it waited.
	QueueStranded
	NumQueueOutcomes
)

var queueOutcomeNames = [NumQueueOutcomes]string{
	QueueServed: "served", QueueFull: "full", QueuePushedOut: "pushed_out",
	QueueTimeout: "timeout", QueueClientGone: "client_gone", QueueStranded: "stranded",
}

// String is the outcome's metric label.
func (o QueueOutcome) String() string { return queueOutcomeNames[o] }

// QueueWaitBounds are the upper bounds, in seconds, of the buckets QueueStats counts
// the waits of served requests in.
var QueueWaitBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// QueueStats is what a backend's queue reports: the requests waiting now, and since the
// queue was made (the backend's name first configured), how the requests that had to
// wait left it, and how long the served ones waited.
type QueueStats struct {
	Waiting int64
	// Tenants is the number of tenants with a request waiting, in a fair queue (0
	// without queue.fair).
	Tenants  int
	Outcomes [NumQueueOutcomes]uint64
	// WaitCounts are cumulative: WaitCounts[i] requests waited at most
	// QueueWaitBounds[i]; the last is them all.
	WaitCounts [len(QueueWaitBounds) + 1]uint64
	WaitSum    time.Duration
}

// queueCounters are a queue's QueueStats counters.
type queueCounters struct {
	outcomes [NumQueueOutcomes]atomic.Uint64
	waits    [len(QueueWaitBounds) + 1]atomic.Uint64
	waitSum  atomic.Int64
}

func (c *queueCounters) count(o QueueOutcome, waited time.Duration) {
	c.outcomes[o].Add(1)
	if o != QueueServed {
		return
	}
	s := waited.Seconds()
	i := 0
	for i < len(QueueWaitBounds) && s > QueueWaitBounds[i] {
		i++
	}
	c.waits[i].Add(1)
	c.waitSum.Add(int64(waited))
}

// QueueStats reports the backend's queue: that of every backend built under its name.
func (b *Backend) QueueStats() QueueStats {
	q := b.pool.queue
	var s QueueStats
	q.mu.Lock()
	s.Waiting = int64(len(q.list))
	if b.pool.set.fair != FairNone {
		// The requests waiting in arrival order from before a reload made the queue
		// fair are one tenant (pushOut).
		s.Tenants = len(q.flows)
		if q.fifo.waiting > 0 {
			s.Tenants++
		}
	}
	q.mu.Unlock()
	c := &q.counters
	for i := range s.Outcomes {
		s.Outcomes[i] = c.outcomes[i].Load()
	}
	var n uint64
	for i := range s.WaitCounts {
		n += c.waits[i].Load()
		s.WaitCounts[i] = n
	}
	s.WaitSum = time.Duration(c.waitSum.Load())
	return s
}

// InFlight is the number of requests in flight on each of the backend's targets, in
// config order: those of every backend built under its name.
func (b *Backend) InFlight(dst []int64) []int64 {
	for _, st := range b.pool.states {
		dst = append(dst, st.slots.load())
	}
	return dst
}

// MaxConcurrency is the cap on each target's requests in flight, 0 for none.
func (b *Backend) MaxConcurrency() int64 { return b.pool.limit() }

// flowOf is the flow of the tenant who, under fairness f, with weights w: the queue's one
// arrival-order flow without fairness. Under q.mu.
func (q *queue) flowOf(f Fair, weights map[string]int, who Tenants) *flow {
	if f == FairNone {
		q.fifo.weight, q.fifo.step = 1, fairScale
		return &q.fifo
	}
	var id []byte
	if who != nil {
		id = who.Tenant(f)
	}
	weight := 1
	if v, ok := weights[string(id)]; ok {
		weight = v
	}
	key := maphash.Bytes(tenantSeed, id)
	if fl := q.flows[key]; fl != nil {
		// The weight in force now: a reload that changed it applies to the
		// requests that come after it.
		fl.weight, fl.step = uint64(weight), uint64(fairScale/weight)
		return fl
	}
	var fl *flow
	if n := len(q.spare); n > 0 {
		fl, q.spare = q.spare[n-1], q.spare[:n-1]
	} else {
		fl = new(flow)
	}
	*fl = flow{key: key, weight: uint64(weight), step: uint64(fairScale / weight), last: q.vtime}
	if q.flows == nil {
		q.flows = make(map[uint64]*flow)
	}
	q.flows[key] = fl
	return fl
}

// enqueue puts w in line for flow fl: after every waiter whose finish tag is not later
// than its own, or, when front is set (a waiter put back), ahead of them all. Under
// q.mu.
func (q *queue) enqueue(w *waiter, fl *flow, front bool) {
	w.flow = fl
	fl.waiting++
	if front {
		w.start = q.vtime
		if len(q.list) > 0 {
			w.start = min(w.start, q.list[0].tag)
		}
		w.tag = w.start
		q.list = append(q.list, nil)
		copy(q.list[1:], q.list)
		q.list[0] = w
		return
	}
	w.start = max(q.vtime, fl.last)
	w.tag = w.start + fl.step
	fl.last = w.tag
	k := len(q.list)
	for k > 0 && q.list[k-1].tag > w.tag {
		k--
	}
	q.list = append(q.list, nil)
	copy(q.list[k+1:], q.list[k:])
	q.list[k] = w
}

// unlist takes the k-th waiter out of line; served is set when it leaves with a slot,
// which moves the queue's virtual time on to its start tag. Under q.mu.
func (q *queue) unlist(k int, served bool) *waiter {
	w := q.list[k]
	q.list = append(q.list[:k], q.list[k+1:]...)
	q.list[len(q.list):cap(q.list)][0] = nil
	q.waiting.Add(-1)
	fl := w.flow
	w.flow = nil
	if served {
		q.vtime = max(q.vtime, w.start)
	} else if fl.last == w.tag {
		// Its newest waiter gave up its place: the tenant's clock goes back.
		fl.last = w.start
	}
	fl.waiting--
	q.dropIdle(fl)
	return w
}

// dropIdle forgets the flow of a tenant with no request waiting, for reuse. Under q.mu.
func (q *queue) dropIdle(fl *flow) {
	if fl.waiting == 0 && fl != &q.fifo {
		delete(q.flows, fl.key)
		q.spare = append(q.spare, fl)
	}
}

// pushOut makes room in a full fair queue for a request of flow fl: the newest waiter of
// the tenant with the most waiting for its weight gives up its place, when that tenant
// would still have at least as many waiting for its weight as fl with the newcomer.
// It reports whether it made room. Under q.mu.
func (q *queue) pushOut(fl *flow) bool {
	// Waiting for its weight, compared exactly: a/wa > b/wb as a*wb > b*wa.
	var most *flow
	consider := func(o *flow) {
		if o != fl && o.waiting > 0 && (most == nil || uint64(o.waiting)*most.weight > uint64(most.waiting)*o.weight) {
			most = o
		}
	}
	for _, o := range q.flows {
		consider(o)
	}
	// The waiters queued in arrival order before a reload made the queue fair are one
	// tenant of weight 1.
	consider(&q.fifo)
	if most == nil || most.waiting == 0 || uint64(fl.waiting+1)*most.weight > uint64(most.waiting-1)*fl.weight {
		return false
	}
	for k := len(q.list) - 1; k >= 0; k-- {
		if q.list[k].flow == most {
			w := q.unlist(k, false)
			w.queued, w.i = false, pushedOut
			w.ch <- struct{}{}
			return true
		}
	}
	return false
}

// pushedOut is the target a waiter pushed out of a fair queue is handed.
const pushedOut = -2
