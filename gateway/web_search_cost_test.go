package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// wsConfig is a gateway in front of mockllm --api anthropic (backend claude, endpoint
// claude) priced as Claude Sonnet 4.5 with web search ($3 input, $15 output per
// million tokens, $10 per thousand searches; priority at twice the token prices),
// and of an OpenAI upstream naming its tier (backend up, endpoint chat), every
// request traced.
func wsConfig(anthropicAddr, openaiAddr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  claude:
    provider: anthropic
    base_url: "http://` + anthropicAddr + `/v1"
    model: ` + pcClaudeModel + `
    api_key: ` + pcClaudeKey + `
    timeout: 20s
    pricing:
      input_per_million: 3
      output_per_million: 15
      web_search_per_thousand: 10
      tiers:
        priority: {input_per_million: 6, output_per_million: 30}
  up: {provider: openai, base_url: "http://` + openaiAddr + `/v1", model: gpt-5, timeout: 20s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
`
}

// wsLine is one access log line's usage and price.
type wsLine struct {
	Input, Output int64
	Searches      *int64
	Tier          *string
	Cost          float64
	Raw           string
}

// wsAccess waits for the access log line of request id.
func wsAccess(t *testing.T, logs *syncBuffer, id string) wsLine {
	t.Helper()
	var line wsLine
	waitFor(t, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			var m struct {
				RequestID string  `json:"request_id"`
				Msg       string  `json:"msg"`
				Input     int64   `json:"input_tokens"`
				Output    int64   `json:"output_tokens"`
				Searches  *int64  `json:"web_search_requests"`
				Tier      *string `json:"service_tier"`
				Cost      float64 `json:"cost_usd"`
			}
			if json.Unmarshal([]byte(l), &m) != nil || m.Msg != "request" || m.RequestID != id {
				continue
			}
			line = wsLine{m.Input, m.Output, m.Searches, m.Tier, m.Cost, l}
			return true
		}
		return false
	})
	return line
}

// TestWebSearchCostEndToEnd: the OpenAI SDK asks the gateway for web search on an
// Anthropic backend, buffered and streamed (with and without the usage chunk); the
// searches Anthropic counts (usage.server_tool_use.web_search_requests) are priced
// at web_search_per_thousand on top of the tokens, in tollgate_cost_usd_total and the
// access log's cost_usd, counted in tollgate_web_search_requests_total, the access
// log's web_search_requests and the spans' tollgate.web_search.requests. The client
// gets the tier that served the answer in service_tier (Anthropic's standard as
// OpenAI's default, priority priced at its tier), in every chunk of a stream; the
// spans carry it as openai.response.service_tier. tool_choice none searches nothing.
func TestWebSearchCostEndToEnd(t *testing.T) {
	t.Parallel()
	_, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	g, exp := startTracedGateway(t, wsConfig(an, ptUpstream(t)))
	c := g.client()
	ctx := context.Background()
	search := openai.ChatCompletionNewParamsWebSearchOptions{SearchContextSize: "medium"}

	cases := []struct {
		name, id         string
		params           openai.ChatCompletionNewParams
		stream, usage    bool
		tier             string // x-mock-service-tier
		wantSearches     int64
		wantTier         string
		inPrice, outPric float64
	}{
		{"buffered, two searches", "ws-answer", openai.ChatCompletionNewParams{WebSearchOptions: search}, false, false, "", 2, "default", 3, 15},
		{"streamed with usage", "ws-stream", openai.ChatCompletionNewParams{WebSearchOptions: search}, true, true, "", 2, "default", 3, 15},
		{"streamed without usage", "ws-stream-hidden", openai.ChatCompletionNewParams{WebSearchOptions: search}, true, false, "", 2, "default", 3, 15},
		{"one search at the priority tier", "ws-priority",
			openai.ChatCompletionNewParams{WebSearchOptions: openai.ChatCompletionNewParamsWebSearchOptions{SearchContextSize: "low"}}, false, false, "priority", 1, "priority", 6, 30},
		{"no search asked, priority", "ws-plain", openai.ChatCompletionNewParams{}, true, true, "priority", 0, "priority", 6, 30},
		{"tool_choice none", "ws-none", openai.ChatCompletionNewParams{WebSearchOptions: search,
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}}, false, false, "", 0, "default", 3, 15},
	}
	var searches, cost float64
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.params
			p.Model, p.Messages = "claude", userMsg("What is new in gateway routing?")
			opts := []option.RequestOption{option.WithHeader("X-Request-Id", tc.id)}
			if tc.tier != "" {
				opts = append(opts, option.WithHeader("x-mock-service-tier", tc.tier))
			}
			var tiers []string
			if tc.stream {
				if tc.usage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				s := c.Chat.Completions.NewStreaming(ctx, p, opts...)
				for s.Next() {
					tiers = append(tiers, string(s.Current().ServiceTier))
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				cc, err := c.Chat.Completions.New(ctx, p, opts...)
				if err != nil {
					t.Fatal(err)
				}
				tiers = append(tiers, string(cc.ServiceTier))
				if n := int64(len(cc.Choices[0].Message.Annotations)); (n > 0) != (tc.wantSearches > 0) {
					t.Errorf("%d annotations with %d searches", n, tc.wantSearches)
				}
			}
			for i, tier := range tiers {
				if tier != tc.wantTier {
					t.Errorf("answer or chunk %d names service_tier %q, want %q (all: %q)", i, tier, tc.wantTier, tiers)
					break
				}
			}

			line := wsAccess(t, g.logs, tc.id)
			want := (float64(line.Input)*tc.inPrice+float64(line.Output)*tc.outPric)/1e6 + float64(tc.wantSearches)*10/1e3
			if line.Input == 0 || line.Output == 0 || !closeTo(line.Cost, want) {
				t.Errorf("access log %s: cost_usd want %v", line.Raw, want)
			}
			switch {
			case tc.wantSearches == 0 && line.Searches != nil:
				t.Errorf("access log %s: web_search_requests without a search", line.Raw)
			case tc.wantSearches > 0 && (line.Searches == nil || *line.Searches != tc.wantSearches):
				t.Errorf("access log %s: want web_search_requests %d", line.Raw, tc.wantSearches)
			}
			if line.Tier == nil || *line.Tier != tc.wantTier {
				t.Errorf("access log %s: want service_tier %q", line.Raw, tc.wantTier)
			}
			searches += float64(tc.wantSearches)
			cost += line.Cost

			spans := requestSpans(t, g, exp, tc.id)
			upstream := spans["chat "+pcClaudeModel]
			if len(upstream) != 1 {
				t.Fatalf("%d attempt spans", len(upstream))
			}
			server := spans["POST /v1/chat/completions"]
			if len(server) != 1 {
				t.Fatalf("%d server spans", len(server))
			}
			for _, s := range []tracetest.SpanStub{upstream[0], server[0]} {
				if v, ok := attr(s.Snapshot(), "openai.response.service_tier"); !ok || v.AsString() != tc.wantTier {
					t.Errorf("%s: openai.response.service_tier %v, want %q", s.Name, v.AsInterface(), tc.wantTier)
				}
				v, ok := attr(s.Snapshot(), "tollgate.web_search.requests")
				if tc.wantSearches == 0 && ok || tc.wantSearches > 0 && (!ok || v.AsInt64() != tc.wantSearches) {
					t.Errorf("%s: tollgate.web_search.requests %v, want %d (none for 0)", s.Name, v.AsInterface(), tc.wantSearches)
				}
			}
		})
	}

	t.Run("an OpenAI answer's tier on the spans", func(t *testing.T) {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("Hi"), ServiceTier: "flex"},
			option.WithHeader("X-Request-Id", "ws-openai"))
		if err != nil {
			t.Fatal(err)
		}
		spans := requestSpans(t, g, exp, "ws-openai")
		for _, name := range []string{"chat gpt-5", "POST /v1/chat/completions"} {
			if len(spans[name]) != 1 {
				t.Fatalf("%d spans %q", len(spans[name]), name)
			}
			s := spans[name][0].Snapshot()
			if v, ok := attr(s, "openai.response.service_tier"); !ok || v.AsString() != "flex" {
				t.Errorf("%s: openai.response.service_tier %v, want flex", name, v.AsInterface())
			}
			if _, ok := attr(s, "tollgate.web_search.requests"); ok {
				t.Errorf("%s: tollgate.web_search.requests on an answer without searches", name)
			}
		}
	})

	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := promtest.Sum(fams, "tollgate_web_search_requests_total", func(l map[string]string) bool {
		return l["endpoint"] == "claude" && l["backend"] == "claude"
	}); !ok || got != searches {
		t.Errorf("tollgate_web_search_requests_total{backend=claude} = %v, want %v", got, searches)
	}
	for _, m := range fams["tollgate_web_search_requests_total"].GetMetric() {
		if l := labelMap(m); l["backend"] != "claude" {
			t.Errorf("a series of searches %v: only the Anthropic backend's answers count them", l)
		}
	}
	if got, _ := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return l["backend"] == "claude" }); !closeTo(got, cost) {
		t.Errorf("tollgate_cost_usd_total{backend=claude} = %v, want the access log's %v", got, cost)
	}
}

// TestWebSearchPriceConfig: web_search_per_thousand is taken on an anthropic backend,
// at the top level and in a tier, and refused with its file, line and key where no
// answer counts its searches, or where it is no price.
func TestWebSearchPriceConfig(t *testing.T) {
	const head = "server: {listen: \"127.0.0.1:0\"}\nbackends:\n"
	const tail = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: b}]}\n"
	cases := []struct {
		name, backend, want string
	}{
		{"anthropic", `  b: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-sonnet-4-5, api_key: k,
      pricing: {input_per_million: 3, output_per_million: 15, web_search_per_thousand: 10,
                tiers: {priority: {input_per_million: 6, output_per_million: 30, web_search_per_thousand: 10}}}}
`, ""},
		{"openai", `  b: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: gpt-4o-search-preview,
      pricing: {input_per_million: 2.5, output_per_million: 10, web_search_per_thousand: 25}}
