package gateway

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

const (
	pcClaudeModel = "claude-pc"
	pcClaudeKey   = "pc-anthropic-key"
)

// pcPrices are the backends' prices per million tokens: input, output, cached input,
// cache write (the openai backend leaves the last one out: its input price).
var pcPrices = map[string][4]float64{
	"up":     {2, 8, 0.5, 2},
	"claude": {3, 15, 0.3, 3.75},
}

// pcConfig is a gateway in front of a vLLM-like mockllm (backend up, endpoint chat) and
// an Anthropic one (backend claude, endpoint claude), each priced with cached tokens.
func pcConfig(openaiAddr, anthropicAddr, extra string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + openaiAddr + `/v1", model: up-model, timeout: 20s,
       pricing: {input_per_million: 2, output_per_million: 8, cached_input_per_million: 0.5}}
  claude: {provider: anthropic, base_url: "http://` + anthropicAddr + `/v1", model: ` + pcClaudeModel + `, api_key: ` + pcClaudeKey + `, timeout: 20s,
           pricing: {input_per_million: 3, output_per_million: 15, cached_input_per_million: 0.3, cache_write_per_million: 3.75}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: claude, type: chat, routes: [{backend: claude}]}
` + extra
}

func pcMocks(t *testing.T) (openaiAddr, anthropicAddr string) {
	t.Helper()
	_, openaiAddr = startMock(t, mockllm.Options{MaxTokens: 12, Seed: 11})
	_, anthropicAddr = startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	return openaiAddr, anthropicAddr
}

// pcPrompt is long enough, at mockllm's four bytes a token, to hold the cached counts
// the tests ask for.
var pcPrompt = strings.Repeat("You are the support assistant of a large shop. ", 16)

// pcLine is one access log line's usage.
type pcLine struct {
	Backend                                string
	Input, Output, CachedInput, CacheWrite int64
	Cost                                   float64
}

// pcAccess waits for the access log line of request id.
func pcAccess(t *testing.T, logs *syncBuffer, id string) pcLine {
	t.Helper()
	var line pcLine
	waitFor(t, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			var m struct {
				RequestID   string  `json:"request_id"`
				Msg         string  `json:"msg"`
				Backend     string  `json:"backend"`
				Input       int64   `json:"input_tokens"`
				Output      int64   `json:"output_tokens"`
				CachedInput *int64  `json:"cached_input_tokens"`
				CacheWrite  *int64  `json:"cache_write_input_tokens"`
				Cost        float64 `json:"cost_usd"`
			}
			if json.Unmarshal([]byte(l), &m) != nil || m.Msg != "request" || m.RequestID != id {
				continue
			}
			if m.CachedInput == nil || m.CacheWrite == nil {
				t.Fatalf("access log line without the prompt cache's counts: %s", l)
			}
			line = pcLine{m.Backend, m.Input, m.Output, *m.CachedInput, *m.CacheWrite, m.Cost}
			return true
		}
		return false
	})
	return line
}

