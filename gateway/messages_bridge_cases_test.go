package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// rvFake is an OpenAI-compatible server with chat completions only, whose answer
// each test scripts by the x-fake header; it keeps the last body it was sent.
type rvFake struct {
	srv  *httptest.Server
	mu   sync.Mutex
	body string
}

func startRVFake(t *testing.T, answers map[string]func(w http.ResponseWriter, stream bool)) *rvFake {
	t.Helper()
	f := &rvFake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.body = string(body)
		f.mu.Unlock()
		h := answers[r.Header.Get("x-fake")]
		if r.URL.Path != "/v1/chat/completions" || h == nil {
			w.WriteHeader(404)
			return
		}
		h(w, strings.Contains(string(body), `"stream":true`))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *rvFake) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body
}

func rvJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// rvGateway serves endpoint fake (a messages_api: chat backend on f) and endpoint ctx
// (the same backend, with a context fallback to a mockllm's native Messages API).
func rvGateway(t *testing.T, f *rvFake) *gw {
	t.Helper()
	_, addr := startMock(t, mockllm.Options{Model: "big-up", MaxTokens: 12, Seed: 5})
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  fake: {provider: openai, base_url: "`+f.srv.URL+`/v1", model: fake-up, timeout: 5s, messages_api: chat}
  big: {provider: openai, base_url: "http://`+addr+`/v1", model: big-up, timeout: 5s}
endpoints:
  - {name: fake, type: chat, routes: [{backend: fake}]}
  - {name: ctx, type: chat, routes: [{backend: fake}], context_fallbacks: [big]}
`)
}

const rvOKAnswer = `{"id":"c1","object":"chat.completion","model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":1,"total_tokens":11}}`

// A team fronts OpenAI (messages_api: chat) with a larger-window context fallback; a
// Messages call too long for the model gets OpenAI's refusal, code
// context_length_exceeded, in words that name no phrase ("Your input exceeds the context
// window…"). Without the case handled: the client gets that 400, the context fallback never tried (the
// bridge rewrote the body in Anthropic's shape, dropping the code, before the gateway
// looked). README: context fallbacks apply to Messages calls; a refusal "with code
// context_length_exceeded (OpenAI, Azure OpenAI …)" goes to the context fallbacks.
func TestMessagesBridgeCaseContextFallbackByCode(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ctx": func(w http.ResponseWriter, _ bool) {
			rvJSON(w, 400, `{"error":{"message":"Your input exceeds the context window of this model. Please adjust your input and try again.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}`)
		},
	})
	g := rvGateway(t, f)
	for _, stream := range []string{"false", "true"} {
		resp, body := msgPost(t, g, `{"model":"ctx","max_tokens":8,"stream":`+stream+`,"messages":[{"role":"user","content":"a very long prompt"}]}`, "x-fake", "ctx")
		if resp.StatusCode != 200 || resp.Header.Get("x-tollgate-backend") != "big" {
			t.Errorf("stream %s: got %d from backend %q: %.200s; want 200 from the context fallback big",
				stream, resp.StatusCode, resp.Header.Get("x-tollgate-backend"), body)
		}
	}
}