`, "t.yaml:4: backends.b.pricing.web_search_per_thousand: applies only to provider anthropic, whose answers count their web searches (OpenAI's do not)"},
		{"negative", `  b: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-sonnet-4-5, api_key: k,
      pricing: {input_per_million: 3, output_per_million: 15, web_search_per_thousand: -10}}
`, "t.yaml:4: backends.b.pricing.web_search_per_thousand: must be a finite number, 0 or more"},
		{"Anthropic's standard tier", `  b: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-sonnet-4-5, api_key: k,
      pricing: {input_per_million: 3, output_per_million: 15,
                tiers: {standard: {input_per_million: 3, output_per_million: 15}}}}
`, "t.yaml:5: backends.b.pricing.tiers.standard: is priced by the top-level prices (Anthropic's standard tier, default in the translated answers): write them there"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(head+c.backend+tail), env(nil))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestAccessLineWebSearches: the access line counts the answer's web searches in
// web_search_requests, after cost_usd and any service_tier, only when it ran some,
// written by the gateway's encoder as slog writes it, through slog's text handler too.
func TestAccessLineWebSearches(t *testing.T) {
	for _, c := range []struct {
		name     string
		searches int64
		tier     string
		after    string
	}{
		{"two, with a tier", 2, "default", `"service_tier":"default","web_search_requests":2,"ttft_ms":`},
		{"one, no tier", 1, "", `"cost_usd":0.01,"web_search_requests":1,"ttft_ms":`},
		{"none", 0, "priority", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := accessEntry{requestID: "r-1", endpoint: "claude", backend: "claude", status: 200, inputTokens: 10, outputTokens: 3, cost: 0.01, serviceTier: c.tier, webSearches: c.searches}
			fast, slow := fastAccessLine(t, &e), slogAccessLine(t, &e)
			if fast != slow {
				t.Errorf("\n fast %s\n slog %s", fast, slow)
			}
			if has := strings.Contains(fast, "web_search_requests"); has != (c.searches > 0) || c.after != "" && !strings.Contains(fast, c.after) {
				t.Errorf("line %s, want %q", fast, c.after)
			}
			var text bytes.Buffer
			logAccess(slog.New(slog.NewTextHandler(&text, nil)), &e)
			if has := strings.Contains(text.String(), "web_search_requests="); has != (c.searches > 0) {
				t.Errorf("text line %q: web_search_requests written %v", text.String(), has)
			}
		})
	}
}

// wsSearchResp is an Anthropic answer after two web searches (their blocks left out),
// served in the standard tier; wsPlainResp the same answer without them.
var (
	wsSearchResp = []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Once upon a time there was a gateway."}],"stop_reason":"end_turn","stop_sequence":null,` +
		`"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9,"server_tool_use":{"web_search_requests":2},"service_tier":"standard"}}`)
	wsPlainResp = []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Once upon a time there was a gateway."}],"stop_reason":"end_turn","stop_sequence":null,` +
		`"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9}}`)
)

