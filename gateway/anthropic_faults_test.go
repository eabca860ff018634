package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

const (
	afModel        = "claude-test"
	afAnthropicKey = "sk-ant-test"
	afAzureKey     = "az-key-test"
	afAzureVersion = "2024-10-21"
	// afAzureOldVersion refuses stream_options, as Azure's api-versions before
	// 2024-09-01-preview do.
	afAzureOldVersion = "2024-02-01"
)

// afEnv is a gateway in front of three upstreams: a mockllm speaking Anthropic's
// Messages API (backend claude), an Azure OpenAI deployment (backend azure: a mockllm
// behind Azure's URLs) and a scripted Anthropic server for the faults mockllm cannot
// produce (backend fake).
type afEnv struct {
	g      *gw
	claude *mockllm.Server
	azure  *azureUpstream
	fake   *scriptedAnthropic
	http   *http.Client
}

func startAnthropicFaults(t *testing.T) *afEnv {
	t.Helper()
	return startAnthropicFaultsCapped(t, 8)
}

// startAnthropicFaultsCapped is startAnthropicFaults with mockllm's --max-tokens at
// maxTokens: as on Anthropic, a tool call needs room for its whole input.
func startAnthropicFaultsCapped(t *testing.T, maxTokens int) *afEnv {
	t.Helper()
	claude, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: maxTokens, Seed: 5})
	az := startAzureUpstream(t)
	fake := startScriptedAnthropic(t)
	// claude and fake have one target each, and the upstream errors the subtests script
	// add up on it: ejected, it would take no retry (a retry makes no last-resort
	// trial), and the attempts counted would depend on the subtests' order.
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 5s,
           pricing: {input_per_million: 3, output_per_million: 15}, health: {eject_after: 1000}}
  azure: {provider: azure, base_url: "http://`+az.addr+`", deployment: gpt-dep, api_version: "`+afAzureVersion+`",
          model: up-model, api_key: `+afAzureKey+`, timeout: 5s}
  azure-old: {provider: azure, base_url: "http://`+az.addr+`", deployment: gpt-dep, api_version: "`+afAzureOldVersion+`",
              model: up-model, api_key: `+afAzureKey+`, timeout: 5s}
  fake: {provider: anthropic, base_url: "`+fake.url+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 5s,
         health: {eject_after: 1000}}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}], retries: 1}
  - {name: claude-usage, type: chat, routes: [{backend: claude}]}
  - {name: claude-fb, type: chat, routes: [{backend: claude}], retries: 1, fallbacks: [azure]}
  - {name: azure-fb, type: chat, routes: [{backend: azure}], retries: 1, fallbacks: [claude]}
  - {name: claude-slow, type: chat, routes: [{backend: claude}], retries: 1, timeout: 400ms}
  - {name: fake, type: chat, routes: [{backend: fake}], retries: 1}
  - {name: fake-fb, type: chat, routes: [{backend: fake}], retries: 1, fallbacks: [azure]}
  - {name: azure, type: chat, routes: [{backend: azure}]}
  - {name: azure-old, type: chat, routes: [{backend: azure-old}]}
  - name: claude-limited
    type: chat
    routes: [{backend: claude}]
    limits: [{per: user, tokens: 1000, window: day}]
`)
	return &afEnv{g: g, claude: claude, azure: az, fake: fake, http: chaosClient(t)}
}

// sdk is the official client, on the env's HTTP client, without retries.
func (e *afEnv) sdk() *openai.Client {
	c := e.g.client(option.WithHTTPClient(e.http))
	return &c
}

// post sends a raw API call and reads its whole answer.
func (e *afEnv) post(t *testing.T, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return postRaw(t, e.http, e.g.url+path, body, hdr)
}

// messages counts the Messages API calls the claude mock has answered.
func (e *afEnv) messages() int64 { return e.claude.Stats().Requests["/v1/messages"] }

// azureUpstream serves a mockllm (OpenAI API) on Azure OpenAI's deployment URLs:
// {base}/openai/deployments/gpt-dep/{operation}?api-version=... with an api-key header.
// It takes its faults from x-azure-mock-* headers, passed on as x-mock-*, and drops
// plain x-mock-* headers, so that faults meant for an Anthropic backend do not reach it.
type azureUpstream struct {
	mock *mockllm.Server
	addr string

	mu   sync.Mutex
	seen []azureCall
}

// azureCall is what one request to the Azure upstream carried.
type azureCall struct {
	path, version, apiKey, authz, xAPIKey string
	body                                  []byte
}

func startAzureUpstream(t *testing.T) *azureUpstream {
	t.Helper()
	mock, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 8, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	u := &azureUpstream{mock: mock}
	inner := mock.Handler()
	u.addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		c := azureCall{
			path:    string(ctx.Path()),
			version: string(ctx.QueryArgs().Peek("api-version")),
			apiKey:  string(h.Peek("api-key")),
			authz:   string(h.Peek("Authorization")),
			xAPIKey: string(h.Peek("x-api-key")),
			body:    bytes.Clone(ctx.PostBody()),
		}
		u.mu.Lock()
		u.seen = append(u.seen, c)
		u.mu.Unlock()
		op, ok := strings.CutPrefix(c.path, "/openai/deployments/gpt-dep/")
		switch {
		case !ok || c.version != afAzureVersion && c.version != afAzureOldVersion:
			ctx.SetStatusCode(404)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"code":"404","message":"Resource not found"}}`)
			return
		case c.apiKey != afAzureKey:
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}`)
			return
		case c.version == afAzureOldVersion && bytes.Contains(c.body, []byte(`"stream_options"`)):
			ctx.SetStatusCode(400)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":null,"code":null}}`)
			return
		case string(h.Peek("x-azure-fault")) == "429":
			// Azure's own throttling answer: its body has no type and no param.
			ctx.SetStatusCode(429)
			ctx.Response.Header.Set("Retry-After", "30")
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded the token rate limit. Please retry after 30 seconds."}}`)
			return
		}
		faults := map[string]string{}
		var drop []string
		for k, v := range h.All() {
			name := strings.ToLower(string(k))
			if rest, ok := strings.CutPrefix(name, "x-azure-mock-"); ok {
				faults["x-mock-"+rest] = string(v)
			}
			if strings.HasPrefix(name, "x-azure-mock-") || strings.HasPrefix(name, "x-mock-") {
				drop = append(drop, string(k))
			}
		}
		for _, k := range drop {
			h.Del(k)
		}
		for k, v := range faults {
			h.Set(k, v)
		}
		ctx.URI().SetPath("/v1/" + op)
		inner(ctx)
	})
	t.Cleanup(func() { mock.Shutdown() })
	return u
}

// calls returns the requests the Azure upstream has seen.
func (u *azureUpstream) calls() []azureCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]azureCall(nil), u.seen...)
}

// scriptedAnthropic is an Anthropic Messages API whose answers a test writes: each
// request is answered by the next step of the script, and by the last step again once
// the script has run out.
type scriptedAnthropic struct {
	url string

	mu     sync.Mutex
	steps  []http.HandlerFunc
	served int
	bodies [][]byte
}

func startScriptedAnthropic(t *testing.T) *scriptedAnthropic {
	t.Helper()
	s := &scriptedAnthropic{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != afAnthropicKey || r.Header.Get("anthropic-version") == "" {
			anthError(400, "", "invalid_request_error", "scripted: wrong path, key or version")(w, r)
			return
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		var step http.HandlerFunc
		if len(s.steps) > 0 {
			step = s.steps[min(s.served, len(s.steps)-1)]
		}
		s.served++
		s.mu.Unlock()
		if step == nil {
			anthError(500, "", "api_error", "scripted: no script")(w, r)
			return
		}
		step(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// script sets the answers of the next requests.
func (s *scriptedAnthropic) script(steps ...http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps, s.served, s.bodies = steps, 0, nil
}

// requests is how many requests were answered since the script was set.
func (s *scriptedAnthropic) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// anthError answers Anthropic's error body with status and error type typ.
func anthError(status int, retryAfter, typ, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		m, _ := json.Marshal(msg)
		fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%s},"request_id":"req_011scripted"}`, typ, m)
	}
}

// anthRaw answers body as it is.
func anthRaw(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// anthEvents answers 200 with an event stream of events, each flushed on its own; the
// body then ends.
func anthEvents(events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(200)
		for _, ev := range events {
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

func sseEvent(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var (
	anthStart = sseEvent("message_start", `{"type":"message_start","message":{"id":"msg_01scripted","type":"message","role":"assistant","model":"`+afModel+`","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`)
	anthPing  = sseEvent("ping", `{"type":"ping"}`)
	anthStop  = sseEvent("message_stop", `{"type":"message_stop"}`)
	// anthOverloaded is the error event Anthropic sends inside a 200 stream.
	anthOverloaded = sseEvent("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	anthMessage    = `{"id":"msg_01scripted","type":"message","role":"assistant","model":"` + afModel + `","content":[{"type":"text","text":"Hello there."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":3}}`
)

func anthTextStart(i int) string {
	return sseEvent("content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}`, i))
}

func anthText(i int, text string) string {
	return sseEvent("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":%s}}`, i, jsonString(text)))
}

func anthToolStart(i int, id, name string) string {
	return sseEvent("content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"tool_use","id":%q,"name":%q,"input":{}}}`, i, id, name))
}