// A client asks for structured output the Messages API way (the SDK's
// OutputConfig.Format, output_config.format json_schema) on a bridged backend.
// Without the case handled: 200, the chat call carries no response_format, so the model answers free
// text the client cannot parse. Wanted: chat's response_format json_schema (which chat
// expresses, and which the gateway itself writes as output_config.format going the
// other way, README Observability), or a 400 naming output_config as for what chat cannot express.
func TestMessagesBridgeCaseOutputConfigDropped(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	c := bridgeSDK(g, aoption.WithHeader("x-fake", "ok"))
	p := msgParams("fake", "Name a city as JSON.", 64)
	p.OutputConfig = anthropic.OutputConfigParam{Format: anthropic.JSONOutputFormatParam{
		Schema: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	}}
	_, err := c.Messages.New(context.Background(), p)
	var ae *anthropic.Error
	if errors.As(err, &ae) && ae.StatusCode == 400 && strings.Contains(ae.RawJSON(), "output_config") {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if b := f.last(); !strings.Contains(b, `"response_format"`) {
		t.Errorf("got the call answered 200 with output_config dropped, chat body %s; want response_format json_schema in it (or a 400 naming output_config)", b)
	}
}

// A client forces a tool (tool_choice {"type":"tool","name":"extract"}, the usual
// extraction pattern) on a bridged OpenAI backend, which answers a forced function
// with tool_calls and finish_reason "stop" (as OpenAI and vLLM do for a named
// tool_choice). Without the case handled: a message holding a tool_use block with stop_reason
// end_turn, which the SDK's tool runner and `if stop_reason == "tool_use"` loops take as
// the end. Wanted: stop_reason tool_use, as the Messages API always gives with
// tool_use blocks (README: tool_calls come back as tool_use blocks, stop_reason tool_use).
func TestMessagesBridgeCaseForcedToolStopReason(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"forced": func(w http.ResponseWriter, stream bool) {
			if !stream {
				rvJSON(w, 200, `{"id":"c1","object":"chat.completion","model":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"extract","arguments":"{\"name\":\"Ada\"}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
				return
			}
			chatSSE(w,
				`{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"extract","arguments":""}}]},"finish_reason":null}]}`,
				`{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"name\":\"Ada\"}"}}]},"finish_reason":null}]}`,
				`{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				`{"id":"c1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`,
				"[DONE]")
		},
	})
	g := rvGateway(t, f)
	c := bridgeSDK(g, aoption.WithHeader("x-fake", "forced"))
	p := msgParams("fake", "Extract the name: Ada.", 64)
	p.Tools = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"name": map[string]any{"type": "string"}}}, "extract")}
	p.ToolChoice = anthropic.ToolChoiceParamOfTool("extract")
	m, err := c.Messages.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Content) == 0 || m.Content[0].Type != "tool_use" || m.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("buffered: got stop_reason %q with content %s; want stop_reason tool_use with the tool_use block", m.StopReason, m.RawJSON())
	}
	acc := accumulated(t, c.Messages.NewStreaming(context.Background(), p))
	if len(acc.Content) == 0 || acc.Content[0].Type != "tool_use" || acc.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("streamed: got stop_reason %q with content %s; want stop_reason tool_use", acc.StopReason, acc.RawJSON())
	}
}

// A bridged backend behind a router (OpenRouter, LiteLLM) answers 200 with a chat
// error object, {"error":{"message","code"}}. Without the case handled: the Messages client gets that
// chat-shaped body with 200; the Anthropic SDK returns an empty message (no content,
// no stop_reason) and no error. Wanted: an error the SDK raises, in the Messages
// API's shape (README: "An upstream error in another shape … is written in it, its
// message kept").
func TestMessagesBridgeCaseChatErrorIn200(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"err200": func(w http.ResponseWriter, _ bool) {
			rvJSON(w, 200, `{"error":{"message":"Provider returned error","code":502}}`)
		},
	})
	g := rvGateway(t, f)
	c := bridgeSDK(g, aoption.WithHeader("x-fake", "err200"))
	m, err := c.Messages.New(context.Background(), msgParams("fake", "hi", 8))
	if err == nil {
		t.Fatalf("got no error and the message %s; want an error in the Messages API's shape carrying %q", m.RawJSON(), "Provider returned error")
	}
	var ae *anthropic.Error
	if !errors.As(err, &ae) || !strings.Contains(ae.RawJSON(), `"type":"error"`) || !strings.Contains(ae.RawJSON(), "Provider returned error") {
		t.Errorf("got %v; want the Messages API's error shape with the upstream's message", err)
	}
}

// Claude Code (ANTHROPIC_BASE_URL at the gateway) reads an image file on a bridged
// backend: its Read tool answers a tool_result whose content is an image block. Observed:
// 400 "a tool result must hold text blocks only", and the session is stuck (the
// history holds it). Wanted: the call goes up (the image as an image part, as image
// blocks are translated): README lists what is refused (document blocks, server tools,
// mcp_servers, container), not images in tool results.
func TestMessagesBridgeCaseToolResultImage(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	resp, body := msgPost(t, g, `{"model":"fake","max_tokens":16,"messages":[{"role":"user","content":"What is in shot.png?"},`+
		`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_A","name":"Read","input":{"file_path":"shot.png"}}]},`+
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_A","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}]}`,
		"x-fake", "ok")
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s; want 200 with the image sent up", resp.StatusCode, body)
	}
	if b := f.last(); !strings.Contains(b, "data:image/png;base64,iVBORw0KGgo=") {
		t.Errorf("got chat body %s; want the image in it", b)
	}
}

// Claude Code puts its billing header block first in system ("x-anthropic-billing-
// header: …; cch=…;"), whose text changes with each request. On a bridged backend it
// becomes the first bytes of the chat system message, so two turns of one conversation
// share no prefix and the upstream's prefix cache (vLLM's, OpenAI's prompt caching)
// misses every time. Wanted: left out, as the gateway's prefix affinity and vLLM's
// own Messages API leave it out (providers/pool.go systemPart; README prefix affinity).
func TestMessagesBridgeCaseBillingHeaderInSystem(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	var sent []string
	for _, cch := range []string{"a1b2c", "f9e8d"} {
		resp, body := msgPost(t, g, `{"model":"fake","max_tokens":16,"system":[`+
			`{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=`+cch+`;"},`+
			`{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}}],`+
			`"messages":[{"role":"user","content":"List the files."}]}`, "x-fake", "ok")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		sent = append(sent, f.last())
	}
	if sent[0] != sent[1] || strings.Contains(sent[0], "x-anthropic-billing-header") {
		t.Errorf("got chat bodies differing by the billing header:\n%s\n%s\nexpected one prompt, the billing header left out", sent[0], sent[1])
	}
}