// wsProxyServer is a gateway in front of an Anthropic upstream answering resp, priced
// with searches, its access log on.
func wsProxyServer(t testing.TB, resp []byte) *Server {
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(resp)
	})
	return newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5, api_key: k,
       pricing: {input_per_million: 3, output_per_million: 15, web_search_per_thousand: 10}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: true}
`)
}

// BenchmarkProxyChatAnthropicWebSearch is an Anthropic answer with two searches and
// its tier through the gateway, priced, counted and logged; BenchmarkProxyChatAnthropic
// the same answer without them.
func BenchmarkProxyChatAnthropicWebSearch(b *testing.B) { benchmarkAnthropicAnswer(b, wsSearchResp) }

// BenchmarkProxyChatAnthropic: see BenchmarkProxyChatAnthropicWebSearch.
func BenchmarkProxyChatAnthropic(b *testing.B) { benchmarkAnthropicAnswer(b, wsPlainResp) }

func benchmarkAnthropicAnswer(b *testing.B, resp []byte) {
	s := wsProxyServer(b, resp)
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

// BenchmarkAccessLineWebSearches is BenchmarkAccessLine for an answer with a tier and
// searches.
func BenchmarkAccessLineWebSearches(b *testing.B) {
	e := benchEntry
	e.serviceTier, e.webSearches = "default", 2
	log := slog.New(NewJSONLogHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		logAccess(log, &e)
	}
}
