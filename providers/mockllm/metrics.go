package mockllm

import (
	"bytes"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

var strTextPlain = []byte("text/plain; version=0.0.4; charset=utf-8")

// writeMetrics answers GET /metrics in Prometheus' text format with the vLLM series a
// load-aware balancer or a latency dashboard reads, and mockllm_requests_total for
// tests that check how load was spread. As vLLM V1 (v1/metrics/loggers.py), the vllm: series are labelled
// model_name and engine (the engine index; mockllm is one engine, "0").
func (s *Server) writeMetrics(ctx *fasthttp.RequestCtx) {
	b := make([]byte, 0, 2048)
	label := appendLabelValue(nil, s.opts.Model)
	running := float64(s.running.Load())
	waiting := float64(s.waiting.Load())
	usage := min(running/float64(s.opts.MaxNumSeqs), 1)

	b = appendGauge(b, "vllm:num_requests_running", "Number of requests in model execution batches.", label, running)
	b = appendGauge(b, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", label, waiting)
	b = appendGauge(b, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", label, usage)
	b = appendCounter(b, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", label, s.promptTok.Load())
	b = appendCounter(b, "vllm:generation_tokens_total", "Number of generation tokens processed.", label, s.genTok.Load())

	b = appendHelpType(b, "vllm:request_success_total", "Count of successfully processed requests.", "counter")
	for i, reason := range [3]string{"stop", "length", "abort"} {
		b = append(b, `vllm:request_success_total{model_name="`...)
		b = append(b, label...)
		b = append(b, `",engine="0",finished_reason="`...)
		b = append(b, reason...)
		b = append(b, `"} `...)
		b = appendPromFloat(b, float64(s.finished[i].Load()))
		b = append(b, '\n')
	}

	b = appendHistogram(b, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", label, &s.ttftHist)
	b = appendHistogram(b, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", label, &s.itlHist)
	// vLLM 0.11 still exports the older name of the same observations (deprecated;
	// hidden from 0.12), which dashboards built for earlier versions read.
	b = appendHistogram(b, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds. DEPRECATED: use vllm:inter_token_latency_seconds.", label, &s.itlHist)
	b = appendHistogram(b, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", label, &s.e2eHist)

	b = appendHelpType(b, "mockllm_requests_total", "Requests received, by route.", "counter")
	for r := route(0); r < numRoutes; r++ {
		b = append(b, `mockllm_requests_total{route="`...)
		b = append(b, routeNames[r]...)
		b = append(b, `"} `...)
		b = appendPromFloat(b, float64(s.routes[r].Load()))
		b = append(b, '\n')
	}
	b = appendCounter(b, "mockllm_injected_errors_total", "Errors answered on purpose (error rate, x-mock-status, x-mock-error-after).", nil, s.injected.Load())
	b = appendCounter(b, "mockllm_cut_streams_total", "Streams closed early on purpose.", nil, s.cut.Load())

	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.Header.SetContentTypeBytes(strTextPlain)
	ctx.SetBody(b)
}

func appendHelpType(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func appendSample(b []byte, name string, label []byte) []byte {
	b = append(b, name...)
	if label != nil {
		b = append(b, `{model_name="`...)
		b = append(b, label...)
		b = append(b, `",engine="0"}`...)
	}
	return append(b, ' ')
}

func appendGauge(b []byte, name, help string, label []byte, v float64) []byte {
	b = appendHelpType(b, name, help, "gauge")
	b = appendSample(b, name, label)
	b = appendPromFloat(b, v)
	return append(b, '\n')
}

func appendCounter(b []byte, name, help string, label []byte, v int64) []byte {
	b = appendHelpType(b, name, help, "counter")
	b = appendSample(b, name, label)
	b = appendPromFloat(b, float64(v))
	return append(b, '\n')
}

// appendLabelValue escapes a label value as the text format requires.
func appendLabelValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// The bucket bounds, in seconds, of vLLM V1's histograms (v1/metrics/loggers.py).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	e2eBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
		40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

// histogram is a Prometheus histogram observed without locks: one counter per bucket
// (not cumulative; the last is +Inf) and the sum in nanoseconds.
type histogram struct {
	bounds []float64
	limits []time.Duration // bounds, for observe
	counts []atomic.Uint64
	sumNs  atomic.Int64
}

func (h *histogram) init(bounds []float64) {
	h.bounds = bounds
	h.counts = make([]atomic.Uint64, len(bounds)+1)
	for _, b := range bounds {
		h.limits = append(h.limits, time.Duration(math.Round(b*float64(time.Second))))
	}
}

// observe records n observations of d; a negative d (a clock that did not move
// forward) counts as 0.
func (h *histogram) observe(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	d = max(d, 0)
	// A linear scan: observations cluster in the first buckets.
	i := 0
	for i < len(h.limits) && d > h.limits[i] {
		i++
	}
	h.counts[i].Add(uint64(n))
	h.sumNs.Add(int64(d) * int64(n))
}

// appendHistogram writes h as prometheus_client does: cumulative buckets with le
// last among the labels, then _count and _sum.
func appendHistogram(b []byte, name, help string, label []byte, h *histogram) []byte {
	b = appendHelpType(b, name, help, "histogram")
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		b = append(b, name...)
		b = append(b, `_bucket{model_name="`...)
		b = append(b, label...)
		b = append(b, `",engine="0",le="`...)
		if i < len(h.bounds) {
			b = appendPromFloat(b, h.bounds[i])
		} else {
			b = append(b, "+Inf"...)
		}
		b = append(b, `"} `...)
		b = appendPromFloat(b, float64(cum))
		b = append(b, '\n')
	}
	b = appendSample(b, name+"_count", label)
	b = appendPromFloat(b, float64(cum))
	b = append(b, '\n')
	b = appendSample(b, name+"_sum", label)
	b = appendPromFloat(b, time.Duration(h.sumNs.Load()).Seconds())
	return append(b, '\n')
}

// appendPyFloat appends f as Python's repr (and so json.dumps) does for finite
// values: the shortest digits, with ".0" on a whole number, in exponent form below
// 1e-4 and from 1e16 on (1e-05, 1.5e+16), where Go's exponent has as many digits.
func appendPyFloat(b []byte, f float64) []byte {
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) && !math.IsInf(f, 0) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	if !bytes.ContainsAny(b[start:], ".nN") {
		b = append(b, ".0"...)
	}
	return b
}

// appendPromFloat appends a sample value or le bound as prometheus_client writes one
// (utils.floatToGoString): +Inf, -Inf and NaN by those names, else Python's repr,
// except that a positive value with more than six digits before the point goes in
// Go's exponent form, the mantissa's trailing zeros dropped (1234567.0 is
// 1.234567e+06, 10000000.0 is 1e+07).
func appendPromFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	}
	start := len(b)
	b = appendPyFloat(b, f)
	s := b[start:]
	dot := bytes.IndexByte(s, '.')
	if f <= 0 || dot <= 6 {
		return b
	}
	var m [32]byte
	mant := append(append(append(append(m[:0], s[0]), '.'), s[1:dot]...), s[dot+1:]...)
	mant = bytes.TrimRight(mant, "0.")
	b = append(b[:start], mant...)
	b = append(b, "e+0"...)
	return strconv.AppendInt(b, int64(dot-1), 10)
}