// Claude Code (2.1.x) sends context_management in every request body (its
// clear_thinking / clear_tool_uses edits; only DISABLE_PROMPT_CACHING=1 turns it off).
// Without the case handled: on a bridged backend every such request is refused, 400 "context_management
// is not supported". Wanted: left out, as thinking and service_tier are (an edit
// only trims the context Anthropic's server keeps; chat gets the whole history): README
// promises Claude Code on the route and lists the refusals as document blocks, server
// tools, mcp_servers and container only.
func TestMessagesBridgeCaseClaudeCodeContextManagement(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	resp, body := msgPost(t, g, `{"model":"fake","max_tokens":32000,"system":[{"type":"text","text":"You are Claude Code."}],`+
		`"messages":[{"role":"user","content":[{"type":"text","text":"List the files.","cache_control":{"type":"ephemeral"}}]}],`+
		`"thinking":{"type":"enabled","budget_tokens":31999},`+
		`"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},`+
		`"metadata":{"user_id":"user_abc_account_def_session_ghi"},"stream":false}`,
		"x-fake", "ok", "anthropic-beta", "claude-code-20250219,context-management-2025-06-27")
	if resp.StatusCode != 200 {
		t.Errorf("got %d %s; want 200, context_management left out", resp.StatusCode, body)
	}
}