func anthJSON(i int, partial string) string {
	return sseEvent("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":%s}}`, i, jsonString(partial)))
}

func anthBlockStop(i int) string {
	return sseEvent("content_block_stop", fmt.Sprintf(`{"type":"content_block_stop","index":%d}`, i))
}

func anthDelta(stop string, output int) string {
	return sseEvent("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q,"stop_sequence":null},"usage":{"output_tokens":%d}}`, stop, output))
}

// anthTextStream is a whole stream answering words.
func anthTextStream(words ...string) []string {
	evs := []string{anthStart, anthTextStart(0), anthPing}
	for _, w := range words {
		evs = append(evs, anthText(0, w))
	}
	return append(evs, anthBlockStop(0), anthDelta("end_turn", len(words)), anthStop)
}

// afWant is a documented error answer.
type afWant struct {
	status           int
	typ, code, param string // "" wants null for code and param
}

// afCheckError checks an error answer read with net/http: status, JSON content type,
// OpenAI's body with the type, code and param wanted, and the x-request-id sent.
func afCheckError(t *testing.T, resp *http.Response, body []byte, want afWant, reqID string) {
	t.Helper()
	if resp.StatusCode != want.status {
		t.Errorf("status %d, want %d: %.300q", resp.StatusCode, want.status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error %d with content type %q: %.300q", resp.StatusCode, ct, body)
	}
	if got := resp.Header.Get("X-Request-Id"); got != reqID {
		t.Errorf("x-request-id %q, want %q", got, reqID)
	}
	typ, code, param, msg, err := openAIErrorBody(body)
	if err != nil {
		t.Error(err)
		return
	}
	if typ != want.typ || code != want.code || param != want.param || msg == "" {
		t.Errorf("error type %q code %q param %q message %q, want type %q code %q param %q",
			typ, code, param, msg, want.typ, want.code, want.param)
	}
	if strings.Contains(string(body), afAnthropicKey) || strings.Contains(string(body), afAzureKey) {
		t.Errorf("error body quotes a backend key: %s", body)
	}
}

// afCheckCompletion checks a non-streamed answer the SDK parsed.
func afCheckCompletion(t *testing.T, cc *openai.ChatCompletion, finish string) {
	t.Helper()
	if cc.Object != "chat.completion" || cc.ID == "" || cc.Created == 0 || cc.Model == "" || len(cc.Choices) != 1 {
		t.Fatalf("not a chat.completion: %s", cc.RawJSON())
	}
	ch := cc.Choices[0]
	if ch.FinishReason != finish || ch.Message.Role != "assistant" {
		t.Errorf("finish_reason %q role %q, want %q: %s", ch.FinishReason, ch.Message.Role, finish, cc.RawJSON())
	}
	if cc.Usage.PromptTokens <= 0 || cc.Usage.CompletionTokens <= 0 || cc.Usage.TotalTokens != cc.Usage.PromptTokens+cc.Usage.CompletionTokens {
		t.Errorf("usage %+v: %s", cc.Usage, cc.RawJSON())
	}
	for _, tc := range ch.Message.ToolCalls {
		afCheckArguments(t, tc.Function.Arguments)
	}
}

// afCheckArguments checks that tool call arguments are one JSON object.
func afCheckArguments(t *testing.T, args string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(args), &m); err != nil || m == nil {
		t.Errorf("tool call arguments %q are not a JSON object: %v", args, err)
	}
	return m
}

// afStream reads a stream through the SDK: every chunk must be a
// chat.completion.chunk the accumulator takes. It returns the accumulated answer, the
// finish reasons seen, the usage chunks seen and the stream's error.
func afStream(t *testing.T, c *openai.Client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) (openai.ChatCompletionAccumulator, []string, int, error) {
	t.Helper()
	stream := c.Chat.Completions.NewStreaming(context.Background(), p, opts...)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var finishes []string
	usage := 0
	for stream.Next() {
		ch := stream.Current()
		if ch.Object != "chat.completion.chunk" || ch.ID == "" {
			t.Errorf("not a chat.completion.chunk: %s", ch.RawJSON())
		}
		if !acc.AddChunk(ch) {
			t.Errorf("the SDK's accumulator refused chunk %s", ch.RawJSON())
		}
		for _, c := range ch.Choices {
			if c.FinishReason != "" {
				finishes = append(finishes, c.FinishReason)
			}
		}
		if len(ch.Choices) == 0 && ch.Usage.TotalTokens > 0 {
			usage++
		}
	}
	return acc, finishes, usage, stream.Err()
}

// afStreamErrorCode is the code of the error event that ended an SDK stream.
func afStreamErrorCode(t *testing.T, err error) string {
	t.Helper()
	var se *ssestream.StreamError
	if !errors.As(err, &se) {
		t.Fatalf("stream error %v, want the gateway's error event", err)
	}
	_, code, _, _, perr := openAIErrorBody(se.Event.Data)
	if perr != nil {
		t.Fatal(perr)
	}
	return code
}

// afCheckStream checks a raw streamed answer: 200, an event stream with the
// x-request-id sent, events as chaosCheckStream wants them, and the outcome wanted:
// "done" (finish, [DONE]), "cut", "bad" or "timeout" (an error event of code
// upstream_stream_cut, upstream_bad_response or upstream_timeout, and no [DONE]).
func afCheckStream(t *testing.T, resp *http.Response, body []byte, includeUsage bool, want, reqID string) {
	t.Helper()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content type %q, want a 200 event stream: %.300q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if got := resp.Header.Get("X-Request-Id"); got != reqID {
		t.Errorf("x-request-id %q, want %q", got, reqID)
	}
	got, problem := chaosCheckStream(body, includeUsage)
	if problem != "" {
		t.Fatalf("%s\n%s", problem, body)
	}
	if got != want {
		t.Fatalf("stream ended %q, want %q:\n%s", got, want, body)
	}
	if want != "done" && bytes.Contains(body, []byte("[DONE]")) {
		t.Fatalf("a stream that failed has [DONE]:\n%s", body)
	}
	// Every chunk is one the SDK's types and accumulator take.
	var acc openai.ChatCompletionAccumulator
	for _, ev := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		data := strings.TrimPrefix(ev, "data: ")
		if data == "[DONE]" || strings.HasPrefix(data, `{"error"`) || ev == ": keep-alive" {
			continue
		}
		var ch openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil || !acc.AddChunk(ch) {
			t.Fatalf("the SDK cannot take chunk %s: %v", data, err)
		}
	}
}

var afContentRE = regexp.MustCompile(`"content":"[^"]`)

// afContentChunks counts the chunks of a raw stream that carry text.
func afContentChunks(body []byte) int { return len(afContentRE.FindAll(body, -1)) }

// afAccess waits for the access log line of the request with id and returns it.
func afAccess(t *testing.T, g *gw, id string) map[string]any {
	t.Helper()
	var line map[string]any
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		for _, l := range strings.Split(g.logs.String(), "\n") {
			if !strings.Contains(l, `"msg":"request"`) || !strings.Contains(l, id) {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == id {
				line = m
				return true, ""
			}
		}
		return false, "no access log line for request " + id
	})
	return line
}

// afSettled waits until the gateway holds nothing for the requests it answered:
// nothing in flight on any endpoint or upstream target.
func afSettled(t *testing.T, g *gw) {
	t.Helper()
	chaosEventually(t, 5*time.Second, func() (bool, string) {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		inFlight, _ := promtest.Sum(fams, "tollgate_in_flight_requests", nil)
		var busy []string
		for _, b := range g.rt.Load().backendList {
			for _, tg := range b.Targets() {
				if n := tg.InFlight(); n != 0 {
					busy = append(busy, fmt.Sprintf("%s %s: %d", b.Name, tg.URL, n))
				}
			}
		}
		return inFlight == 0 && len(busy) == 0, fmt.Sprintf("tollgate_in_flight_requests %v; targets in flight: %v", inFlight, busy)
	})
}