// cost is what the line's tokens cost at its backend's prices: plain input, cached
// input, cache writes and output each at their own.
func (l pcLine) cost() float64 {
	p := pcPrices[l.Backend]
	return (float64(l.Input-l.CachedInput-l.CacheWrite)*p[0] + float64(l.Output)*p[1] +
		float64(l.CachedInput)*p[2] + float64(l.CacheWrite)*p[3]) / 1e6
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

// TestPromptCacheEndToEnd: the OpenAI SDK through the gateway to a vLLM with prefix
// caching and to Anthropic, each reporting tokens of the prompt cache. The client gets
// the upstream's counts (Anthropic's through the translation: no count of the writes);
// the access log, the cost and tollgate_cached_input_tokens_total take them, buffered
// and streamed, and also when the gateway asked for a stream's usage on its own.
func TestPromptCacheEndToEnd(t *testing.T) {
	t.Parallel()
	oa, an := pcMocks(t)
	g := startGateway(t, pcConfig(oa, an, ""))
	c := g.client()
	ctx := context.Background()

	cases := []struct {
		name, endpoint, id string
		read, write        string
		stream, hideUsage  bool
		wantRead, wantWrit int64
	}{
		{"vLLM, answer", "chat", "pc-vllm", "64", "", false, false, 64, 0},
		{"vLLM, stream", "chat", "pc-vllm-stream", "48", "", true, false, 48, 0},
		{"vLLM, stream without include_usage", "chat", "pc-vllm-hidden", "32", "", true, true, 32, 0},
		{"vLLM, nothing cached", "chat", "pc-vllm-none", "", "", false, false, 0, 0},
		{"Anthropic, answer", "claude", "pc-claude", "64", "20", false, false, 64, 20},
		{"Anthropic, stream", "claude", "pc-claude-stream", "16", "40", true, false, 16, 40},
	}
	var sumIn, sumCost float64
	reads := map[string]float64{}
	writes := map[string]float64{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := []option.RequestOption{option.WithHeader("X-Request-Id", tc.id)}
			if tc.read != "" {
				opts = append(opts, option.WithHeader("x-mock-cached-tokens", tc.read))
			}
			if tc.write != "" {
				opts = append(opts, option.WithHeader("x-mock-cache-write-tokens", tc.write))
			}
			params := openai.ChatCompletionNewParams{Model: tc.endpoint, Messages: userMsg(pcPrompt)}
			var usage *openai.CompletionUsage
			var raw string
			if tc.stream {
				if !tc.hideUsage {
					params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				s := c.Chat.Completions.NewStreaming(ctx, params, opts...)
				for s.Next() {
					if ch := s.Current(); ch.JSON.Usage.Valid() && ch.Usage.PromptTokens > 0 {
						u := ch.Usage
						usage, raw = &u, ch.RawJSON()
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
				usage, raw = &resp.Usage, resp.RawJSON()
			}
			line := pcAccess(t, g.logs, tc.id)
			if tc.hideUsage {
				if usage != nil {
					t.Errorf("the client did not ask for usage and got %s", raw)
				}
			} else {
				if usage == nil {
					t.Fatal("no usage reached the client")
				}
				if usage.PromptTokens != line.Input || usage.PromptTokensDetails.CachedTokens != tc.wantRead {
					t.Errorf("client's usage: %d prompt tokens, %d cached; the access log's %d and want %d cached (%s)",
						usage.PromptTokens, usage.PromptTokensDetails.CachedTokens, line.Input, tc.wantRead, raw)
				}
				if strings.Contains(raw, "cache_creation") || strings.Contains(raw, "cache_write") {
					t.Errorf("the client's usage counts cache writes, which OpenAI's usage never did: %s", raw)
				}
			}
			if line.CachedInput != tc.wantRead || line.CacheWrite != tc.wantWrit || line.Input <= tc.wantRead+tc.wantWrit || line.Output == 0 {
				t.Errorf("access log: %+v, want %d cached and %d written of more input tokens", line, tc.wantRead, tc.wantWrit)
			}
			if !closeTo(line.Cost, line.cost()) {
				t.Errorf("access log cost_usd %v, want %v from the prices of %+v", line.Cost, line.cost(), line)
			}
			sumIn += float64(line.Input)
			sumCost += line.Cost
			reads[line.Backend] += float64(line.CachedInput)
			writes[line.Backend] += float64(line.CacheWrite)
		})
	}

	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range []string{"up", "claude"} {
		for typ, want := range map[string]float64{"cache_read": reads[be], "cache_write": writes[be]} {
			got, ok := promtest.Sum(fams, "tollgate_cached_input_tokens_total", func(l map[string]string) bool {
				return l["backend"] == be && l["type"] == typ
			})
			if !ok || got != want {
				t.Errorf("tollgate_cached_input_tokens_total{backend=%q,type=%q} = %v, want %v", be, typ, got, want)
			}
		}
	}
	if in, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["type"] == "input" }); in != sumIn {
		t.Errorf("tollgate_tokens_total{type=input} = %v, want the access log's %v (cached tokens counted once)", in, sumIn)
	}
	if cost, _ := promtest.Sum(fams, "tollgate_cost_usd_total", nil); !closeTo(cost, sumCost) {
		t.Errorf("tollgate_cost_usd_total = %v, want the access log's %v", cost, sumCost)
	}
}

