package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

const (
	msgModel = "claude-up"
	msgKey   = "sk-ant-upstream-secret"
)

// msgEnv is a gateway serving the Messages API in front of a mockllm speaking
// Anthropic's API (endpoint claude), one speaking vLLM's (endpoint vllm), and an Azure
// backend, which has no Messages API (endpoint az); the claude endpoints carry a
// token limit, so that the estimate and the settlement can be read off
// x-ratelimit-remaining-tokens.
type msgEnv struct {
	g      *gw
	claude *mockllm.Server
	vllm   *mockllm.Server
}

func startMessages(t *testing.T, extra string) *msgEnv {
	t.Helper()
	claude, caddr := startMock(t, mockllm.Options{Model: msgModel, API: mockllm.APIAnthropic, APIKey: msgKey, MaxTokens: 12, Seed: 3})
	vllm, vaddr := startMock(t, mockllm.Options{Model: "vllm-up", MaxTokens: 12, Seed: 4})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+msgModel+`, api_key: `+msgKey+`, timeout: 5s,
           pricing: {input_per_million: 3, output_per_million: 15}}
  vllm: {provider: openai, base_url: "http://`+vaddr+`/v1", model: vllm-up, timeout: 5s}
  az: {provider: azure, base_url: "http://`+vaddr+`", deployment: dep, model: up-model, api_key: az-secret, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}], limits: [{per: endpoint, tokens: 1000000, window: day}]}
  - {name: vllm, type: chat, routes: [{backend: vllm}], limits: [{per: endpoint, tokens: 1000000, window: day}]}
  - {name: az, type: chat, routes: [{backend: az}]}
  - {name: embed, type: embeddings, routes: [{backend: vllm}]}
`+extra)
	return &msgEnv{g: g, claude: claude, vllm: vllm}
}

func (e *msgEnv) sdk(opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(e.g.url), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
	}, opts...)...)
}