func afNum(m map[string]any, k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

// TestAnthropicFaultsUpstreamErrors: the Anthropic upstream's errors come back in
// OpenAI's shape with the documented status: 429 and 5xx retried (waiting out a short
// Retry-After, not retried past a long one, which is passed on), 4xx not retried, 529
// overloaded answered as 503, streamed requests answered as plain JSON errors.
func TestAnthropicFaultsUpstreamErrors(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	cases := []struct {
		name       string
		status     string
		retryAfter string
		stream     bool
		attempts   int64
		want       afWant
		wantRA     string
		minTook    time.Duration
		maxTook    time.Duration
	}{
		{name: "529 overloaded", status: "529", attempts: 2, want: afWant{503, "server_error", "overloaded", ""}},
		{name: "529 overloaded streamed", status: "529", stream: true, attempts: 2, want: afWant{503, "server_error", "overloaded", ""}},
		{name: "529 short retry-after", status: "529", retryAfter: "0.3", attempts: 2, want: afWant{503, "server_error", "overloaded", ""},
			wantRA: "1", minTook: 300 * time.Millisecond},
		{name: "529 long retry-after", status: "529", retryAfter: "30", attempts: 1, want: afWant{503, "server_error", "overloaded", ""},
			wantRA: "30", maxTook: 2 * time.Second},
		{name: "429 long retry-after", status: "429", retryAfter: "30", attempts: 1,
			want: afWant{429, "rate_limit_exceeded", "rate_limit_exceeded", ""}, wantRA: "30", maxTook: 2 * time.Second},
		{name: "429 long retry-after streamed", status: "429", retryAfter: "30", stream: true, attempts: 1,
			want: afWant{429, "rate_limit_exceeded", "rate_limit_exceeded", ""}, wantRA: "30", maxTook: 2 * time.Second},
		{name: "429", status: "429", attempts: 2, want: afWant{429, "rate_limit_exceeded", "rate_limit_exceeded", ""}},
		{name: "500", status: "500", attempts: 2, want: afWant{500, "server_error", "", ""}},
		{name: "504 timeout_error", status: "504", attempts: 2, want: afWant{504, "server_error", "timeout", ""}},
		{name: "400", status: "400", attempts: 1, want: afWant{400, "invalid_request_error", "", ""}},
		{name: "400 streamed", status: "400", stream: true, attempts: 1, want: afWant{400, "invalid_request_error", "", ""}},
		{name: "401", status: "401", attempts: 1, want: afWant{401, "authentication_error", "invalid_api_key", ""}},
		{name: "403", status: "403", attempts: 1, want: afWant{403, "permission_error", "", ""}},
		{name: "402 billing_error", status: "402", attempts: 1, want: afWant{402, "insufficient_quota", "insufficient_quota", ""}},
		{name: "404 not_found_error", status: "404", attempts: 1, want: afWant{404, "invalid_request_error", "not_found", ""}},
		{name: "413 request_too_large", status: "413", attempts: 1, want: afWant{413, "invalid_request_error", "request_too_large", ""}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("af-err-%d", i)
			hdr := map[string]string{"X-Request-Id": id, "x-mock-status": tc.status}
			if tc.retryAfter != "" {
				hdr["x-mock-retry-after"] = tc.retryAfter
			}
			body := fmt.Sprintf(`{"model":"claude","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tc.stream)
			before := e.messages()
			start := time.Now()
			resp, b := e.post(t, "/v1/chat/completions", body, hdr)
			took := time.Since(start)
			afCheckError(t, resp, b, tc.want, id)
			if got := resp.Header.Get("Retry-After"); got != tc.wantRA {
				t.Errorf("retry-after %q, want %q", got, tc.wantRA)
			}
			if n := e.messages() - before; n != tc.attempts {
				t.Errorf("%d upstream attempts, want %d", n, tc.attempts)
			}
			if took < tc.minTook || tc.maxTook > 0 && took > tc.maxTook {
				t.Errorf("answered in %v, want between %v and %v", took, tc.minTook, tc.maxTook)
			}
			if got := resp.Header.Get("X-Tollgate-Backend"); got != "claude" {
				t.Errorf("x-tollgate-backend %q", got)
			}
			line := afAccess(t, e.g, id)
			if afNum(line, "status") != int64(tc.want.status) || afNum(line, "attempts") != tc.attempts {
				t.Errorf("access log: status %v attempts %v, want %d and %d", line["status"], line["attempts"], tc.want.status, tc.attempts)
			}
		})
	}

	t.Run("retry-after past the deadline", func(t *testing.T) {
		// No wait runs past the endpoint's timeout (400ms): the 429 stands at once.
		before := e.messages()
		start := time.Now()
		resp, b := e.post(t, "/v1/chat/completions", `{"model":"claude-slow","messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Request-Id": "af-err-deadline", "x-mock-status": "429", "x-mock-retry-after": "1"})
		afCheckError(t, resp, b, afWant{429, "rate_limit_exceeded", "rate_limit_exceeded", ""}, "af-err-deadline")
		if resp.Header.Get("Retry-After") != "1" || e.messages()-before != 1 || time.Since(start) > 900*time.Millisecond {
			t.Errorf("retry-after %q, %d attempts, answered in %v", resp.Header.Get("Retry-After"), e.messages()-before, time.Since(start))
		}
	})

	t.Run("SDK", func(t *testing.T) {
		// The official client reads the translated error as OpenAI's.
		var resp *http.Response
		_, err := e.sdk().Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi")},
			option.WithHeader("x-mock-status", "529"), option.WithHeader("X-Request-Id", "af-err-sdk"), option.WithResponseInto(&resp))
		ae := apiErr(t, err)
		if ae.StatusCode != 503 || ae.Code != "overloaded" || ae.Type != "server_error" || ae.Message == "" {
			t.Fatalf("SDK error %d type %q code %q: %s", ae.StatusCode, ae.Type, ae.Code, ae.Message)
		}
		if resp == nil || resp.Header.Get("X-Request-Id") != "af-err-sdk" {
			t.Fatalf("SDK error answer without its x-request-id")
		}
		stream := e.sdk().Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi")},
			option.WithHeader("x-mock-status", "429"), option.WithHeader("x-mock-retry-after", "30"))
		for stream.Next() {
			t.Errorf("chunk from a refused stream: %s", stream.Current().RawJSON())
		}
		if ae := apiErr(t, stream.Err()); ae.StatusCode != 429 || ae.Code != "rate_limit_exceeded" {
			t.Fatalf("SDK stream error %d %q", ae.StatusCode, ae.Code)
		}
	})

	t.Run("request id made when none is sent", func(t *testing.T) {
		resp, b := e.post(t, "/v1/chat/completions", `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"x-mock-status": "400"})
		id := resp.Header.Get("X-Request-Id")
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("x-request-id %q", id)
		}
		afCheckError(t, resp, b, afWant{400, "invalid_request_error", "", ""}, id)
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsFallback: an overloaded Anthropic backend falls back to an Azure
// OpenAI deployment (at once when the upstream asks for a long Retry-After), and a
// failing Azure deployment falls back to Anthropic; the answer is the fallback's, one
// the SDK parses, streamed or not. Azure gets its deployment URL, api-version and
// api-key, and never the Anthropic key or a bearer token.
func TestAnthropicFaultsFallback(t *testing.T) {
	e := startAnthropicFaults(t)
	c := e.sdk()
	ctx := context.Background()
	params := func(model string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: model, Messages: userMsg("Where does the fallback go?"), MaxTokens: openai.Int(6)}
	}

	t.Run("anthropic 529 to azure", func(t *testing.T) {
		before, azBefore := e.messages(), len(e.azure.calls())
		var resp *http.Response
		cc, err := c.Chat.Completions.New(ctx, params("claude-fb"), option.WithHeader("x-mock-status", "529"),
			option.WithHeader("X-Request-Id", "af-fb-1"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, cc, cc.Choices[0].FinishReason)
		if cc.Choices[0].Message.Content == "" || resp.Header.Get("X-Tollgate-Backend") != "azure" || resp.Header.Get("X-Request-Id") != "af-fb-1" {
			t.Fatalf("answer %s from backend %q", cc.RawJSON(), resp.Header.Get("X-Tollgate-Backend"))
		}
		if n := e.messages() - before; n != 2 {
			t.Errorf("%d attempts on the overloaded backend, want 2 (retries: 1)", n)
		}
		calls := e.azure.calls()[azBefore:]
		if len(calls) != 1 {
			t.Fatalf("azure got %d calls", len(calls))
		}
		az := calls[0]
		if az.path != "/openai/deployments/gpt-dep/chat/completions" || az.version != afAzureVersion || az.apiKey != afAzureKey ||
			az.authz != "" || az.xAPIKey != "" {
			t.Errorf("azure call: %+v", az)
		}
		if line := afAccess(t, e.g, "af-fb-1"); line["backend"] != "azure" || afNum(line, "attempts") != 3 || afNum(line, "output_tokens") != cc.Usage.CompletionTokens {
			t.Errorf("access log %v, want backend azure after 3 attempts with the answer's usage", line)
		}
	})

	t.Run("anthropic 529 to azure streamed", func(t *testing.T) {
		azBefore := len(e.azure.calls())
		var resp *http.Response
		acc, finishes, usage, err := afStream(t, c, params("claude-fb"), option.WithHeader("x-mock-status", "529"),
			option.WithHeader("X-Request-Id", "af-fb-2"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if len(finishes) != 1 || usage != 0 || acc.Choices[0].Message.Content == "" || resp.Header.Get("X-Tollgate-Backend") != "azure" {
			t.Fatalf("finishes %v, usage chunks %d, content %q, backend %q", finishes, usage, acc.Choices[0].Message.Content, resp.Header.Get("X-Tollgate-Backend"))
		}
		calls := e.azure.calls()[azBefore:]
		if len(calls) != 1 || !bytes.Contains(calls[0].body, []byte(`"include_usage":true`)) {
			t.Fatalf("azure stream calls %d, body %s: the gateway did not ask for usage", len(calls), calls[0].body)
		}
		if line := afAccess(t, e.g, "af-fb-2"); afNum(line, "input_tokens") == 0 || afNum(line, "output_tokens") == 0 {
			t.Errorf("the azure stream's hidden usage was not counted: %v", line)
		}
	})

	t.Run("long retry-after goes to the fallback at once", func(t *testing.T) {
		before := e.messages()
		start := time.Now()
		var resp *http.Response
		cc, err := c.Chat.Completions.New(ctx, params("claude-fb"), option.WithHeader("x-mock-status", "529"),
			option.WithHeader("x-mock-retry-after", "30"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the fallback waited %v", took)
		}
		if n := e.messages() - before; n != 1 || resp.Header.Get("X-Tollgate-Backend") != "azure" {
			t.Errorf("%d attempts on a backend that asked for 30 s, answer from %q", n, resp.Header.Get("X-Tollgate-Backend"))
		}
		afCheckCompletion(t, cc, cc.Choices[0].FinishReason)
	})

	t.Run("azure 503 to anthropic", func(t *testing.T) {
		before, azBefore := e.messages(), len(e.azure.calls())
		var resp *http.Response
		cc, err := c.Chat.Completions.New(ctx, params("azure-fb"), option.WithHeader("x-azure-mock-status", "503"),
			option.WithHeader("x-mock-tokens", "20"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, cc, "length")
		if cc.Model != afModel || resp.Header.Get("X-Tollgate-Backend") != "claude" {
			t.Errorf("answer %s from %q", cc.RawJSON(), resp.Header.Get("X-Tollgate-Backend"))
		}
		if n, az := e.messages()-before, len(e.azure.calls())-azBefore; n != 1 || az != 2 {
			t.Errorf("attempts: azure %d (want 2), anthropic %d (want 1)", az, n)
		}
	})

	t.Run("azure 503 to anthropic streamed", func(t *testing.T) {
		var resp *http.Response
		p := params("azure-fb")
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		acc, finishes, usage, err := afStream(t, c, p, option.WithHeader("x-azure-mock-status", "503"),
			option.WithHeader("x-mock-tokens", "20"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if len(finishes) != 1 || finishes[0] != "length" || usage != 1 || acc.Usage.CompletionTokens != 6 || resp.Header.Get("X-Tollgate-Backend") != "claude" {
			t.Fatalf("finishes %v, usage chunks %d (%+v), backend %q", finishes, usage, acc.Usage, resp.Header.Get("X-Tollgate-Backend"))
		}
	})

	t.Run("every backend fails", func(t *testing.T) {
		resp, b := e.post(t, "/v1/chat/completions", `{"model":"claude-fb","messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Request-Id": "af-fb-all", "x-mock-status": "529", "x-azure-mock-status": "500"})
		// The last attempt's answer stands: Azure's own 500 (vLLM's shape: a numeric code).
		afCheckError(t, resp, b, afWant{500, "InternalServerError", "500", ""}, "af-fb-all")
		if got := resp.Header.Get("X-Tollgate-Backend"); got != "azure" {
			t.Errorf("x-tollgate-backend %q", got)
		}
	})

	t.Run("anthropic stream overloaded before message_start to azure", func(t *testing.T) {
		e.fake.script(anthEvents(anthPing, anthOverloaded))
		var resp *http.Response
		acc, finishes, _, err := afStream(t, c, params("fake-fb"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if e.fake.requests() != 2 || len(finishes) != 1 || acc.Choices[0].Message.Content == "" || resp.Header.Get("X-Tollgate-Backend") != "azure" {
			t.Fatalf("%d anthropic attempts, finishes %v, content %q, backend %q", e.fake.requests(), finishes, acc.Choices[0].Message.Content, resp.Header.Get("X-Tollgate-Backend"))
		}
	})

	t.Run("azure throttling passed on", func(t *testing.T) {
		var resp *http.Response
		_, err := c.Chat.Completions.New(ctx, params("azure"), option.WithHeader("x-azure-fault", "429"),
			option.WithHeader("X-Request-Id", "af-az-429"), option.WithResponseInto(&resp))
		ae := apiErr(t, err)
		if ae.StatusCode != 429 || ae.Code != "429" || ae.Message == "" {
			t.Fatalf("SDK error %d code %q: %s", ae.StatusCode, ae.Code, ae.Message)
		}
		if resp.Header.Get("Retry-After") != "30" || resp.Header.Get("X-Request-Id") != "af-az-429" {
			t.Fatalf("retry-after %q x-request-id %q", resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"))
		}
		// With a fallback, the long Retry-After sends the request on at once.
		start := time.Now()
		cc, err := c.Chat.Completions.New(ctx, params("azure-fb"), option.WithHeader("x-azure-fault", "429"), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, cc, cc.Choices[0].FinishReason)
		if took := time.Since(start); took > 2*time.Second || resp.Header.Get("X-Tollgate-Backend") != "claude" {
			t.Errorf("answered by %q after %v", resp.Header.Get("X-Tollgate-Backend"), took)
		}
	})

	t.Run("azure api-version without stream_options", func(t *testing.T) {
		azBefore := len(e.azure.calls())
		resp, b := e.post(t, "/v1/chat/completions", `{"model":"azure-old","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"X-Request-Id": "af-az-old"})
		afCheckStream(t, resp, b, false, "done", "af-az-old")
		calls := e.azure.calls()[azBefore:]
		if len(calls) != 1 || calls[0].version != afAzureOldVersion || bytes.Contains(calls[0].body, []byte("stream_options")) {
			t.Fatalf("azure calls %+v", calls)
		}
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsStreamCut: an Anthropic stream the upstream cuts (in the text, in a
// tool call's arguments, or after the last token but before its end) ends with an
// upstream_stream_cut error event and no [DONE], which the SDK reports; an unbroken one
// ends with a finish reason and [DONE].
func TestAnthropicFaultsStreamCut(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	const text = `{"model":"claude","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"Tell me a story."}]}`
	const tool = `{"model":"claude","stream":true,"messages":[{"role":"user","content":"Weather?"}],"tool_choice":"required",
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"},"days":{"type":"integer"}}}}}]}`
	cases := []struct {
		name, body string
		hdr        map[string]string
		want       string
		content    int // content chunks before the end
	}{
		{"whole", text, map[string]string{"x-mock-tokens": "5"}, "done", 5},
		{"cut in the text", text, map[string]string{"x-mock-tokens": "6", "x-mock-cut-after": "3"}, "cut", 3},
		{"cut after the last token", text, map[string]string{"x-mock-tokens": "4", "x-mock-cut-after": "4"}, "cut", 4},
		{"cut in a tool call", tool, map[string]string{"x-mock-cut-after": "1"}, "cut", 0},
		{"whole tool call", tool, nil, "done", 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("af-cut-%d", i)
			hdr := map[string]string{"X-Request-Id": id}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			resp, b := e.post(t, "/v1/chat/completions", tc.body, hdr)
			afCheckStream(t, resp, b, false, tc.want, id)
			if n := afContentChunks(b); n != tc.content {
				t.Errorf("%d content chunks, want %d:\n%s", n, tc.content, b)
			}
			line := afAccess(t, e.g, id)
			if wantErr := map[string]string{"done": "", "cut": "upstream_stream_cut"}[tc.want]; line["error"] != wantErr {
				t.Errorf("access log error %q, want %q", line["error"], wantErr)
			}
		})
	}

	t.Run("SDK", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("Tell me a story."), MaxTokens: openai.Int(8)}
		acc, finishes, _, err := afStream(t, e.sdk(), p, option.WithHeader("x-mock-tokens", "6"), option.WithHeader("x-mock-cut-after", "2"))
		if code := afStreamErrorCode(t, err); code != "upstream_stream_cut" {
			t.Fatalf("error event code %q", code)
		}
		if len(finishes) != 0 || len(acc.Choices) == 0 || len(strings.Fields(acc.Choices[0].Message.Content)) != 2 {
			t.Fatalf("a cut stream gave finish reasons %v and content %+v", finishes, acc.Choices)
		}
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsScriptedStreams: faults of a real Messages API stream that mockllm
// cannot make: an error event (overloaded_error) mid-stream or before message_start,
// events that are not JSON, a body that just ends, a stream answered as JSON, error
// bodies that are not JSON.
func TestAnthropicFaultsScriptedStreams(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	const stream = `{"model":"fake","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	const plain = `{"model":"fake","messages":[{"role":"user","content":"hi"}]}`

	t.Run("overloaded_error mid-stream", func(t *testing.T) {
		e.fake.script(anthEvents(anthStart, anthTextStart(0), anthText(0, "Hello"), anthText(0, " there"), anthOverloaded))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-1"})
		afCheckStream(t, resp, b, false, "cut", "af-s-1")
		if n := afContentChunks(b); n != 2 || e.fake.requests() != 1 {
			t.Errorf("%d content chunks (want 2), %d upstream requests (want 1):\n%s", n, e.fake.requests(), b)
		}
		if line := afAccess(t, e.g, "af-s-1"); line["error"] != "upstream_stream_cut" {
			t.Errorf("access log: %v", line)
		}
		// What the upstream said reaches the client with the error event.
		if !strings.Contains(string(b), `"message":"The upstream model server ended the stream early (overloaded_error: Overloaded)."`) {
			t.Errorf("error event without the upstream's overloaded_error:\n%s", b)
		}
		// The same through the SDK.
		e.fake.script(anthEvents(anthStart, anthTextStart(0), anthText(0, "Hello"), anthOverloaded))
		acc, finishes, _, err := afStream(t, e.sdk(), openai.ChatCompletionNewParams{Model: "fake", Messages: userMsg("hi")})
		if code := afStreamErrorCode(t, err); code != "upstream_stream_cut" || len(finishes) != 0 || acc.Choices[0].Message.Content != "Hello" {
			t.Fatalf("code %q, finishes %v, content %+v", code, finishes, acc.Choices)
		}
	})

	t.Run("overloaded_error before message_start is retried", func(t *testing.T) {
		e.fake.script(anthEvents(anthOverloaded), anthEvents(anthTextStream("Hello", " again")...))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-2"})
		afCheckStream(t, resp, b, false, "done", "af-s-2")
		if e.fake.requests() != 2 || !bytes.Contains(b, []byte(`"content":" again"`)) {
			t.Errorf("%d upstream requests (want 2):\n%s", e.fake.requests(), b)
		}
		if line := afAccess(t, e.g, "af-s-2"); afNum(line, "attempts") != 2 || afNum(line, "input_tokens") != 12 || afNum(line, "output_tokens") != 2 {
			t.Errorf("access log: %v", line)
		}
	})

	t.Run("overloaded_error before message_start every time", func(t *testing.T) {
		e.fake.script(anthEvents(anthPing, anthOverloaded))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-3"})
		afCheckError(t, resp, b, afWant{503, "server_error", "overloaded", ""}, "af-s-3")
		if e.fake.requests() != 2 {
			t.Errorf("%d upstream requests, want 2", e.fake.requests())
		}
	})

	t.Run("non-JSON event mid-stream", func(t *testing.T) {
		e.fake.script(anthEvents(anthStart, anthTextStart(0), anthText(0, "Hello"), "data: <html><body>502 Bad Gateway</body></html>\n\n", anthStop))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-4"})
		afCheckStream(t, resp, b, false, "bad", "af-s-4")
		if bytes.Contains(b, []byte("html")) {
			t.Errorf("the upstream's garbage reached the client:\n%s", b)
		}
	})

	t.Run("non-JSON first event", func(t *testing.T) {
		e.fake.script(anthEvents("data: {\"type\": this is not json\n\n", anthStop))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-5"})
		afCheckError(t, resp, b, afWant{502, "server_error", "upstream_bad_response", ""}, "af-s-5")
	})

	t.Run("deltas before message_start", func(t *testing.T) {
		e.fake.script(anthEvents(anthTextStart(0), anthText(0, "Hello"), anthStop))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-6"})
		afCheckError(t, resp, b, afWant{502, "server_error", "upstream_bad_response", ""}, "af-s-6")
	})

	t.Run("body ends without message_stop", func(t *testing.T) {
		e.fake.script(anthEvents(anthStart, anthTextStart(0), anthText(0, "Hel")))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-7"})
		afCheckStream(t, resp, b, false, "cut", "af-s-7")
	})

	t.Run("stream answered as JSON", func(t *testing.T) {
		e.fake.script(anthRaw(200, "application/json", anthMessage))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-8"})
		afCheckError(t, resp, b, afWant{502, "server_error", "upstream_bad_response", ""}, "af-s-8")
	})

	t.Run("answer that is not a message", func(t *testing.T) {
		for i, body := range []string{`<html>oops</html>`, `{"type":"message","content":[]}`, `{"id":"m","model":"x","content":"text"}`} {
			e.fake.script(anthRaw(200, "application/json", body))
			id := fmt.Sprintf("af-s-9-%d", i)
			resp, b := e.post(t, "/v1/chat/completions", plain, map[string]string{"X-Request-Id": id})
			afCheckError(t, resp, b, afWant{502, "server_error", "upstream_bad_response", ""}, id)
		}
	})

	t.Run("error bodies that are not JSON", func(t *testing.T) {
		cases := []struct {
			status   int
			want     afWant
			attempts int
		}{
			{529, afWant{503, "server_error", "", ""}, 2},
			{502, afWant{502, "server_error", "", ""}, 2},
			{413, afWant{413, "invalid_request_error", "", ""}, 1},
		}
		for _, tc := range cases {
			e.fake.script(anthRaw(tc.status, "text/html", "<html><body><h1>Bad things</h1></body></html>"))
			id := fmt.Sprintf("af-s-10-%d", tc.status)
			resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": id})
			afCheckError(t, resp, b, tc.want, id)
			if e.fake.requests() != tc.attempts {
				t.Errorf("upstream %d: %d attempts, want %d", tc.status, e.fake.requests(), tc.attempts)
			}
		}
	})

	t.Run("scripted answer parses", func(t *testing.T) {
		e.fake.script(anthRaw(200, "application/json", anthMessage))
		cc, err := e.sdk().Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "fake", Messages: userMsg("hi")})
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, cc, "stop")
		if cc.Choices[0].Message.Content != "Hello there." || cc.Usage.PromptTokens != 12 || cc.Usage.CompletionTokens != 3 {
			t.Fatalf("answer %s", cc.RawJSON())
		}
	})

	t.Run("body held open after message_stop", func(t *testing.T) {
		released := make(chan struct{})
		e.fake.script(func(w http.ResponseWriter, r *http.Request) {
			anthEvents(anthTextStream("Hello", " there")...)(w, r)
			<-r.Context().Done()
			close(released)
		})
		start := time.Now()
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-17"})
		afCheckStream(t, resp, b, false, "done", "af-s-17")
		if took := time.Since(start); took > time.Second {
			t.Errorf("the stream took %v: the gateway waited for the end of a body held open after message_stop", took)
		}
		select {
		case <-released:
		case <-time.After(3 * time.Second):
			t.Fatal("the gateway still holds the upstream connection 3s after message_stop")
		}
	})

	t.Run("prompt too long", func(t *testing.T) {
		e.fake.script(anthError(400, "", "invalid_request_error", "prompt is too long: 209353 tokens > 200000 maximum"))
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-16"})
		afCheckError(t, resp, b, afWant{400, "invalid_request_error", "context_length_exceeded", "messages"}, "af-s-16")
	})

	t.Run("retry-after as a date", func(t *testing.T) {
		e.fake.script(anthError(529, time.Now().Add(30*time.Second).UTC().Format(http.TimeFormat), "overloaded_error", "Overloaded"))
		start := time.Now()
		resp, b := e.post(t, "/v1/chat/completions", plain, map[string]string{"X-Request-Id": "af-s-11"})
		afCheckError(t, resp, b, afWant{503, "server_error", "overloaded", ""}, "af-s-11")
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 28 || n > 31 {
			t.Errorf("retry-after %q, want about 30 seconds", resp.Header.Get("Retry-After"))
		}
		if e.fake.requests() != 1 || time.Since(start) > 2*time.Second {
			t.Errorf("%d attempts in %v on a backend that asked for 30 s", e.fake.requests(), time.Since(start))
		}
	})

	t.Run("empty stream", func(t *testing.T) {
		e.fake.script(anthEvents())
		resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": "af-s-12"})
		if resp.StatusCode != 502 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		_, code, _, _, err := openAIErrorBody(b)
		// The upstream was reached and answered: its answer is bad, not missing.
		if err != nil || code != "upstream_bad_response" {
			t.Fatalf("a 200 stream without a single event: code %q (%v): %s", code, err, b)
		}
		afCheckError(t, resp, b, afWant{502, "server_error", code, ""}, "af-s-12")
	})

	t.Run("other line endings and field spacing", func(t *testing.T) {
		// CRLF line ends, and fields without the space after the colon, as the
		// event-stream format allows.
		var crlf, tight []string
		for _, ev := range anthTextStream("Hello", " world") {
			crlf = append(crlf, strings.ReplaceAll(ev, "\n", "\r\n"))
			tight = append(tight, strings.NewReplacer("event: ", "event:", "data: ", "data:").Replace(ev))
		}
		for i, evs := range [][]string{crlf, tight} {
			e.fake.script(anthEvents(evs...))
			id := fmt.Sprintf("af-s-15-%d", i)
			resp, b := e.post(t, "/v1/chat/completions", stream, map[string]string{"X-Request-Id": id})
			afCheckStream(t, resp, b, false, "done", id)
			if !bytes.Contains(b, []byte(`"content":" world"`)) {
				t.Errorf("content lost:\n%s", b)
			}
		}
	})

	t.Run("prompt cache usage", func(t *testing.T) {
		const usage = `"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"output_tokens":7}`
		e.fake.script(anthRaw(200, "application/json", strings.Replace(anthMessage, `"usage":{"input_tokens":12,"output_tokens":3}`, usage, 1)),
			anthEvents(strings.Replace(anthStart, `"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}`, usage, 1),
				anthTextStart(0), anthText(0, "Hi"), anthBlockStop(0), anthDelta("end_turn", 7), anthStop))
		c := e.sdk()
		p := openai.ChatCompletionNewParams{Model: "fake", Messages: userMsg("hi"), StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}
		plain, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "fake", Messages: userMsg("hi")},
			option.WithHeader("X-Request-Id", "af-s-13"))
		if err != nil {
			t.Fatal(err)
		}
		acc, _, n, err := afStream(t, c, p, option.WithHeader("X-Request-Id", "af-s-14"))
		if err != nil || n != 1 {
			t.Fatalf("stream: %v, %d usage chunks", err, n)
		}
		for _, u := range []openai.CompletionUsage{plain.Usage, acc.Usage} {
			if u.PromptTokens != 305 || u.CompletionTokens != 7 || u.TotalTokens != 312 || u.PromptTokensDetails.CachedTokens != 200 {
				t.Errorf("usage %+v, want 305 prompt tokens (200 cached), 7 completion", u)
			}
		}
		for _, id := range []string{"af-s-13", "af-s-14"} {
			if line := afAccess(t, e.g, id); afNum(line, "input_tokens") != 305 || afNum(line, "output_tokens") != 7 {
				t.Errorf("access log %v, want 305 input and 7 output tokens", line)
			}
		}
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsSlowFirstToken: an Anthropic upstream slower than the endpoint's
// timeout (before its answer's headers, or before its first token) is cut at the
// timeout: 504 upstream_timeout for an answer not begun, an error event and no [DONE]
// for a stream that has.
func TestAnthropicFaultsSlowFirstToken(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	const limit = 2 * time.Second // the endpoint's 400ms, with room for a busy machine
	for i, tc := range []struct {
		name   string
		stream bool
		hdr    string
	}{
		{"headers late", false, "x-mock-delay"},
		{"first token late", false, "x-mock-ttft"},
		{"stream headers late", true, "x-mock-delay"},
		{"stream first token late", true, "x-mock-ttft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("af-slow-%d", i)
			body := fmt.Sprintf(`{"model":"claude-slow","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tc.stream)
			start := time.Now()
			resp, b := e.post(t, "/v1/chat/completions", body, map[string]string{"X-Request-Id": id, tc.hdr: "4s"})
			if took := time.Since(start); took > limit {
				t.Errorf("answered after %v with the endpoint's timeout at 400ms", took)
			}
			if resp.StatusCode == 200 && tc.stream {
				// The stream had begun (message_start comes before the first token).
				afCheckStream(t, resp, b, false, "timeout", id)
				if afContentChunks(b) != 0 {
					t.Errorf("content from a stream whose first token never came:\n%s", b)
				}
				return
			}
			afCheckError(t, resp, b, afWant{504, "server_error", "upstream_timeout", ""}, id)
		})
	}

	t.Run("SDK stream", func(t *testing.T) {
		start := time.Now()
		_, finishes, _, err := afStream(t, e.sdk(), openai.ChatCompletionNewParams{Model: "claude-slow", Messages: userMsg("hi")},
			option.WithHeader("x-mock-ttft", "4s"))
		if took := time.Since(start); took > limit {
			t.Errorf("stream ended after %v", took)
		}
		var ae *openai.Error
		switch {
		case errors.As(err, &ae):
			if ae.StatusCode != 504 || ae.Code != "upstream_timeout" {
				t.Fatalf("SDK error %d %q", ae.StatusCode, ae.Code)
			}
		default:
			if code := afStreamErrorCode(t, err); code != "upstream_timeout" || len(finishes) != 0 {
				t.Fatalf("error event %q, finishes %v", code, finishes)
			}
		}
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsToolCalls: tool calls come back as OpenAI tool_calls with
// arguments that are one JSON object, streamed or not, the same both ways; several
// tool calls in one answer, arguments with escapes, a call without arguments ("{}"),
// text before a call, and the tool result sent back.
func TestAnthropicFaultsToolCalls(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaultsCapped(t, 64)
	c := e.sdk()
	ctx := context.Background()
	weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}, "metric": map[string]any{"type": "boolean"},
		}, "required": []string{"city"}},
	})
	clock := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_time"})
	tools := []openai.ChatCompletionToolUnionParam{weather, clock}

	check := func(t *testing.T, cc openai.ChatCompletion, finishes []string, streamed bool) {
		t.Helper()
		if streamed && (len(finishes) != 1 || finishes[0] != "tool_calls") {
			t.Fatalf("finish reasons %v", finishes)
		}
		if !streamed {
			afCheckCompletion(t, &cc, "tool_calls")
		}
		for _, tc := range cc.Choices[0].Message.ToolCalls {
			if tc.ID == "" || tc.Type != "function" || tc.Function.Name == "" {
				t.Errorf("tool call %+v", tc)
			}
			afCheckArguments(t, tc.Function.Arguments)
		}
	}

	// bothWays asks p plain and streamed and checks both answers.
	bothWays := func(t *testing.T, p openai.ChatCompletionNewParams) (*openai.ChatCompletion, openai.ChatCompletionAccumulator) {
		t.Helper()
		plain, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, *plain, nil, false)
		acc, finishes, _, err := afStream(t, c, p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, acc.ChatCompletion, finishes, true)
		return plain, acc
	}

	t.Run("required", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("Weather in Paris?"), Tools: tools,
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}}
		plain, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, *plain, nil, false)
		calls := plain.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || plain.Choices[0].Message.Content != "" {
			t.Fatalf("answer %s", plain.RawJSON())
		}
		args := afCheckArguments(t, calls[0].Function.Arguments)
		if _, ok := args["city"].(string); !ok || len(args) != 3 {
			t.Errorf("arguments %s do not follow the schema", calls[0].Function.Arguments)
		}
		acc, finishes, _, err := afStream(t, c, p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, acc.ChatCompletion, finishes, true)
		got := acc.Choices[0].Message.ToolCalls
		if len(got) != 1 || got[0].Function.Name != "get_weather" || got[0].Function.Arguments != calls[0].Function.Arguments {
			t.Fatalf("streamed tool calls %+v, non-streamed %+v", got, calls)
		}
	})

	t.Run("named tool without arguments", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("What time is it?"), Tools: tools,
			ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_time"})}
		plain, acc := bothWays(t, p)
		for _, calls := range [][]openai.ChatCompletionMessageToolCallUnion{plain.Choices[0].Message.ToolCalls, acc.Choices[0].Message.ToolCalls} {
			if len(calls) != 1 || calls[0].Function.Name != "get_time" || calls[0].Function.Arguments != "{}" {
				t.Fatalf("tool calls %+v, want get_time with {}", calls)
			}
		}
	})

	t.Run("text before the call", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("Please use get_weather for Oslo."), Tools: tools}
		plain, acc := bothWays(t, p)
		pm, sm := plain.Choices[0].Message, acc.Choices[0].Message
		if pm.Content == "" || pm.Content != sm.Content || len(sm.ToolCalls) != 1 || len(pm.ToolCalls) != 1 ||
			sm.ToolCalls[0].Function.Arguments != pm.ToolCalls[0].Function.Arguments {
			t.Fatalf("streamed %+v, non-streamed %+v", sm, pm)
		}
	})

	t.Run("tool result sent back", func(t *testing.T) {
		body := `{"model":"claude","messages":[{"role":"user","content":"Weather in Paris?"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_01abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
			{"role":"tool","tool_call_id":"toolu_01abc","content":"sunny, 21C"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
		resp, b := e.post(t, "/v1/chat/completions", body, map[string]string{"X-Request-Id": "af-tool-result"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(b, &cc); err != nil {
			t.Fatalf("the SDK cannot parse %s: %v", b, err)
		}
		afCheckCompletion(t, &cc, "stop")
		if cc.Choices[0].Message.Content == "" || len(cc.Choices[0].Message.ToolCalls) != 0 {
			t.Fatalf("answer to a tool result: %s", b)
		}
		sent := string(e.claude.Stats().LastBody)
		for _, want := range []string{`"type":"tool_use","id":"toolu_01abc","name":"get_weather","input":{"city": "Paris"}`,
			`{"type":"tool_result","tool_use_id":"toolu_01abc","content":"sunny, 21C"}`} {
			if !strings.Contains(sent, want) {
				t.Errorf("upstream body lacks %s:\n%s", want, sent)
			}
		}
	})

	t.Run("parallel calls with escapes", func(t *testing.T) {
		city := "Paris \"15e\" \\ é\n😀"
		argsA := `{"city": ` + jsonString(city) + `, "days": 3}`
		e.fake.script(anthRaw(200, "application/json", `{"id":"msg_01par","type":"message","role":"assistant","model":"`+afModel+`",
			"content":[{"type":"text","text":"Checking."},
			{"type":"tool_use","id":"toolu_A","name":"get_weather","input":`+argsA+`},
			{"type":"tool_use","id":"toolu_B","name":"get_time","input":{}}],
			"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":30}}`),
			anthEvents(anthStart, anthTextStart(0), anthText(0, "Checking."), anthBlockStop(0),
				anthToolStart(1, "toolu_A", "get_weather"), anthJSON(1, ""), anthJSON(1, argsA[:9]), anthJSON(1, argsA[9:16]),
				anthJSON(1, argsA[16:]), anthBlockStop(1),
				anthToolStart(2, "toolu_B", "get_time"), anthJSON(2, ""), anthBlockStop(2),
				anthDelta("tool_use", 30), anthStop))
		p := openai.ChatCompletionNewParams{Model: "fake", Messages: userMsg("Weather and time?"), Tools: tools}
		plain, acc := bothWays(t, p)
		for _, m := range []openai.ChatCompletionMessage{plain.Choices[0].Message, acc.Choices[0].Message} {
			calls := m.ToolCalls
			if m.Content != "Checking." || len(calls) != 2 || calls[0].ID != "toolu_A" || calls[1].ID != "toolu_B" ||
				calls[0].Function.Name != "get_weather" || calls[1].Function.Name != "get_time" || calls[1].Function.Arguments != "{}" {
				t.Fatalf("message %+v", m)
			}
			args := afCheckArguments(t, calls[0].Function.Arguments)
			if args["city"] != city || args["days"] != float64(3) {
				t.Fatalf("arguments %q lost their value: %v", calls[0].Function.Arguments, args)
			}
		}
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsUsage: Anthropic's token counts reach the SDK, the access log,
// tollgate_tokens_total and tollgate_cost_usd_total, streamed (usage hidden from a
// client that did not ask for it) or not; a tokens-per-window limit is charged the
// real usage, and nothing for an upstream error or a refused request.
func TestAnthropicFaultsUsage(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	c := e.sdk()
	ctx := context.Background()

	t.Run("log and metrics", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude-usage", Messages: userMsg("Count my tokens, please."), MaxTokens: openai.Int(7)}
		// An answer longer than max_tokens: cut at 7 tokens.
		long := option.WithHeader("x-mock-tokens", "20")
		plain, err := c.Chat.Completions.New(ctx, p, option.WithHeader("X-Request-Id", "af-use-1"), long)
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, plain, "length")
		in, out := plain.Usage.PromptTokens, plain.Usage.CompletionTokens
		if out != 7 {
			t.Fatalf("usage %+v with max_tokens 7", plain.Usage)
		}

		// A client that did not ask for stream usage gets none; the gateway counts it.
		_, finishes, usage, err := afStream(t, c, p, option.WithHeader("X-Request-Id", "af-use-2"), long)
		if err != nil || usage != 0 || len(finishes) != 1 || finishes[0] != "length" {
			t.Fatalf("stream without include_usage: %v, %d usage chunks, finishes %v", err, usage, finishes)
		}
		withUsage := p
		withUsage.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		acc, _, usage, err := afStream(t, c, withUsage, option.WithHeader("X-Request-Id", "af-use-3"), long)
		if err != nil || usage != 1 || acc.Usage.PromptTokens != in || acc.Usage.CompletionTokens != out {
			t.Fatalf("stream with include_usage: %v, %d usage chunks, usage %+v, want %d/%d", err, usage, acc.Usage, in, out)
		}
		for _, id := range []string{"af-use-1", "af-use-2", "af-use-3"} {
			line := afAccess(t, e.g, id)
			if afNum(line, "input_tokens") != in || afNum(line, "output_tokens") != out || afNum(line, "status") != 200 || line["backend"] != "claude" {
				t.Errorf("access log %v, want %d input and %d output tokens", line, in, out)
			}
		}
		fams, err := promtest.Scrape("http://" + e.g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		tokens := func(typ string) float64 {
			v, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool {
				return l["endpoint"] == "claude-usage" && l["backend"] == "claude" && l["type"] == typ
			})
			return v
		}
		if got, want := tokens("input"), float64(3*in); got != want {
			t.Errorf("tollgate_tokens_total{type=input} = %v, want %v", got, want)
		}
		if got, want := tokens("output"), float64(3*out); got != want {
			t.Errorf("tollgate_tokens_total{type=output} = %v, want %v", got, want)
		}
		cost, _ := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return l["endpoint"] == "claude-usage" })
		if want := 3 * (float64(in)*3 + float64(out)*15) / 1e6; math.Abs(cost-want) > 1e-12 {
			t.Errorf("tollgate_cost_usd_total = %v, want %v", cost, want)
		}
	})

	// The limit holds 1000 tokens a day per user; every request asks for far more than
	// the upstream gives (8 tokens at most), so a request is admitted only when the
	// ones before it were charged what they really used.
	t.Run("token limit settles real usage", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: "claude-limited", Messages: userMsg("first"), MaxTokens: openai.Int(600), User: openai.String("u-settle")}
		first, err := c.Chat.Completions.New(ctx, p, option.WithHeader("X-Request-Id", "af-lim-1"))
		if err != nil {
			t.Fatal(err)
		}
		used := first.Usage.TotalTokens
		afAccess(t, e.g, "af-lim-1")

		p.Messages = userMsg("second")
		_, _, _, err = afStream(t, c, p, option.WithHeader("X-Request-Id", "af-lim-2"))
		if err != nil {
			t.Fatalf("second request (the first charged its estimate?): %v", err)
		}
		line := afAccess(t, e.g, "af-lim-2")
		if afNum(line, "output_tokens") == 0 {
			t.Fatalf("the stream's usage was not counted: %v", line)
		}
		used += afNum(line, "input_tokens") + afNum(line, "output_tokens")

		const third = `{"model":"claude-limited","user":"u-settle","max_tokens":600,"messages":[{"role":"user","content":"third"}]}`
		resp, b := e.post(t, "/v1/chat/completions", third, map[string]string{"X-Request-Id": "af-lim-3"})
		if resp.StatusCode != 200 {
			t.Fatalf("third request (the stream charged its estimate?): %d %s", resp.StatusCode, b)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(b, &cc); err != nil {
			t.Fatalf("the SDK cannot parse %s: %v", b, err)
		}
		afCheckCompletion(t, &cc, cc.Choices[0].FinishReason)
		est := int64(600 + len(`[{"role":"user","content":"third"}]`)/4 + 1)
		remaining, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
		if want := 1000 - used - est; err != nil || remaining < want-1 || remaining > want+1 {
			t.Errorf("x-ratelimit-remaining-tokens %q, want %d (1000 - %d used - %d estimated)", resp.Header.Get("X-Ratelimit-Remaining-Tokens"), want, used, est)
		}
		afAccess(t, e.g, "af-lim-3")

		const fourth = `{"model":"claude-limited","user":"u-settle","max_tokens":990,"messages":[{"role":"user","content":"fourth"}]}`
		resp, b = e.post(t, "/v1/chat/completions", fourth, map[string]string{"X-Request-Id": "af-lim-4"})
		afCheckError(t, resp, b, afWant{429, "rate_limit_exceeded", "rate_limit_exceeded", ""}, "af-lim-4")
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("429 with retry-after %q", resp.Header.Get("Retry-After"))
		}
	})

	t.Run("errors are refunded", func(t *testing.T) {
		const big = `{"model":"claude-limited","user":"u-refund","max_tokens":900,%s"messages":[{"role":"user","content":"hi"}]}`
		resp, b := e.post(t, "/v1/chat/completions", fmt.Sprintf(big, ""), map[string]string{"X-Request-Id": "af-ref-1", "x-mock-status": "529"})
		afCheckError(t, resp, b, afWant{503, "server_error", "overloaded", ""}, "af-ref-1")
		afAccess(t, e.g, "af-ref-1")
		resp, b = e.post(t, "/v1/chat/completions", fmt.Sprintf(big, `"n":2,`), map[string]string{"X-Request-Id": "af-ref-2"})
		afCheckError(t, resp, b, afWant{400, "invalid_request_error", "", "n"}, "af-ref-2")
		afAccess(t, e.g, "af-ref-2")
		resp, b = e.post(t, "/v1/chat/completions", fmt.Sprintf(big, `"stream":true,`), map[string]string{"X-Request-Id": "af-ref-3"})
		afCheckStream(t, resp, b, false, "done", "af-ref-3")
	})
	afSettled(t, e.g)
}

// TestAnthropicFaultsRefusedParams: a request the Messages API cannot express is
// refused by the gateway with 400, OpenAI's error body and the param at fault, streamed
// or not, and never reaches the upstream. (Embeddings and legacy completions on an
// Anthropic backend are a config error: testdata/config/bad-provider-keys.yaml.)
func TestAnthropicFaultsRefusedParams(t *testing.T) {
	t.Parallel()
	e := startAnthropicFaults(t)
	const user = `[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, body, param string
	}{
		{"n 2", `{"model":"claude","n":2,"messages":` + user + `}`, "n"},
		{"n 2 streamed", `{"model":"claude","n":2,"stream":true,"messages":` + user + `}`, "n"},
		{"n 0", `{"model":"claude","n":0,"messages":` + user + `}`, "n"},
		{"n not a number", `{"model":"claude","n":"two","messages":` + user + `}`, "n"},
		{"max_tokens 0", `{"model":"claude","max_tokens":0,"messages":` + user + `}`, "max_tokens"},
		{"max_completion_tokens negative", `{"model":"claude","max_completion_tokens":-1,"messages":` + user + `}`, "max_completion_tokens"},
		{"max_tokens not a number", `{"model":"claude","max_tokens":"ten","messages":` + user + `}`, "max_tokens"},
		{"no messages", `{"model":"claude","messages":[]}`, "messages"},
		{"only a system message", `{"model":"claude","messages":[{"role":"system","content":"be brief"}]}`, "messages"},
		{"function role", `{"model":"claude","messages":[{"role":"function","name":"f","content":"x"}]}`, "messages[0].role"},
		{"unknown role", `{"model":"claude","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role"},
		{"system image", `{"model":"claude","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"hi"}]}`, "messages[0].content[0].type"},
		{"image URL", `{"model":"claude","messages":[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[1].image_url.url"},
		{"uploaded file", `{"model":"claude","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`, "messages[0].content[0].file"},
		{"tool call arguments", `{"model":"claude","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[1].tool_calls[0].function.arguments"},
		{"tool message without id", `{"model":"claude","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"x"}]}`, "messages[1].tool_call_id"},
		{"tool type", `{"model":"claude","messages":` + user + `,"tools":[{"type":"retrieval"}]}`, "tools[0].type"},
		{"tool parameters", `{"model":"claude","messages":` + user + `,"tools":[{"type":"function","function":{"name":"f","parameters":[1]}}]}`, "tools[0].function.parameters"},
		{"tool_choice", `{"model":"claude","messages":` + user + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice"},
		{"stop", `{"model":"claude","messages":` + user + `,"stop":5}`, "stop"},
		{"temperature", `{"model":"claude","messages":` + user + `,"temperature":"hot"}`, "temperature"},
		{"user", `{"model":"claude","messages":` + user + `,"user":5}`, "user"},
	}
	before := e.messages()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("af-param-%d", i)
			resp, b := e.post(t, "/v1/chat/completions", tc.body, map[string]string{"X-Request-Id": id})
			afCheckError(t, resp, b, afWant{400, "invalid_request_error", "", tc.param}, id)
		})
	}
	if n := e.messages() - before; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}

	t.Run("SDK", func(t *testing.T) {
		_, err := e.sdk().Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi"), N: openai.Int(3)})
		if ae := apiErr(t, err); ae.StatusCode != 400 || ae.Param != "n" || ae.Type != "invalid_request_error" {
			t.Fatalf("SDK error %d type %q param %q", ae.StatusCode, ae.Type, ae.Param)
		}
		stream := e.sdk().Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi"), N: openai.Int(2)})
		for stream.Next() {
			t.Errorf("chunk from a refused stream: %s", stream.Current().RawJSON())
		}
		if ae := apiErr(t, stream.Err()); ae.StatusCode != 400 || ae.Param != "n" {
			t.Fatalf("SDK stream error %d param %q", ae.StatusCode, ae.Param)
		}
	})

	t.Run("n 1 is served", func(t *testing.T) {
		cc, err := e.sdk().Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi"), N: openai.Int(1)})
		if err != nil {
			t.Fatal(err)
		}
		afCheckCompletion(t, cc, cc.Choices[0].FinishReason)
	})

	afSettled(t, e.g)
}

// longStream opens a 200-token stream on endpoint model, tokens tpot apart, with request
// ID id, and returns it unread.
func (e *afEnv) longStream(t *testing.T, model, id, tpot string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", e.g.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"A long story, please."}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	req.Header.Set("x-mock-tokens", "200")
	req.Header.Set("x-mock-tpot", tpot)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestAnthropicFaultsClientHangUp: a client that hangs up on an Anthropic stream
// aborts the upstream request at once, and the request is logged as the client's
// (499, client_gone).
func TestAnthropicFaultsClientHangUp(t *testing.T) {
	e := startAnthropicFaults(t)
	// 200 tokens, 50ms apart: ten seconds of stream.
	resp := e.longStream(t, "claude", "af-hangup", "50ms")
	buf := make([]byte, 4096)
	var got []byte
	for afContentChunks(got) == 0 {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("stream ended before its first token: %v\n%s", err, got)
		}
	}
	hungUp := time.Now()
	resp.Body.Close()
	chaosEventually(t, 5*time.Second, func() (bool, string) {
		st := e.claude.Stats()
		return st.Running == 0, fmt.Sprintf("the upstream still streams %v after the client hung up (%d running)", time.Since(hungUp), st.Running)
	})
	if took := time.Since(hungUp); took > 3*time.Second {
		t.Errorf("the upstream request was aborted %v after the client hung up", took)
	}
	line := afAccess(t, e.g, "af-hangup")
	if afNum(line, "status") != 499 || line["error"] != "client_gone" {
		t.Errorf("access log %v, want status 499 and error client_gone", line)
	}
	afSettled(t, e.g)
}

// TestAnthropicFaultsRefusedRequestDecidesNoTrial: a request the gateway refuses
// itself (n: 2, which the Messages API cannot express) never reaches a target, so it
// says nothing about the target's health: when it happens to be the trial request of
// an ejected target, the target stays out of service and the next request that is
// sent is the trial.
func TestAnthropicFaultsRefusedRequestDecidesNoTrial(t *testing.T) {
	t.Parallel()
	_, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 4})
	fake := startScriptedAnthropic(t)
	fake.script(anthError(500, "", "api_error", "broken replica"))
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: anthropic, targets: ["`+fake.url+`/v1", "http://`+caddr+`/v1"], model: `+afModel+`, api_key: `+afAnthropicKey+`,
         health: {eject_after: 2, eject_for: 700ms}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}], retries: 1}
`)
	e := &afEnv{g: g, http: chaosClient(t)}
	broken := strings.TrimPrefix(fake.url, "http://")
	up := func() float64 {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, ok := promtest.Sum(fams, "tollgate_backend_up", func(l map[string]string) bool { return l["backend"] == "pool" && l["target"] == broken })
		if !ok {
			t.Fatal("no tollgate_backend_up")
		}
		return v
	}
	const ask = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	chaosEventually(t, 5*time.Second, func() (bool, string) {
		resp, b := e.post(t, "/v1/chat/completions", ask, nil)
		if resp.StatusCode != 200 {
			t.Errorf("status %d with a healthy replica and a retry: %s", resp.StatusCode, b)
		}
		return up() == 0, "the replica answering 500 was not ejected"
	})
	// The ejection runs out; the next request is the replica's trial. A failed trial
	// ejects it for twice eject_for, longer than the four requests below take on a
	// loaded machine.
	chaosEventually(t, 5*time.Second, func() (bool, string) {
		return up() == 1, "the replica's ejection did not run out"
	})
	sent := fake.requests()
	resp, b := e.post(t, "/v1/chat/completions", `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": "af-trial"})
	afCheckError(t, resp, b, afWant{400, "invalid_request_error", "", "n"}, "af-trial")
	if fake.requests() != sent {
		t.Fatalf("a refused request reached the upstream")
	}
	// Its ejection has run out, so it counts as up until its trial says otherwise.
	for range 4 {
		if resp, b := e.post(t, "/v1/chat/completions", ask, nil); resp.StatusCode != 200 {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
	}
	if n := fake.requests() - sent; n != 1 {
		t.Errorf("the broken replica got %d of the next 4 requests, want its one trial (the refused request decided nothing)", n)
	}
	if v := up(); v != 0 {
		t.Errorf("tollgate_backend_up = %v after the replica failed its trial", v)
	}
}

// TestAnthropicFaultsRefusedRequestTakesNoTarget: a request the Messages API cannot
// express is refused before a target is leased, so what the pool is doing does not
// change its answer: with every replica at max_concurrency it gets its 400 at once
// instead of waiting in the queue for a 503 that would send the client to retry it.
func TestAnthropicFaultsRefusedRequestTakesNoTarget(t *testing.T) {
	_, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 400})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  busy: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`,
         max_concurrency: 1, queue: {size: 4, timeout: 3s}}
endpoints:
  - {name: busy, type: chat, routes: [{backend: busy}]}
`)
	e := &afEnv{g: g, http: chaosClient(t)}
	resp := e.longStream(t, "busy", "af-slot", "25ms")
	if resp.StatusCode != 200 {
		t.Fatalf("the stream holding the only slot: status %d", resp.StatusCode)
	}
	began := time.Now()
	resp2, b := e.post(t, "/v1/chat/completions", `{"model":"busy","n":2,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": "af-full"})
	afCheckError(t, resp2, b, afWant{400, "invalid_request_error", "", "n"}, "af-full")
	if took := time.Since(began); took > time.Second {
		t.Errorf("the refusal took %v: it waited for a slot it never needed", took)
	}
	resp.Body.Close()
	afSettled(t, g)
}
