package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startMessagesBridge is a gateway serving the Messages API through chat completions:
// endpoint tgi routes to a mockllm speaking chat only (messages_api: chat), with a
// token limit whose settlement can be read; endpoint az to an Azure deployment (a
// fake answering chat completions on the deployment URL), which has no Messages API.
func startMessagesBridge(t *testing.T) (*gw, *mockllm.Server, *azureFake) {
	t.Helper()
	up, addr := startMock(t, mockllm.Options{Model: "tgi-up", MaxTokens: 12, Seed: 5})
	az := startAzureFake(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  tgi: {provider: openai, base_url: "http://`+addr+`/v1", model: tgi-up, timeout: 5s, messages_api: chat,
        pricing: {input_per_million: 1, output_per_million: 2}}
  az: {provider: azure, base_url: "`+az.srv.URL+`", deployment: gpt4o, api_version: "2024-10-21", model: gpt-4o, api_key: az-secret, timeout: 5s}
endpoints:
  - {name: tgi, type: chat, routes: [{backend: tgi}], limits: [{per: endpoint, tokens: 1000000, window: day}]}
  - {name: az, type: chat, routes: [{backend: az}]}
`)
	return g, up, az
}

// azureFake answers chat completions on an Azure deployment URL as Azure does: its
// first chunk holds its prompt filter results only.
type azureFake struct {
	srv  *httptest.Server
	mu   sync.Mutex
	path string
	body string
}

func startAzureFake(t *testing.T) *azureFake {
	f := &azureFake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.path, f.body = r.URL.Path, string(body)
		f.mu.Unlock()
		if r.Header.Get("api-key") != "az-secret" {
			w.WriteHeader(401)
			return
		}
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("content-type", "application/json")
			_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","prompt_filter_results":[],`+
				`"choices":[{"index":0,"message":{"role":"assistant","content":"Bonjour"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":3}}}`)
			return
		}
		chatSSE(w,
			`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}`,
			`{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}`,
			`{"choices":[{"delta":{"content":"Bon"},"finish_reason":null,"index":0}],"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}`,
			`{"choices":[{"delta":{"content":"jour"},"finish_reason":null,"index":0}],"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}`,
			`{"choices":[{"delta":{},"finish_reason":"stop","index":0}],"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}`,
			`{"choices":[],"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk","usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}`,
			"[DONE]")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *azureFake) last() (path, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path, f.body
}

func bridgeSDK(g *gw, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(g.url), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
	}, opts...)...)
}

