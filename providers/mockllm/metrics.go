package mockllm

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

var strTextPlain = []byte("text/plain; version=0.0.4; charset=utf-8")

// writeMetrics answers GET /metrics in Prometheus' text format with the vLLM series a
// load-aware balancer reads, and mockllm_requests_total for tests that check how
// load was spread. As vLLM V1 (v1/metrics/loggers.py), the vllm: series are labelled
// model_name and engine (the engine index; mockllm is one engine, "0").
func (s *Server) writeMetrics(ctx *fasthttp.RequestCtx) {
	b := make([]byte, 0, 2048)
	label := appendLabelValue(nil, s.opts.Model)
	running := float64(s.running.Load())
	waiting := float64(s.waiting.Load())
	usage := min(running/float64(s.opts.MaxNumSeqs), 1)

	b = appendGauge(b, "vllm:num_requests_running", "Number of requests in model execution batches.", label, running)
	b = appendGauge(b, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", label, waiting)
	b = appendGauge(b, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", label, usage)
	b = appendGauge(b, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", label, usage)
	b = appendCounter(b, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", label, s.promptTok.Load())
	b = appendCounter(b, "vllm:generation_tokens_total", "Number of generation tokens processed.", label, s.genTok.Load())

	b = appendHelpType(b, "vllm:request_success_total", "Count of successfully processed requests.", "counter")
	for i, reason := range [2]string{"stop", "length"} {
		b = append(b, `vllm:request_success_total{model_name="`...)
		b = append(b, label...)
		b = append(b, `",engine="0",finished_reason="`...)
		b = append(b, reason...)
		b = append(b, `"} `...)
		b = strconv.AppendFloat(b, float64(s.finished[i].Load()), 'f', 1, 64)
		b = append(b, '\n')
	}

	b = appendHelpType(b, "mockllm_requests_total", "Requests received, by route.", "counter")
	for r := route(0); r < numRoutes; r++ {
		b = append(b, `mockllm_requests_total{route="`...)
		b = append(b, routeNames[r]...)
		b = append(b, `"} `...)
		b = strconv.AppendInt(b, s.routes[r].Load(), 10)
		b = append(b, '\n')
	}
	b = appendCounter(b, "mockllm_injected_errors_total", "Errors answered on purpose (error rate, x-mock-status).", nil, s.injected.Load())
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
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

func appendCounter(b []byte, name, help string, label []byte, v int64) []byte {
	b = appendHelpType(b, name, help, "counter")
	b = appendSample(b, name, label)
	b = strconv.AppendFloat(b, float64(v), 'f', 1, 64)
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
