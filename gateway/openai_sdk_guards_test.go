package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// sdkrAccessLines returns the access-log lines (msg "request") parsed.
func sdkrAccessLines(g *gw) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// the client says include_usage:false explicitly.
func TestSDKIncludeUsageFalse(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 3})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("hi"),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(false)},
	})
	var acc openai.ChatCompletionAccumulator
	usageChunks := 0
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		if len(ch.Choices) == 0 {
			usageChunks++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if usageChunks != 0 {
		t.Errorf("client asked include_usage:false and got %d usage chunks", usageChunks)
	}
	waitFor(t, func() bool { return len(sdkrAccessLines(g)) == 1 })
	if l := sdkrAccessLines(g)[0]; l["output_tokens"].(float64) == 0 {
		t.Errorf("tokens of a stream with include_usage:false not counted: %v", l)
	}
}

// n=2 stream without include_usage.
func TestSDKStreamN2(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 3})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	for _, withUsage := range []bool{false, true} {
		p := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi"), N: openai.Int(2)}
		if withUsage {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		stream := c.Chat.Completions.NewStreaming(context.Background(), p)
		var acc openai.ChatCompletionAccumulator
		usageChunks := 0
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			if len(ch.Choices) == 0 {
				usageChunks++
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 1}[withUsage]; usageChunks != want {
			t.Errorf("usage=%v: %d usage chunks, want %d", withUsage, usageChunks, want)
		}
		if len(acc.Choices) != 2 || acc.Choices[0].FinishReason == "" || acc.Choices[1].FinishReason == "" {
			t.Errorf("usage=%v: choices %+v", withUsage, acc.Choices)
		}
		if withUsage && acc.Usage.CompletionTokens == 0 {
			t.Errorf("no usage")
		}
	}
}