func msgParams(model, text string, maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model: anthropic.Model(model), MaxTokens: maxTokens,
		System:   []anthropic.TextBlockParam{{Text: "You are terse."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

// msgPost posts a raw Messages API body and returns the answer.
func msgPost(t *testing.T, g *gw, body string, header ...string) (*http.Response, string) {
	t.Helper()
	return msgPostTo(t, g, "/v1/messages", body, header...)
}

// msgPostTo is msgPost to path.
func msgPostTo(t *testing.T, g *gw, path, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// tokensCounted is tollgate_tokens_total of endpoint ep and type typ, once it is not 0
// (for up to 3 s): a request is counted once its answer has ended, which its client
// may see first (a stream's end goes out before its upstream body is drained).
func tokensCounted(t *testing.T, g *gw, ep, typ string) float64 {
	t.Helper()
	var v float64
	pollFor(3*time.Second, func() bool {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, _ = promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["endpoint"] == ep && l["type"] == typ })
		return v != 0
	})
	return v
}

func msgRemaining(t *testing.T, resp *http.Response) int64 {
	t.Helper()
	left, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if err != nil {
		t.Fatalf("no x-ratelimit-remaining-tokens: %v", resp.Header)
	}
	return left
}

// The Anthropic SDK calls the gateway as it calls Anthropic: the answer is the
// upstream's message (its model, content, usage), the body reached the upstream with
// the backend's model and key and the client's anthropic-version, never the
// client's key.
func TestMessagesAnthropicBackend(t *testing.T) {
	e := startMessages(t, "")
	c := e.sdk()
	var resp *http.Response
	msg, err := c.Messages.New(context.Background(), msgParams("claude", "Tell me about gateways.", 64), aoption.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Model != msgModel || len(msg.Content) == 0 || msg.Content[0].Text == "" {
		t.Fatalf("message %+v", msg)
	}
	if msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens <= 0 {
		t.Fatalf("usage %+v", msg.Usage)
	}
	if resp.Header.Get("X-Tollgate-Backend") != "claude" || resp.Header.Get("X-Request-Id") == "" ||
		resp.Header.Get("Request-Id") != resp.Header.Get("X-Request-Id") {
		t.Errorf("headers %v", resp.Header)
	}
	st := e.claude.Stats()
	if st.LastPath != "/v1/messages" || !strings.Contains(string(st.LastBody), `"model":"`+msgModel+`"`) {
		t.Fatalf("upstream got %s %s", st.LastPath, st.LastBody)
	}
	if got := st.LastHeaders.Get("X-Api-Key"); got != msgKey {
		t.Errorf("upstream x-api-key %q", got)
	}
	if got := st.LastHeaders.Get("Anthropic-Version"); got == "" || got != resp.Request.Header.Get("Anthropic-Version") {
		t.Errorf("upstream anthropic-version %q, the client sent %q", got, resp.Request.Header.Get("Anthropic-Version"))
	}
	for k, vs := range st.LastHeaders {
		for _, v := range vs {
			if strings.Contains(v, "client-key") {
				t.Errorf("the client's key went upstream in %s", k)
			}
		}
	}
	// The tokens counted are the upstream's usage: input, cache reads and writes
	// included, and output.
	want := float64(msg.Usage.InputTokens + msg.Usage.CacheReadInputTokens + msg.Usage.CacheCreationInputTokens)
	if got := tokensCounted(t, e.g, "claude", "input"); got != want {
		t.Errorf("input tokens counted %v, want %v", got, want)
	}
	if got := tokensCounted(t, e.g, "claude", "output"); got != float64(msg.Usage.OutputTokens) {
		t.Errorf("output tokens counted %v, want %d", got, msg.Usage.OutputTokens)
	}
	// Without one from the client, the backend's own (anthropic_version, by default
	// 2023-06-01); anthropic-beta goes on as the client sent it.
	req, err := http.NewRequest(http.MethodPost, e.g.url+"/v1/messages", strings.NewReader(`{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("anthropic-beta", "context-1m-2025-08-07")
	raw, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw.Body.Close()
	st = e.claude.Stats()
	if raw.StatusCode != 200 || st.LastHeaders.Get("Anthropic-Version") != "2023-06-01" || st.LastHeaders.Get("Anthropic-Beta") != "context-1m-2025-08-07" {
		t.Errorf("%d: upstream anthropic-version %q, anthropic-beta %q", raw.StatusCode, st.LastHeaders.Get("Anthropic-Version"), st.LastHeaders.Get("Anthropic-Beta"))
	}
}

// A stream comes through event by event as the upstream sent it, named, without a
// [DONE]; the SDK accumulates the same message, and the usage of message_start and
// message_delta is what the gateway counts.
func TestMessagesStream(t *testing.T) {
	e := startMessages(t, "")
	for _, ep := range []string{"claude", "vllm"} {
		t.Run(ep, func(t *testing.T) {
			c := e.sdk()
			s := c.Messages.NewStreaming(context.Background(), msgParams(ep, "Stream about gateways.", 64))
			var msg anthropic.Message
			events := 0
			for s.Next() {
				if err := msg.Accumulate(s.Current()); err != nil {
					t.Fatal(err)
				}
				events++
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if events < 5 || len(msg.Content) == 0 || msg.Content[0].Text == "" || msg.StopReason == "" {
				t.Fatalf("%d events, message %+v", events, msg)
			}
			if msg.Usage.OutputTokens <= 0 {
				t.Fatalf("usage %+v", msg.Usage)
			}
			if got := tokensCounted(t, e.g, ep, "output"); got != float64(msg.Usage.OutputTokens) {
				t.Errorf("output tokens counted %v, want %d", got, msg.Usage.OutputTokens)
			}
		})
	}
	// The raw stream: named events, message_stop last, no [DONE].
	resp, body := msgPost(t, e.g, `{"model":"claude","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if strings.Contains(body, "[DONE]") || !strings.HasPrefix(body, "event: message_start\n") ||
		!strings.HasSuffix(body, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
		t.Fatalf("stream:\n%s", body)
	}
}

// The estimate of a Messages API call counts its system prompt and messages as text
// (4 bytes a token), an image block's source as one image, and max_tokens; the
// settlement then takes the upstream's usage.
func TestMessagesEstimate(t *testing.T) {
	e := startMessages(t, "")
	img := strings.Repeat("QUJD", 3000)
	messages := `[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + img + `"}},{"type":"text","text":"What is it?"}]}]`
	system := `"Describe images."`
	body := `{"model":"claude","max_tokens":40,"system":` + system + `,"messages":` + messages + `}`
	resp, raw := msgPost(t, e.g, body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	text := int64(len(messages)-len(img)-2) + int64(len(system))
	want := 40 + text/4 + imageTokens + 1
	if got := 1000000 - msgRemaining(t, resp); got != want {
		t.Errorf("estimate %d, want %d (max_tokens 40, %d bytes of text, one image)", got, want, text)
	}
}

// The gateway's own errors on /v1/messages are in the Messages API's shape, which the
// SDK reads (type, message), with the statuses it answers any API with.
func TestMessagesErrorsInAnthropicShape(t *testing.T) {
	e := startMessages(t, `auth: {mode: keys, keys: [{name: team, key: sk-team-1234, endpoints: [claude, az, embed]}]}
`)
	c := e.sdk(aoption.WithAPIKey("sk-team-1234"))
	cases := []struct {
		name, model string
		status      int
		typ         string
		opts        []aoption.RequestOption
	}{
		{"unknown model", "nope", 404, "not_found_error", nil},
		{"not the key's", "vllm", 404, "not_found_error", nil},
		{"wrong type", "embed", 400, "invalid_request_error", nil},
		// Azure serves the Messages API through its chat completions URL, which the
		// vLLM-like mock lacks: its 404 in the API's shape.
		{"azure through chat", "az", 404, "not_found_error", nil},
		{"bad key", "claude", 401, "authentication_error", []aoption.RequestOption{aoption.WithAPIKey("sk-wrong")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Messages.New(context.Background(), msgParams(tc.model, "hi", 8), tc.opts...)
			var ae *anthropic.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v", err)
			}
			if ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || ae.Message == "" {
				t.Errorf("status %d type %q message %q; want %d %s", ae.StatusCode, ae.Type(), ae.Message, tc.status, tc.typ)
			}
			if id := ae.Response.Header.Get("Request-Id"); id == "" || id != ae.Response.Header.Get("X-Request-Id") {
				t.Errorf("request-id %q, x-request-id %q", id, ae.Response.Header.Get("X-Request-Id"))
			}
			if strings.Contains(ae.RawJSON(), "sk-") || strings.Contains(ae.RawJSON(), "az-secret") {
				t.Errorf("a key in the error: %s", ae.RawJSON())
			}
		})
	}
	// A body that is not JSON, raw.
	resp, body := msgPost(t, e.g, `{"model":`, "x-api-key", "sk-team-1234")
	if resp.StatusCode != 400 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"invalid_request_error","message":`) ||
		!strings.Contains(body, `"request_id":"`+resp.Header.Get("X-Request-Id")+`"`) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	// Its messages speak of the Messages API and the header its clients send the key
	// in, not of OpenAI's API and its Authorization header.
	if !strings.Contains(body, "The Messages API expects a JSON payload.") || strings.Contains(body, "OpenAI") {
		t.Errorf("invalid JSON: %s", body)
	}
	resp, body = msgPost(t, e.g, `{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 401 || !strings.Contains(body, `"type":"authentication_error"`) || !strings.Contains(body, "x-api-key header") {
		t.Errorf("no key: %d %s", resp.StatusCode, body)
	}
	// The chat completions API keeps OpenAI's words.
	resp, body = msgPostTo(t, e.g, "/v1/chat/completions", `{"model":`, "x-api-key", "sk-team-1234")
	if resp.StatusCode != 400 || !strings.Contains(body, "The OpenAI API expects a JSON payload.") {
		t.Errorf("chat completions: %d %s", resp.StatusCode, body)
	}
}

// An upstream's own error comes back as it came when it is in the Messages API's shape
// (Anthropic's), and in that shape, with Anthropic's type, when it is not: vLLM names
// its own types (NotFoundError) and answers a body its models refuse in OpenAI's shape.
func TestMessagesUpstreamErrors(t *testing.T) {
	e := startMessages(t, "")
	resp, body := msgPost(t, e.g, `{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "x-mock-status", "529")
	if resp.StatusCode != 503 && resp.StatusCode != 529 || !strings.Contains(body, `"type":"error"`) || !strings.Contains(body, `"overloaded_error"`) {
		t.Errorf("anthropic 529: %d %s", resp.StatusCode, body)
	}
	for _, c := range []struct{ name, body, status, want string }{
		{"injected", `{"model":"vllm","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "503", `{"type":"error","error":{"type":"overloaded_error","message":`},
		{"refused body", `{"model":"vllm","messages":[{"role":"user","content":"hi"}]}`, "", `{"type":"error","error":{"type":"invalid_request_error","message":`},
	} {
		resp, body := msgPost(t, e.g, c.body, "x-mock-status", c.status)
		if !strings.HasPrefix(body, c.want) || resp.StatusCode < 400 {
			t.Errorf("vllm %s: %d %s", c.name, resp.StatusCode, body)
		}
	}
}

// A stream the upstream cuts after its first events ends with the Messages API's
// error event, which the SDK raises.
func TestMessagesStreamCut(t *testing.T) {
	e := startMessages(t, "")
	req, err := http.NewRequest(http.MethodPost, e.g.url+"/v1/messages",
		strings.NewReader(`{"model":"claude","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("x-mock-cut-after", "3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var last []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() != "" {
			last = append(last, sc.Text())
		}
	}
	if len(last) < 2 || last[len(last)-2] != "event: error" ||
		!strings.HasPrefix(last[len(last)-1], `data: {"type":"error","error":{"type":"api_error","message":"The upstream model server ended the stream early`) {
		t.Fatalf("stream ended with %q", last)
	}
	c := e.sdk(aoption.WithHeader("x-mock-cut-after", "3"))
	s := c.Messages.NewStreaming(context.Background(), msgParams("claude", "hi", 16))
	for s.Next() {
	}
	if s.Err() == nil {
		t.Error("the SDK saw no error in a cut stream")
	}
}

// A Messages API answer and a chat answer to the same body are cached apart.
func TestMessagesCacheApartFromChat(t *testing.T) {
	_, vaddr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 4})
	g := startGateway(t, mockConfig(vaddr, "", `  - {name: cached, type: chat, routes: [{backend: up}], cache: {ttl: 1m}}
`))
	body := `{"model":"cached","max_tokens":8,"messages":[{"role":"user","content":"same body"}]}`
	first, mb := msgPost(t, g, body)
	again, mb2 := msgPost(t, g, body)
	if first.StatusCode != 200 || again.StatusCode != 200 || mb != mb2 || !strings.Contains(mb, `"type":"message"`) {
		t.Fatalf("messages: %d %s / %d %s", first.StatusCode, mb, again.StatusCode, mb2)
	}
	if again.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("second Messages call: cache %q", again.Header.Get("X-Tollgate-Cache"))
	}
	resp, cb := postChatMode(t, g, "", "", body)
	if resp.StatusCode != 200 || !strings.Contains(cb, `"chat.completion"`) || resp.Header.Get("X-Tollgate-Cache") == "hit" {
		t.Errorf("chat after messages: %d cache %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), cb)
	}
}

// The refusals made before a body is read are in the Messages API's shape on its
// path too: a bad key or an oversized body announced with Expect: 100-continue, a
// method other than POST, a body over max_body_bytes.
func TestMessagesRefusalsBeforeTheBody(t *testing.T) {
	e := startMessages(t, `auth: {mode: keys, keys: [{name: team, key: sk-team-1234}]}
`)
	expect := func(key string, length int) *fasthttp.Response {
		ctx := newProxyCtx(nil)
		ctx.Request.SetRequestURI("/v1/messages")
		ctx.Request.Header.Set("Expect", "100-continue")
		ctx.Request.Header.Set("x-api-key", key)
		ctx.Request.Header.SetContentLength(length)
		e.g.expectContinue(ctx)
		return &ctx.Response
	}
	for _, c := range []struct {
		name   string
		resp   *fasthttp.Response
		status int
		typ    string
	}{
		{"bad key", expect("sk-wrong", 10), 401, "authentication_error"},
		{"too large", expect("sk-team-1234", 1<<20), 413, "request_too_large"},
	} {
		if b := string(c.resp.Body()); c.resp.StatusCode() != c.status || !strings.HasPrefix(b, `{"type":"error","error":{"type":"`+c.typ+`"`) {
			t.Errorf("%s: %d %s", c.name, c.resp.StatusCode(), b)
		}
	}
	if ctx := newProxyCtx(nil); true {
		ctx.Request.SetRequestURI("/v1/messages")
		ctx.Request.Header.SetMethod("GET")
		e.g.serveAPI(ctx)
		if b := string(ctx.Response.Body()); ctx.Response.StatusCode() != 405 || !strings.HasPrefix(b, `{"type":"error","error":{"type":"invalid_request_error"`) {
			t.Errorf("GET: %d %s", ctx.Response.StatusCode(), b)
		}
	}
	resp, body := msgPost(t, e.g, `{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"`+strings.Repeat("x", 300<<10)+`"}]}`, "x-api-key", "sk-team-1234")
	if resp.StatusCode != 413 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"request_too_large"`) {
		t.Errorf("oversized body: %d %s", resp.StatusCode, body)
	}
}

// A Messages API call's spans: the server span named by its path, the upstream span
// chat {model} with the upstream's message ID, model and stop reason as the finish
// reason, for an answer and for a stream.
func TestMessagesSpans(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 6, Seed: 2})
	g, exp := startTracedGateway(t, strings.Replace(mockConfig(addr, "", ""), "backends:", "tracing: {exporter: otlp-grpc, sample_ratio: 1}\nbackends:", 1))
	for _, stream := range []string{"false", "true"} {
		id := "msg-span-" + stream
		resp, raw := msgPost(t, g, `{"model":"chat","max_tokens":6,"stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`, "X-Request-Id", id)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %s: %d %s", stream, resp.StatusCode, raw)
		}
		spans := requestSpans(t, g, exp, id)
		server := spans["POST /v1/messages"]
		if len(server) != 1 {
			t.Fatalf("stream %s: spans %v", stream, keys(spans))
		}
		if v, _ := attr(server[0].Snapshot(), "http.route"); v.AsString() != "/v1/messages" {
			t.Errorf("http.route %q", v.Emit())
		}
		up := spans["chat up-model"]
		if len(up) != 1 {
			t.Fatalf("stream %s: no upstream span in %v", stream, keys(spans))
		}
		ro := up[0].Snapshot()
		if v, _ := attr(ro, "gen_ai.operation.name"); v.AsString() != "chat" {
			t.Errorf("gen_ai.operation.name %q", v.Emit())
		}
		if v, _ := attr(ro, "gen_ai.response.finish_reasons"); len(v.AsStringSlice()) != 1 || v.AsStringSlice()[0] == "" {
			t.Errorf("stream %s: finish reasons %v", stream, v.Emit())
		}
		if v, _ := attr(ro, "gen_ai.response.id"); !strings.HasSuffix(v.AsString(), id) {
			t.Errorf("stream %s: response id %q", stream, v.Emit())
		}
		if v, _ := attr(ro, "gen_ai.usage.output_tokens"); v.AsInt64() <= 0 {
			t.Errorf("stream %s: output tokens %v", stream, v.Emit())
		}
	}
}

// The Messages API's token count is passed on as Messages calls are, natively to
// Anthropic and to vLLM's count_tokens; it counts what the message itself would, and
// charges no tokens to a token limit (nothing is generated or read by a model).
func TestMessagesCountTokens(t *testing.T) {
	e := startMessages(t, "")
	c := e.sdk()
	for _, ep := range []string{"claude", "vllm"} {
		t.Run(ep, func(t *testing.T) {
			var resp *http.Response
			n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
				Model:    anthropic.Model(ep),
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("How many tokens is this?"))},
			}, aoption.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
				Model: anthropic.Model(ep), MaxTokens: 8,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("How many tokens is this?"))},
			})
			if err != nil {
				t.Fatal(err)
			}
			if n.InputTokens <= 0 || n.InputTokens != msg.Usage.InputTokens {
				t.Errorf("count_tokens %d, the message's input_tokens %d", n.InputTokens, msg.Usage.InputTokens)
			}
			if got := msgRemaining(t, resp); got != 1000000 {
				t.Errorf("x-ratelimit-remaining-tokens %d after a token count alone; want 1000000 (nothing charged)", got)
			}
			up := e.claude
			if ep == "vllm" {
				up = e.vllm
			}
			if st := up.Stats(); st.Requests["/v1/messages/count_tokens"] != 1 {
				t.Errorf("upstream routes %v", st.Requests)
			}
		})
	}
	resp, body := msgPostTo(t, e.g, "/v1/messages/count_tokens", `{"model":"az","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 400 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"invalid_request_error"`) {
		t.Errorf("azure: %d %s", resp.StatusCode, body)
	}
}
