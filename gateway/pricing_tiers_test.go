package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
)

// ptConfig prices backend up as gpt-5 is priced per million tokens: $1.25 input,
// $0.125 cached input, $10 output at the standard tier; flex at half of each;
// priority at twice, its cached price left out (the tier's input price, $2.50).
func ptConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up:
    provider: openai
    base_url: "http://` + upstream + `/v1"
    model: gpt-5
    timeout: 20s
    pricing:
      input_per_million: 1.25
      output_per_million: 10
      cached_input_per_million: 0.125
      tiers:
        flex: {input_per_million: 0.625, output_per_million: 5, cached_input_per_million: 0.0625}
        priority: {input_per_million: 2.5, output_per_million: 20}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
}

// ptPrices are ptConfig's prices by the tier an answer names: input, cached input,
// output. An answer naming another tier, or none, is priced at "".
var ptPrices = map[string][3]float64{
	"":         {1.25, 0.125, 10},
	"flex":     {0.625, 0.0625, 5},
	"priority": {2.5, 2.5, 20},
}

// ptUsage is the usage of every answer of ptUpstream.
const (
	ptInput, ptCached, ptOutput = 2006, 1024, 300
	ptUsage                     = `{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0}}`
)

// ptCost is what an answer of ptUpstream costs in tier at ptConfig's prices.
func ptCost(tier string) float64 {
	p, ok := ptPrices[tier]
	if !ok {
		p = ptPrices[""]
	}
	return (float64(ptInput-ptCached)*p[0] + float64(ptCached)*p[1] + float64(ptOutput)*p[2]) / 1e6
}

// ptUpstream answers as OpenAI does: the service_tier the request asks for, "auto"
// served as "default", names the tier in the answer and in every chunk of a stream,
// the usage chunk too; a request asking for none gets an answer naming none, as vLLM
// answers. With X-Pt-Tier-Chunks: first, only a stream's first chunk names it.
func ptUpstream(t *testing.T) string {
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var req struct {
			Stream        bool   `json:"stream"`
			ServiceTier   string `json:"service_tier"`
			StreamOptions *struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
			ctx.Error(err.Error(), 400)
			return
		}
		tier := ""
		switch req.ServiceTier {
		case "":
		case "auto":
			tier = `,"service_tier":"default"`
		default:
			tier = `,"service_tier":` + strconv.Quote(req.ServiceTier)
		}
		if !req.Stream {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"id":"chatcmpl-pt","object":"chat.completion","created":1,"model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":` + ptUsage + tier + `}`)
			return
		}
		ctx.SetContentType("text/event-stream")
		firstOnly := string(ctx.Request.Header.Peek("X-Pt-Tier-Chunks")) == "first"
		var b strings.Builder
		for i, delta := range []string{`{"role":"assistant","content":""}`, `{"content":"Hel"}`, `{"content":"lo."}`} {
			b.WriteString(`data: {"id":"chatcmpl-pt","object":"chat.completion.chunk","created":1,"model":"gpt-5","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]` + tier + "}\n\n")
			if i == 0 && firstOnly {
				tier = ""
			}
		}
		b.WriteString(`data: {"id":"chatcmpl-pt","object":"chat.completion.chunk","created":1,"model":"gpt-5","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]` + tier + "}\n\n")
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			b.WriteString(`data: {"id":"chatcmpl-pt","object":"chat.completion.chunk","created":1,"model":"gpt-5","choices":[],"usage":` + ptUsage + tier + "}\n\n")
		}
		b.WriteString("data: [DONE]\n\n")
		ctx.SetBodyString(b.String())
	})
}

// ptLine is one access log line's pricing.
type ptLine struct {
	Cost        float64 `json:"cost_usd"`
	ServiceTier *string `json:"service_tier"`
	Input       int64   `json:"input_tokens"`
	Raw         string  `json:"-"`
}

// ptAccess waits for the access log line of request id.
func ptAccess(t *testing.T, logs *syncBuffer, id string) ptLine {
	t.Helper()
	var line ptLine
	waitFor(t, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			var m struct {
				ptLine
				Msg       string `json:"msg"`
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal([]byte(l), &m) == nil && m.Msg == "request" && m.RequestID == id {
				line, line.Raw = m.ptLine, l
				return true
			}
		}
		return false
	})
	return line
}