// An endpoint with the answer cache fronts OpenAI through the bridge; the model refuses
// (chat's message.refusal, finish_reason stop). Without the case handled: the bridge turns it into a
// plain text block with stop_reason end_turn, the cache keeps it, and the repeated
// request is served that refusal from the cache (x-tollgate-cache: hit) for the ttl,
// while the same answer on /v1/chat/completions is never kept. README Answer cache:
// kept only with "no refusal (a message's refusal … a Messages API answer's
// stop_reason: refusal)".
func TestMessagesBridgeCaseCachedRefusal(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"refusal": func(w http.ResponseWriter, _ bool) {
			rvJSON(w, 200, `{"id":"c1","object":"chat.completion","model":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
		},
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  fake: {provider: openai, base_url: "`+f.srv.URL+`/v1", model: fake-up, timeout: 5s, messages_api: chat}
endpoints:
  - {name: cached, type: chat, routes: [{backend: fake}], cache: {ttl: 1h}}
`)
	body := `{"model":"cached","max_tokens":8,"messages":[{"role":"user","content":"Help me with something."}]}`
	msgPost(t, g, body, "x-fake", "refusal")
	resp, out := msgPost(t, g, body, "x-fake", "refusal")
	if c := resp.Header.Get("x-tollgate-cache"); c == "hit" {
		t.Errorf("got the refusal served from the cache (x-tollgate-cache: %s): %s; want a refusal never kept (miss)", c, out)
	}
}

// A client asks for strict tool use (tools[].strict: true, Anthropic's guarantee that
// tool inputs match input_schema) on a bridged backend. Without the case handled: 200, the chat
// function goes up without strict, so arguments are not held to the schema and the
// client's tool code gets inputs it was promised it would not. Wanted: chat's
// function.strict (which chat expresses), or a 400 naming the member, as for what
// chat cannot express (README: the bridge maps tools as function tools).
func TestMessagesBridgeCaseStrictToolDropped(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	resp, body := msgPost(t, g, `{"model":"fake","max_tokens":16,"messages":[{"role":"user","content":"Book it."}],`+
		`"tools":[{"name":"book","strict":true,"input_schema":{"type":"object","properties":{"day":{"type":"string","enum":["mon","tue"]}},"required":["day"],"additionalProperties":false}}]}`,
		"x-fake", "ok")
	if resp.StatusCode == 400 && strings.Contains(body, "strict") {
		return
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if b := f.last(); !strings.Contains(b, `"strict":true`) {
		t.Errorf("got the call answered 200 with the tool's strict dropped, chat body %s; want function.strict true in it (or a 400 naming tools[0].strict)", b)
	}
}

// A client asks for structured output with a schema that has an optional property
// (valid for Anthropic, which only needs additionalProperties false), on a bridged
// OpenAI backend. Without the case handled: the bridge sends response_format with strict: true, and
// OpenAI's strict mode refuses any schema whose required does not list every property
// (the fake judges as OpenAI does), so a valid Messages request fails with 400.
// Wanted: answered (a schema strict mode cannot take sent non-strict, or made to fit);
// README: output_config.format goes as response_format json_schema.
func TestMessagesBridgeCaseStrictSchemaOptionalProperty(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = string(raw)
		mu.Unlock()
		var req struct {
			ResponseFormat struct {
				JSONSchema struct {
					Strict bool `json:"strict"`
					Schema struct {
						Properties map[string]any `json:"properties"`
						Required   []string       `json:"required"`
					} `json:"schema"`
				} `json:"json_schema"`
			} `json:"response_format"`
		}
		_ = json.Unmarshal(raw, &req)
		js := req.ResponseFormat.JSONSchema
		if js.Strict {
			for k := range js.Schema.Properties {
				if !slices.Contains(js.Schema.Required, k) {
					// OpenAI's refusal of a strict schema missing a property in required.
					rvJSON(w, 400, `{"error":{"message":"Invalid schema for response_format 'output': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing '`+k+`'.","type":"invalid_request_error","param":"response_format","code":null}}`)
					return
				}
			}
		}
		rvJSON(w, 200, `{"id":"c1","object":"chat.completion","model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"{\"city\":\"Paris\"}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  gpt: {provider: openai, base_url: "`+srv.URL+`/v1", model: gpt-4o, timeout: 5s, messages_api: chat}
endpoints:
  - {name: gpt, type: chat, routes: [{backend: gpt}]}
`)
	resp, body := msgPost(t, g, `{"model":"gpt","max_tokens":64,"messages":[{"role":"user","content":"Name a city."}],`+
		`"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"city":{"type":"string"},"note":{"type":"string"}},"required":["city"],"additionalProperties":false}}}}`)
	if resp.StatusCode != 200 {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf("got %d %s (chat body %s); want 200: a schema valid for the Messages API sent in a form OpenAI takes", resp.StatusCode, body, sent)
	}
}

// A client on the structured-outputs beta (pydantic-ai, the SDKs' Beta.Messages with
// OutputFormat) sends output_format, the beta's name of output_config.format, which
// Anthropic still takes. Without the case handled: on a bridged backend it is silently left out: 200,
// no response_format in the chat call, free text where JSON was required. Expected:
// mapped as output_config.format is (README: output_config.format as response_format
// json_schema), or a 400 naming output_format.
func TestMessagesBridgeCaseBetaOutputFormatDropped(t *testing.T) {
	t.Parallel()
	f := startRVFake(t, map[string]func(http.ResponseWriter, bool){
		"ok": func(w http.ResponseWriter, _ bool) { rvJSON(w, 200, rvOKAnswer) },
	})
	g := rvGateway(t, f)
	resp, body := msgPostTo(t, g, "/v1/messages?beta=true", `{"model":"fake","max_tokens":64,"messages":[{"role":"user","content":"Name a city as JSON."}],`+
		`"output_format":{"type":"json_schema","schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}`,
		"x-fake", "ok", "anthropic-beta", "structured-outputs-2025-11-13")
	if resp.StatusCode == 400 && strings.Contains(body, "output_format") {
		return
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if b := f.last(); !strings.Contains(b, `"response_format"`) {
		t.Errorf("got the call answered 200 with output_format dropped, chat body %s; want response_format json_schema in it (or a 400 naming output_format)", b)
	}
}

// accumulated is the message stream s puts together, as the SDK's own accumulator
// does; a stream error fails t.
func accumulated(t *testing.T, s *ssestream.Stream[anthropic.MessageStreamEventUnion]) anthropic.Message {
	t.Helper()
	var acc anthropic.Message
	for s.Next() {
		if err := acc.Accumulate(s.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return acc
}
