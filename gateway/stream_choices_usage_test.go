package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
)

// TestChoicesUsageOnChoiceChunkCounted: with n=2 and no continuous_usage_stats (the
// gateway forcing include_usage turns them off; a client may ask for include_usage
// alone), no chunk holds a per-choice usage: the usage an upstream puts on the last
// choice chunk (Gemini's OpenAI endpoint, older llama.cpp servers) is the request's,
// and counts in the access log, tollgate_tokens_total and tollgate_cost_usd_total.
// README: only "with n > 1 and vLLM's continuous_usage_stats" is a choice chunk's usage
// its own choice's.
func TestChoicesUsageOnChoiceChunkCounted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, options string }{
		{"usage forced by the gateway", ``},
		{"include_usage without continuous stats", `"stream_options":{"include_usage":true},`},
		{"continuous stats turned off", `"stream_options":{"include_usage":true,"continuous_usage_stats":false},`},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := usageOnChoiceUpstream(t, `{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11}`,
				`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}`,
				`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":1,"delta":{"role":"assistant","content":"Yo"},"finish_reason":"stop"}]}`,
				`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`)
			g := startGateway(t, usageConfig(up, ""))
			resp, body := usagePost(t, g, "n2-choice", `{"model":"chat","user":"u1","n":2,"stream":true,`+c.options+`"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			line := usageAccess(t, g, "n2-choice")
			fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			in, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["type"] == "input" })
			out, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["type"] == "output" })
			cost, _ := promtest.Sum(fams, "tollgate_cost_usd_total", nil)
			const want = (7*1000 + 4*1) / 1e6
			if afNum(line, "input_tokens") != 7 || afNum(line, "output_tokens") != 4 || in != 7 || out != 4 || !closeTo(cost, want) {
				t.Errorf("upstream reported usage 7 in / 4 out for the n=2 stream: access log input_tokens=%v output_tokens=%v cost_usd=%v; "+
					"tollgate_tokens_total input=%v output=%v, tollgate_cost_usd_total=%v (want 7, 4, $%v)",
					line["input_tokens"], line["output_tokens"], line["cost_usd"], in, out, cost, want)
			}
		})
	}
}

// The scan reads whether continuous_usage_stats can be on upstream: vLLM honours it
// only with include_usage. Any spelling or value a parser might take for true counts,
// since taking it for on costs at most a cut stream's count.
func TestScanContinuousUsage(t *testing.T) {
	for _, c := range []struct {
		name, options string
		want          bool
	}{
		{"none", `null`, false},
		{"include_usage alone", `{"include_usage":true}`, false},
		{"both", `{"include_usage":true,"continuous_usage_stats":true}`, true},
		{"continuous first", `{"continuous_usage_stats":true,"include_usage":true}`, true},
		{"continuous off", `{"include_usage":true,"continuous_usage_stats":false}`, false},
		{"continuous null", `{"include_usage":true,"continuous_usage_stats":null}`, false},
		{"without include_usage", `{"continuous_usage_stats":true}`, false},
		{"include_usage false", `{"include_usage":false,"continuous_usage_stats":true}`, false},
		{"given twice, once on", `{"include_usage":true,"continuous_usage_stats":false,"continuous_usage_stats":true}`, true},
		{"other case", `{"include_usage":true,"Continuous_Usage_Stats":true}`, true},
		{"escaped", `{"include_usage":true,"continuous_usage_st\u0061ts":true}`, true},
		{"a string for true", `{"include_usage":true,"continuous_usage_stats":"true"}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f fields
			if e := scanBody([]byte(`{"model":"m","stream":true,"stream_options":`+c.options+`}`), &f); e != nil {
				t.Fatal(e.message)
			}
			if f.continuousUsage != c.want {
				t.Errorf("stream_options %s: continuousUsage %v, want %v", c.options, f.continuousUsage, c.want)
			}
		})
	}
}