// TestServiceTierCostEndToEnd: the OpenAI SDK asks for a service tier through the
// gateway; the answer's tier (the last chunk naming it, for a stream) prices it, in
// tollgate_cost_usd_total and the access log's cost_usd, which names the tier. An
// answer naming no tier, default or a tier the backend does not list is priced at
// the top-level prices.
func TestServiceTierCostEndToEnd(t *testing.T) {
	t.Parallel()
	g := startGateway(t, ptConfig(ptUpstream(t)))
	c := g.client()
	ctx := context.Background()
	cases := []struct {
		name, ask, answered string
		stream, hideUsage   bool
		firstChunkOnly      bool
	}{
		{"flex", "flex", "flex", false, false, false},
		{"priority, its cached price its input price", "priority", "priority", false, false, false},
		{"auto, served at default", "auto", "default", false, false, false},
		{"a tier not listed", "scale", "scale", false, false, false},
		{"none named", "", "", false, false, false},
		{"flex, streamed", "flex", "flex", true, false, false},
		{"priority, streamed", "priority", "priority", true, false, false},
		{"none named, streamed", "", "", true, false, false},
		{"flex, streamed, usage asked for by the gateway", "flex", "flex", true, true, false},
		{"flex named by the first chunk only, streamed", "flex", "flex", true, false, true},
	}
	var sum float64
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "pt-" + strconv.Itoa(i)
			params := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("Hello?"),
				ServiceTier: openai.ChatCompletionNewParamsServiceTier(tc.ask)}
			opts := []option.RequestOption{option.WithHeader("X-Request-Id", id)}
			if tc.firstChunkOnly {
				opts = append(opts, option.WithHeader("X-Pt-Tier-Chunks", "first"))
			}
			var clientTier string
			if tc.stream {
				if !tc.hideUsage {
					params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				s := c.Chat.Completions.NewStreaming(ctx, params, opts...)
				for s.Next() {
					ch := s.Current()
					if tc.hideUsage && ch.JSON.Usage.Valid() {
						t.Errorf("a usage the client did not ask for: %s", ch.RawJSON())
					}
					if ch.ServiceTier != "" {
						clientTier = string(ch.ServiceTier)
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				resp, err := c.Chat.Completions.New(ctx, params, opts...)
				if err != nil {
					t.Fatal(err)
				}
				clientTier = string(resp.ServiceTier)
			}
			if clientTier != tc.answered {
				t.Errorf("the client got service_tier %q, want the upstream's %q", clientTier, tc.answered)
			}
			line := ptAccess(t, g.logs, id)
			if want := ptCost(tc.answered); !closeTo(line.Cost, want) {
				t.Errorf("cost_usd %v, want %v: %s", line.Cost, want, line.Raw)
			}
			switch {
			case tc.answered == "" && line.ServiceTier != nil:
				t.Errorf("service_tier %q in the line of an answer naming none: %s", *line.ServiceTier, line.Raw)
			case tc.answered != "" && (line.ServiceTier == nil || *line.ServiceTier != tc.answered):
				t.Errorf("the line's service_tier is not %q: %s", tc.answered, line.Raw)
			}
			if line.Input != ptInput {
				t.Errorf("input_tokens %d, want %d: %s", line.Input, ptInput, line.Raw)
			}
			sum += line.Cost
		})
	}
	if !closeTo(ptCost("flex"), ptCost("")/2) || !closeTo(ptCost("scale"), ptCost("")) {
		t.Fatalf("prices: flex %v, scale %v, standard %v", ptCost("flex"), ptCost("scale"), ptCost(""))
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return l["backend"] == "up" })
	if !ok || !closeTo(got, sum) {
		t.Errorf("tollgate_cost_usd_total{backend=up} = %v, want the access log's %v", got, sum)
	}
	var want float64
	for _, tc := range cases {
		want += ptCost(tc.answered)
	}
	if !closeTo(got, want) {
		t.Errorf("tollgate_cost_usd_total{backend=up} = %v, want %v from the tiers' prices", got, want)
	}
	for _, f := range fams["tollgate_cost_usd_total"].GetMetric() {
		for _, l := range f.GetLabel() {
			if strings.Contains(l.GetName(), "tier") {
				t.Errorf("tollgate_cost_usd_total has a label %s", l.GetName())
			}
		}
	}
}

