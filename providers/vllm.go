package providers

import (
	"bytes"
	"math"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// The gauges vLLM reports its load with. vLLM 0.10 renamed gpu_cache_usage_perc to
// kv_cache_usage_perc; either is read.
const (
	vllmWaiting  = "vllm:num_requests_waiting"
	vllmRunning  = "vllm:num_requests_running"
	vllmGPUCache = "vllm:gpu_cache_usage_perc"
	vllmKVCache  = "vllm:kv_cache_usage_perc"
)

// waitingWeight is what a request in vLLM's waiting queue counts for against a running
// one: any waiting request means the server's batch is full, and a new request queues
// behind all of them instead of joining the batch.
const waitingWeight = 4

// staleReads is how many read periods a target's load read ranks it for; past that
// the target counts as unread (leastQueued).
const staleReads = 3

// vllmLoad is a target's load as its vLLM server last reported it.
type vllmLoad struct {
	// ok is set while the last read succeeded.
	ok atomic.Bool
	// queued is waiting*waitingWeight + running, as read.
	queued atomic.Int64
	// base is this gateway's in-flight count on the target at the read, so that the
	// score counts what was sent (or finished) since.
	base atomic.Int64
	// cache is the KV cache usage, 0..1, as float64 bits.
	cache atomic.Uint64
	// at is when the read was made, in Unix nanoseconds.
	at atomic.Int64
}

// score is the target's expected queue for a new request, and its KV cache usage,
// given the gateway's requests in flight on it; fresh is false, and the score
// meaningless, without a read made at or after since (Unix nanoseconds).
func (l *vllmLoad) score(inflight, since int64) (s int64, cache float64, fresh bool) {
	if !l.ok.Load() || l.at.Load() < since {
		return 0, 0, false
	}
	s = l.queued.Load() + inflight - l.base.Load()
	return max(s, 0), math.Float64frombits(l.cache.Load()), true
}

func (l *vllmLoad) set(g vllmGauges, inflight, at int64) {
	l.queued.Store(int64(g.waiting)*waitingWeight + int64(g.running))
	l.base.Store(inflight)
	l.cache.Store(math.Float64bits(g.cache))
	l.at.Store(at)
	l.ok.Store(true)
}

// vllmGauges are the load gauges of one read, summed over their series.
type vllmGauges struct {
	waiting, running, cache float64
}

var (
	strAccept     = []byte("Accept")
	strTextFormat = []byte("text/plain;version=0.0.4")
)

// readLoad reads a target's vLLM metrics once; buf is the caller's scratch buffer,
// returned for the next read.
func (b *Backend) readLoad(i int, buf []byte) []byte {
	p := &b.pool
	st := p.states[i]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethodBytes(strGet)
	req.SetRequestURI(p.loadURLs[i])
	req.Header.SetBytesKV(strAccept, strTextFormat)
	err := p.checkers[i].DoTimeout(req, resp, max(p.set.metricsInterval, time.Second))
	var g vllmGauges
	ok := false
	if err == nil && resp.StatusCode() == fasthttp.StatusOK {
		g, ok, buf = parseVLLM(resp.Body(), buf)
	}
	// Under p.mu: a read that ends after its backend was retired or closed is
	// dropped; the backend that replaced it reads the load now.
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.retired || p.closed:
	case ok:
		st.load.set(g, st.slots.n.Load(), p.now().UnixNano())
	default:
		st.load.ok.Store(false)
	}
	return buf
}

var (
	strVLLMPrefix = []byte("vllm:")
	vllmNames     = [...][]byte{[]byte(vllmWaiting), []byte(vllmRunning), []byte(vllmGPUCache), []byte(vllmKVCache)}
)

// parseVLLM reads vLLM's load gauges from a Prometheus text exposition. The queue
// gauges are summed over their series (one per model, or per engine with data
// parallelism), the cache usage is the highest. ok is false when the text does not
// parse or has neither queue gauge. buf is scratch space, returned for reuse.
//
// vLLM's page is tens of kilobytes, mostly histograms; only the lines that name one of
// the gauges go to the parser. Every line of those families names them, so the parser
// sees them whole; other lines that merely mention them parse on their own.
func parseVLLM(body, buf []byte) (vllmGauges, bool, []byte) {
	buf = buf[:0]
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if mentionsVLLMGauge(line) {
			buf = append(append(buf, line...), '\n')
		}
	}
	var g vllmGauges
	if len(buf) == 0 {
		return g, false, buf
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(buf))
	if err != nil {
		return g, false, buf
	}
	w, wok := sumGauge(fams[vllmWaiting])
	r, rok := sumGauge(fams[vllmRunning])
	if !wok && !rok {
		return g, false, buf
	}
	g.waiting, g.running = w, r
	for _, name := range [...]string{vllmGPUCache, vllmKVCache} {
		if mf := fams[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				if v, ok := sampleValue(mf.GetType(), m); ok {
					g.cache = max(g.cache, min(v, 1))
				}
			}
		}
	}
	return g, true, buf
}

func mentionsVLLMGauge(line []byte) bool {
	i := bytes.Index(line, strVLLMPrefix)
	if i < 0 {
		return false
	}
	for _, name := range vllmNames {
		if bytes.Contains(line[i:], name) {
			return true
		}
	}
	return false
}

// sumGauge sums a family's samples; ok is false without a usable one.
func sumGauge(mf *dto.MetricFamily) (float64, bool) {
	if mf == nil {
		return 0, false
	}
	sum, ok := 0.0, false
	for _, m := range mf.GetMetric() {
		if v, vok := sampleValue(mf.GetType(), m); vok {
			sum += v
			ok = true
		}
	}
	return min(sum, 1e9), ok
}

// sampleValue is a gauge, counter or untyped sample's value when it is a count: finite
// and not negative.
func sampleValue(t dto.MetricType, m *dto.Metric) (float64, bool) {
	var v float64
	switch t {
	case dto.MetricType_GAUGE:
		v = m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		v = m.GetUntyped().GetValue()
	case dto.MetricType_COUNTER:
		v = m.GetCounter().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false
	}
	return v, true
}