// legacy completions streaming via the SDK.
func TestSDKCompletionsStream(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 3})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	for _, withUsage := range []bool{false, true} {
		p := openai.CompletionNewParams{Model: "legacy", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")}, MaxTokens: openai.Int(6)}
		if withUsage {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		stream := c.Completions.NewStreaming(context.Background(), p)
		var text strings.Builder
		usage := 0
		finish := ""
		for stream.Next() {
			ch := stream.Current()
			for _, cc := range ch.Choices {
				text.WriteString(cc.Text)
				if cc.FinishReason != "" {
					finish = string(cc.FinishReason)
				}
			}
			if ch.Usage.TotalTokens > 0 {
				usage++
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.Len() == 0 || finish == "" {
			t.Errorf("usage=%v: text %q finish %q", withUsage, text.String(), finish)
		}
		if want := map[bool]int{false: 0, true: 1}[withUsage]; usage != want {
			t.Errorf("usage=%v: %d usage chunks, want %d", withUsage, usage, want)
		}
	}
	waitFor(t, func() bool { return len(sdkrAccessLines(g)) == 2 })
	for _, l := range sdkrAccessLines(g) {
		if l["output_tokens"].(float64) == 0 {
			t.Errorf("completions stream tokens not counted: %v", l)
		}
	}
}

// an endpoint named with slashes retrieved with the SDK.
func TestSDKModelsSlash(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", `
  - {name: "meta-llama/Llama-3.1-8B-Instruct", type: chat, routes: [{backend: up}]}
`))
	c := g.client()
	m, err := c.Models.Get(context.Background(), "meta-llama/Llama-3.1-8B-Instruct")
	if err != nil || m.ID != "meta-llama/Llama-3.1-8B-Instruct" {
		t.Fatalf("retrieve: %+v %v", m, err)
	}
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "meta-llama/Llama-3.1-8B-Instruct", Messages: userMsg("hi")})
	if err != nil || len(res.Choices) != 1 {
		t.Fatalf("chat: %v", err)
	}
}

// gateway errors carry the client's x-request-id, with typed fields.
func TestSDKErrorFields(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", `
  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1, window: hour}]
`)+`auth: {mode: keys, keys: [{name: a, key: sk-aaaa-1234}]}
`)
	ctx := context.Background()
	good := g.client(option.WithAPIKey("sk-aaaa-1234"))
	bad := g.client(option.WithAPIKey("sk-wrong"))
	if _, err := good.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "lim", Messages: userMsg("hi")}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name             string
		c                openai.Client
		model            string
		status           int
		typ, code, param string
	}{
		{"bad key", bad, "chat", 401, "authentication_error", "invalid_api_key", ""},
		{"unknown model", good, "nope", 404, "invalid_request_error", "model_not_found", "model"},
		{"wrong type", good, "embed", 400, "invalid_request_error", "model_not_supported", "model"},
		{"limited", good, "lim", 429, "rate_limit_exceeded", "rate_limit_exceeded", ""},
	}
	for _, tc := range cases {
		_, err := tc.c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: tc.model, Messages: userMsg("hi")},
			option.WithHeader("X-Request-Id", "req-"+strings.ReplaceAll(tc.name, " ", "-")))
		var e *openai.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e.StatusCode != tc.status || e.Type != tc.typ || e.Code != tc.code || e.Param != tc.param || e.Message == "" {
			t.Errorf("%s: %d type=%q code=%q param=%q msg=%q", tc.name, e.StatusCode, e.Type, e.Code, e.Param, e.Message)
		}
		if got := e.Response.Header.Get("X-Request-Id"); got != "req-"+strings.ReplaceAll(tc.name, " ", "-") {
			t.Errorf("%s: x-request-id %q", tc.name, got)
		}
	}
}

// SDK cancels a stream mid-way: the concurrency slot is freed, nothing stays in flight.
func TestSDKCancelMidStream(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 64, TPOT: 50 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", `
  - name: conc
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, concurrency: 1}]
`))
	c := g.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "conc", Messages: userMsg("hi")})
	got := 0
	for stream.Next() {
		got++
		if got == 3 {
			cancel()
		}
	}
	stream.Close()
	waitFor(t, func() bool { return len(sdkrAccessLines(g)) == 1 })
	l := sdkrAccessLines(g)[0]
	if l["status"].(float64) != 499 {
		t.Errorf("access log %v", l)
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := promtest.Sum(fams, "tollgate_in_flight_requests", nil); v != 0 {
		t.Errorf("in flight %v", v)
	}
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "conc", Messages: userMsg("hi"), MaxTokens: openai.Int(2)}); err != nil {
		t.Errorf("slot not freed: %v", err)
	}
}

// embeddings with dimensions, base64 through the SDK.
func TestSDKEmbeddingDims(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{EmbeddingDim: 12})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	res, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{Model: "embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")}, Dimensions: openai.Int(5),
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || len(res.Data[0].Embedding) != 5 || res.Usage.PromptTokens == 0 {
		t.Fatalf("%s", res.RawJSON())
	}
}

// an upstream 429 with only retry-after-ms.
func TestSDKUpstreamRetryAfterMs(t *testing.T) {
	t.Parallel()
	const body = `{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}`
	addr, count := scriptedUpstream(t, func(n int, c net.Conn, _ *http.Request) {
		if n == 1 {
			fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nretry-after-ms: 1200\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(compatAnswer), compatAnswer)
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client(option.WithMaxRetries(1))
	var resp *http.Response
	start := time.Now()
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1200*time.Millisecond {
		t.Errorf("SDK retried after %v, the upstream asked for 1.2s", d)
	}
	if count.Load() != 2 {
		t.Errorf("%d upstream calls", count.Load())
	}
}

// limit headers on streams and on failures after admission.
func TestSDKLimitHeadersEverywhere(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	deadAddr := holdPort(t).Addr()
	g := startGateway(t, mockConfig(addr, `
  dead: {provider: openai, base_url: "http://`+deadAddr+`/v1", model: m, connect_timeout: 300ms}
`, `
  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 100, window: minute}, {per: endpoint, tokens: 100000, window: minute}]
  - name: limdead
    type: chat
    routes: [{backend: dead}]
    limits: [{per: endpoint, requests: 100, window: minute}, {per: endpoint, tokens: 100000, window: minute}]
`))
	c := g.client()
	ctx := context.Background()
	check := func(what string, h http.Header) {
		for _, k := range []string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests",
			"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens", "X-Request-Id"} {
			if h.Get(k) == "" {
				t.Errorf("%s: no %s (%v)", what, k, h)
			}
		}
	}
	var resp *http.Response
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "lim", Messages: userMsg("hi")}, option.WithResponseInto(&resp))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	check("stream", resp.Header)
	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "limdead", Messages: userMsg("hi")})
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	check("502", e.Response.Header)
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "lim", Messages: userMsg("hi")}, option.WithHeader("x-mock-status", "500"))
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	check("upstream 500", e.Response.Header)
}

// models auto-paging terminates.
func TestSDKModelsAutoPaging(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	it := c.Models.ListAutoPaging(context.Background())
	var ids []string
	for it.Next() {
		ids = append(ids, it.Current().ID)
		if len(ids) > 10 {
			break
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "chat,legacy,embed" {
		t.Fatalf("%v", ids)
	}
}