// TestPricingTiersOnlyPriceMakesCostSeries: a backend priced only in a tier has a
// cost series from its start, as one priced at the top level has.
func TestPricingTiersOnlyPriceMakesCostSeries(t *testing.T) {
	yaml := strings.Replace(ptConfig("127.0.0.1:9"), `
      input_per_million: 1.25
      output_per_million: 10
      cached_input_per_million: 0.125
`, "\n", 1)
	g := startGateway(t, yaml)
	if g.rt.Load().backends["up"].Pricing.Free() {
		t.Fatal("a backend priced in its tiers is free")
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return l["backend"] == "up" }); !ok {
		t.Error("no tollgate_cost_usd_total series for a backend priced in its tiers")
	}
}

// TestPricingTiersConfig: pricing.tiers loads into the backend's prices; each
// problem in it names the file, the line and the key.
func TestPricingTiersConfig(t *testing.T) {
	t.Run("loads", func(t *testing.T) {
		cfg, err := ParseConfig("t.yaml", []byte(ptConfig("127.0.0.1:9")), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Backends["up"].Pricing
		flex, prio := p.Tiers["flex"], p.Tiers["priority"]
		if len(p.Tiers) != 2 || flex.InputPerMillion == nil || *flex.InputPerMillion != 0.625 || *flex.OutputPerMillion != 5 ||
			*flex.CachedInputPerMillion != 0.0625 || prio.CachedInputPerMillion != nil || *prio.OutputPerMillion != 20 {
			t.Errorf("tiers %+v", p.Tiers)
		}
	})
	const bad = `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:9/v1"
    model: m
    pricing:
      input_per_million: 1.25
      output_per_million: 10
      tiers:
        flex: {input_per_milion: 0.625, output_per_million: 5}
        priority:
          input_per_million: -2.5
          output_per_million: .inf
          cached_input_per_million: .nan
        scale: {}
        batch: {input_per_million: 0.625}
        default: {input_per_million: 1.25, output_per_million: 10}
        nested: {input_per_million: 1, output_per_million: 1, tiers: {flex: {}}}
        odd: {input_per_million: 1, output_per_million: 1, cache_write_per_million: -1}
  other: {provider: openai, base_url: "http://127.0.0.1:9/v1", model: m, pricing: {tiers: [flex]}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: other, type: chat, routes: [{backend: other}]}
`
	_, err := ParseConfig("t.yaml", []byte(bad), env(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	got := ce.Error()
	for _, want := range []string{
		"t.yaml:12: backends.up.pricing.tiers.flex.input_per_milion: unknown key (did you mean input_per_million?)",
		"t.yaml:14: backends.up.pricing.tiers.priority.input_per_million: must be a finite number, 0 or more",
		"t.yaml:15: backends.up.pricing.tiers.priority.output_per_million: must be a finite number, 0 or more",
		"t.yaml:16: backends.up.pricing.tiers.priority.cached_input_per_million: must be a finite number, 0 or more",
		"t.yaml:17: backends.up.pricing.tiers.scale: has no prices (input_per_million and output_per_million are required)",
		"t.yaml:18: backends.up.pricing.tiers.batch.output_per_million: is required in a tier (0 when its output is free)",
		"t.yaml:19: backends.up.pricing.tiers.default: is priced by the top-level prices (the standard tier): write them there",
		"t.yaml:20: backends.up.pricing.tiers.nested.tiers: unknown key",
		"t.yaml:21: backends.up.pricing.tiers.odd.cache_write_per_million: must be a finite number, 0 or more",
		"t.yaml:22: backends.other.pricing.tiers:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}

// ptTierResp is benchChatResp as OpenAI answers it in the flex tier.
var ptTierResp = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time there was a gateway."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":16,"audio_tokens":0}},"service_tier":"flex","system_fingerprint":null}`)

// ptTiersYAML prices benchConfig's backend in two tiers and turns the access log on.
func ptTiersYAML(upstream string) string {
	yaml := strings.Replace(benchConfig(upstream), "access_log: false", "access_log: true", 1)
	return strings.Replace(yaml, "model: up-model}", `model: up-model, pricing: {input_per_million: 1.25, output_per_million: 10,
       tiers: {flex: {input_per_million: 0.625, output_per_million: 5}, priority: {input_per_million: 2.5, output_per_million: 20}}}}`, 1)
}

// BenchmarkProxyChatServiceTier is BenchmarkProxyChatAccessLog with an answer naming
// its tier, priced at the tier's prices and logged with it.
func BenchmarkProxyChatServiceTier(b *testing.B) {
	up := serveUpstream(b, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(ptTierResp)
	})
	s := newTestServer(b, ptTiersYAML(up))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