// TestPromptCacheSpans: the upstream attempt's span (and the request's) carries
// gen_ai.usage.cache_read.input_tokens and gen_ai.usage.cache_creation.input_tokens,
// each only when there were such tokens, beside gen_ai.usage.input_tokens, which
// counts them too, as the GenAI conventions have it.
func TestPromptCacheSpans(t *testing.T) {
	oa, an := pcMocks(t)
	g, exp := startTracedGateway(t, pcConfig(oa, an, "tracing: {exporter: otlp-grpc, sample_ratio: 1}\n"))
	const (
		keyRead  = "gen_ai.usage.cache_read.input_tokens"
		keyWrite = "gen_ai.usage.cache_creation.input_tokens"
		keyInput = "gen_ai.usage.input_tokens"
	)
	cases := []struct {
		name, endpoint, upstreamSpan string
		stream                       bool
		read, write                  string
		wantRead, wantWrite          int64 // -1: absent
	}{
		{"vLLM answer", "chat", "chat up-model", false, "64", "", 64, -1},
		{"vLLM stream", "chat", "chat up-model", true, "48", "", 48, -1},
		{"vLLM, nothing cached", "chat", "chat up-model", false, "", "", -1, -1},
		{"Anthropic answer", "claude", "chat " + pcClaudeModel, false, "64", "20", 64, 20},
		{"Anthropic stream, writes only", "claude", "chat " + pcClaudeModel, true, "", "40", -1, 40},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			id := "pc-span-" + string(rune('a'+i))
			body := `{"model":"` + tc.endpoint + `","messages":[{"role":"user","content":"` + pcPrompt + `"}]`
			if tc.stream {
				body += `,"stream":true`
			}
			req, err := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body+"}"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-Id", id)
			if tc.read != "" {
				req.Header.Set("x-mock-cached-tokens", tc.read)
			}
			if tc.write != "" {
				req.Header.Set("x-mock-cache-write-tokens", tc.write)
			}
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			line := pcAccess(t, g.logs, id)
			flush(t, g.Server)
			spans := byName(exp.GetSpans())
			for _, name := range []string{tc.upstreamSpan, "POST /v1/chat/completions"} {
				if len(spans[name]) != 1 {
					t.Fatalf("%d spans %q; spans %v", len(spans[name]), name, keys(spans))
				}
				ro := spans[name][0].Snapshot()
				if v, ok := attr(ro, keyInput); !ok || v.AsInt64() != line.Input {
					t.Errorf("%s: %s = %v, want the access log's %d", name, keyInput, v.Emit(), line.Input)
				}
				for key, want := range map[string]int64{keyRead: tc.wantRead, keyWrite: tc.wantWrite} {
					v, ok := attr(ro, key)
					switch {
					case want < 0 && ok:
						t.Errorf("%s: %s = %v, want it left out", name, key, v.Emit())
					case want >= 0 && (!ok || v.AsInt64() != want):
						t.Errorf("%s: %s = %v (set %v), want %d", name, key, v.Emit(), ok, want)
					}
				}
			}
		})
	}
}

// TestAccessLinePromptCache: the prompt cache's counts are in every access line, after
// the output tokens, written by the gateway's encoder as slog writes them.
func TestAccessLinePromptCache(t *testing.T) {
	for _, e := range []accessEntry{
		{endpoint: "chat", backend: "claude", status: 200, inputTokens: 2213, outputTokens: 9, cachedTokens: 2000, cacheWrites: 200, cost: 0.0008},
		{endpoint: "chat", status: 200, inputTokens: 12, outputTokens: 345},
		{cachedTokens: math.MaxInt64, cacheWrites: -1},
	} {
		fast, slow := fastAccessLine(t, &e), slogAccessLine(t, &e)
		if fast != slow {
			t.Errorf("\n fast %s\n slog %s", fast, slow)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(`{"time":""`+fast), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, fast)
		}
		want := `"output_tokens":` + strconv.FormatInt(e.outputTokens, 10) + `,"cached_input_tokens":` + strconv.FormatInt(e.cachedTokens, 10) + `,"cache_write_input_tokens":` + strconv.FormatInt(e.cacheWrites, 10) + `,"cost_usd":`
		if !strings.Contains(fast, want) {
			t.Errorf("line %s lacks %s", fast, want)
		}
	}
}