// The Anthropic SDK calls a backend that has only chat completions: its chat answer
// comes back as a message (the backend's model, the chat usage as the message's),
// counted as the endpoint's tokens; the upstream saw chat completions only.
func TestMessagesBridgeSDK(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	var resp *http.Response
	msg, err := c.Messages.New(context.Background(), msgParams("tgi", "Tell me about gateways.", 64), aoption.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Model != "tgi-up" || len(msg.Content) != 1 || msg.Content[0].Text == "" || !strings.HasPrefix(msg.ID, "msg_") {
		t.Fatalf("message %+v", msg)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn && msg.StopReason != anthropic.StopReasonMaxTokens {
		t.Errorf("stop reason %s", msg.StopReason)
	}
	if msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens <= 0 {
		t.Fatalf("usage %+v", msg.Usage)
	}
	if got := tokensCounted(t, g, "tgi", "output"); got != float64(msg.Usage.OutputTokens) {
		t.Errorf("output tokens counted %v, want %d", got, msg.Usage.OutputTokens)
	}
	if got := msgRemaining(t, resp); got > 1000000-msg.Usage.InputTokens-msg.Usage.OutputTokens {
		t.Errorf("x-ratelimit-remaining-tokens %d", got)
	}
	st := up.Stats()
	if st.Requests["/v1/chat/completions"] != 1 || st.Requests["/v1/messages"] != 0 {
		t.Errorf("upstream routes %v", st.Requests)
	}
	if b := string(st.LastBody); !strings.Contains(b, `{"role":"system","content":"You are terse."}`) || !strings.Contains(b, `"max_tokens":64`) {
		t.Errorf("chat body %s", b)
	}
}

// A stream comes back as the Messages API's named events, which the SDK accumulates
// into the message; the raw stream ends with message_stop, no [DONE].
func TestMessagesBridgeStream(t *testing.T) {
	g, _, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	for _, ep := range []string{"tgi", "az"} {
		t.Run(ep, func(t *testing.T) {
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
			if events < 6 || len(msg.Content) != 1 || msg.Content[0].Text == "" || msg.StopReason == "" || msg.Usage.OutputTokens <= 0 {
				t.Fatalf("%d events, message %+v", events, msg)
			}
			if ep == "az" && (msg.Content[0].Text != "Bonjour" || msg.Usage.InputTokens != 8 || msg.Usage.OutputTokens != 2) {
				t.Errorf("azure message %+v", msg)
			}
			if got := tokensCounted(t, g, ep, "output"); got != float64(msg.Usage.OutputTokens) {
				t.Errorf("output tokens counted %v, want %d", got, msg.Usage.OutputTokens)
			}
		})
	}
	resp, body := msgPost(t, g, `{"model":"tgi","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if strings.Contains(body, "[DONE]") || !strings.HasPrefix(body, "event: message_start\n") ||
		!strings.Contains(body, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\"") ||
		!strings.HasSuffix(body, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
		t.Fatalf("stream:\n%s", body)
	}
}

// A tool-use round trip through chat completions: the SDK's tools go up as function
// tools, the chat tool calls come back as tool_use blocks (stop_reason tool_use),
// and the next turn's assistant message and tool_result go up as chat's tool_calls
// and tool message; streamed, the call's arguments come as input_json_delta.
func TestMessagesBridgeToolUse(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	c := bridgeSDK(g, aoption.WithHeader("x-mock-tool-calls", "1"))
	weather := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}},
	}, "get_weather")
	params := msgParams("tgi", "Weather in Paris?", 64)
	params.Tools = []anthropic.ToolUnionParam{weather}
	msg, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) == 0 {
		t.Fatalf("message %+v", msg)
	}
	use := msg.Content[len(msg.Content)-1].AsToolUse()
	if use.Name != "get_weather" || use.ID == "" || !strings.HasPrefix(string(use.Input), "{") {
		t.Fatalf("tool use %+v", use)
	}
	if b := string(up.Stats().LastBody); !strings.Contains(b, `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{`) {
		t.Errorf("chat body %s", b)
	}

	params.Messages = append(params.Messages, msg.ToParam(),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "18C and sunny", false)))
	plain := bridgeSDK(g)
	next, err := plain.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if next.StopReason == anthropic.StopReasonToolUse || len(next.Content) == 0 || next.Content[0].Text == "" {
		t.Errorf("second turn %+v", next)
	}
	b := string(up.Stats().LastBody)
	if !strings.Contains(b, `"tool_calls":[{"id":"`+use.ID+`","type":"function","function":{"name":"get_weather","arguments":`) ||
		!strings.Contains(b, `{"role":"tool","tool_call_id":"`+use.ID+`","content":"18C and sunny"}`) {
		t.Errorf("second chat body %s", b)
	}

	s := c.Messages.NewStreaming(context.Background(), msgParams("tgi", "Weather in Paris?", 64), aoption.WithJSONSet("tools", []any{
		map[string]any{"name": "get_weather", "input_schema": map[string]any{"type": "object"}},
	}))
	var streamed anthropic.Message
	deltas := 0
	for s.Next() {
		ev := s.Current()
		if ev.Type == "content_block_delta" && ev.Delta.Type == "input_json_delta" {
			deltas++
		}
		if err := streamed.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	last := streamed.Content[len(streamed.Content)-1].AsToolUse()
	if streamed.StopReason != anthropic.StopReasonToolUse || deltas == 0 || last.Name != "get_weather" || !strings.HasPrefix(string(last.Input), "{") {
		t.Errorf("%d input_json_delta, message %+v", deltas, streamed)
	}
}

// An image block goes up as an image_url part, its base64 source as a data: URL.
func TestMessagesBridgeImage(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nfake"))
	params := msgParams("tgi", "", 16)
	params.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(
		anthropic.NewTextBlock("What is this?"), anthropic.NewImageBlockBase64("image/png", png))}
	c := bridgeSDK(g)
	if _, err := c.Messages.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	want := `{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `"}}]}`
	if b := string(up.Stats().LastBody); !strings.Contains(b, want) {
		t.Errorf("chat body %s\nwant %s", b, want)
	}
}

// Azure deployments serve the Messages API through their chat completions URL, the
// backend's key in api-key; cached prompt tokens come as cache_read_input_tokens.
func TestMessagesBridgeAzure(t *testing.T) {
	g, _, az := startMessagesBridge(t)
	c := bridgeSDK(g)
	msg, err := c.Messages.New(context.Background(), msgParams("az", "Say hello in French.", 16))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "Bonjour" || msg.Model != "gpt-4o" || msg.Usage.InputTokens != 5 || msg.Usage.CacheReadInputTokens != 3 || msg.Usage.OutputTokens != 1 {
		t.Errorf("message %+v", msg)
	}
	if path, body := az.last(); path != "/openai/deployments/gpt4o/chat/completions" || !strings.Contains(body, `"max_tokens":16`) || strings.Contains(body, "client-key") {
		t.Errorf("sent to %s: %s", path, body)
	}
}

// What chat cannot express is refused with the Messages API's 400 naming the member,
// before any upstream is asked; an upstream's error comes in the API's shape; a
// token count on an Azure deployment, which has no tokenizer, is unsupported.
func TestMessagesBridgeErrors(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	doc := msgParams("tgi", "", 16)
	doc.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewDocumentBlock(anthropic.PlainTextSourceParam{Data: "a contract"}))}
	search := msgParams("tgi", "Search the news.", 16)
	search.Tools = []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}
	cases := []struct {
		name   string
		params anthropic.MessageNewParams
		opts   []aoption.RequestOption
		status int
		typ    string
		msg    string
	}{
		{"document", doc, nil, 400, "invalid_request_error", "messages[0].content[0]: document blocks are not supported"},
		{"server tool", search, nil, 400, "invalid_request_error", "tools[0]: Anthropic's server tools"},
		{"upstream overloaded", msgParams("tgi", "hi", 8), []aoption.RequestOption{aoption.WithHeader("x-mock-status", "503")}, 503, "overloaded_error", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.Stats().Requests["/v1/chat/completions"]
			_, err := c.Messages.New(context.Background(), tc.params, tc.opts...)
			var ae *anthropic.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v", err)
			}
			if ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || !strings.Contains(ae.RawJSON(), tc.msg) {
				t.Errorf("status %d type %q: %s; want %d %s %q", ae.StatusCode, ae.Type(), ae.RawJSON(), tc.status, tc.typ, tc.msg)
			}
			if asked := up.Stats().Requests["/v1/chat/completions"] - before; tc.status == 400 && asked != 0 {
				t.Errorf("the upstream was asked %d times", asked)
			}
		})
	}
	resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", `{"model":"az","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 400 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"invalid_request_error"`) || !strings.Contains(body, "no token count") {
		t.Errorf("count_tokens: %d %s", resp.StatusCode, body)
	}
}

// bridgedMessagesServer is newMessagesServer on a backend with messages_api: chat, in
// front of an upstream that answers every chat call with benchChatResp.
func bridgedMessagesServer(tb testing.TB) *Server {
	return newTestServer(tb, strings.Replace(messagesBenchConfig(startStaticUpstream(tb)), "model: up-model}", "model: up-model, messages_api: chat}", 1))
}

// BenchmarkProxyMessagesBridged is BenchmarkProxyMessages on a backend without the
// Messages API: the call translated to chat, the chat answer to a message.
func BenchmarkProxyMessagesBridged(b *testing.B) {
	s := bridgedMessagesServer(b)
	ctx := newMessagesCtx(b, s)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// Parallel tool calls stream as the Messages API's blocks, one after the other, both
// when the chat server streams them one after the other (vLLM, OpenAI) and when it
// interleaves their pieces (0, 1, 0, 1): each call's input is whole and in its own
// block, and the streamed message equals the buffered one.
func TestMessagesBridgeParallelToolCalls(t *testing.T) {
	g, _, _ := startMessagesBridge(t)
	tools := aoption.WithJSONSet("tools", []any{
		map[string]any{"name": "get_weather", "input_schema": map[string]any{"type": "object"}},
		map[string]any{"name": "get_time", "input_schema": map[string]any{"type": "object"}},
	})
	for _, mode := range []string{"3", "3 interleaved"} {
		t.Run(mode, func(t *testing.T) {
			c := bridgeSDK(g, aoption.WithHeader("x-mock-tool-calls", mode))
			whole, err := c.Messages.New(context.Background(), msgParams("tgi", "Weather and time in Paris?", 64), tools)
			if err != nil {
				t.Fatal(err)
			}
			s := c.Messages.NewStreaming(context.Background(), msgParams("tgi", "Weather and time in Paris?", 64), tools)
			var streamed anthropic.Message
			for s.Next() {
				if err := streamed.Accumulate(s.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			uses := func(m *anthropic.Message) (out []string) {
				for _, b := range m.Content {
					if b.Type == "tool_use" {
						u := b.AsToolUse()
						out = append(out, u.Name+" "+string(u.Input))
					}
				}
				return out
			}
			w, st := uses(whole), uses(&streamed)
			if len(w) != 3 || strings.Join(w, "|") != strings.Join(st, "|") || streamed.StopReason != anthropic.StopReasonToolUse {
				t.Errorf("buffered calls %q, streamed %q (stop %s)", w, st, streamed.StopReason)
			}
		})
	}
}
