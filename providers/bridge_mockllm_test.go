package providers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// responsesFront serves POST /v1/responses from a backend as the gateway's relay does:
// the body as a Responses call, a stream's events written with their names, an
// unsupported operation 400. It keeps the chat body each call sent upstream.
type responsesFront struct {
	b   *Backend
	url string
	mu  sync.Mutex
	// sent is the last chat body sent upstream.
	sent []byte
}

func (f *responsesFront) ReadSent(body []byte) {
	f.mu.Lock()
	f.sent = append(f.sent[:0], body...)
	f.mu.Unlock()
}

func (f *responsesFront) lastSent() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.sent...)
}

// responsesCall is the Call the gateway makes of a Responses API body.
func responsesCall(body []byte, h *fasthttp.RequestHeader) *Call {
	c := &Call{Kind: Responses, Body: body, StreamOptions: [2]int{-1, -1}, Header: h, Deadline: time.Now().Add(10 * time.Second)}
	var it jsonscan.Iter
	if it.Reset(body) == nil {
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			switch string(k) {
			case "model":
				c.Model = [2]int{it.ValueOffset(), it.ValueOffset() + len(v)}
			case "stream":
				c.Stream = string(v) == "true"
			}
		}
	}
	return c
}

func startResponsesFront(t *testing.T, b *Backend) *responsesFront {
	t.Helper()
	f := &responsesFront{b: b}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String() + "/v1/"
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		body := append([]byte(nil), ctx.PostBody()...)
		call := responsesCall(body, &ctx.Request.Header)
		call.Sent = f
		var res Result
		err := b.Send(call, &ctx.Response, &res)
		var ue *UnsupportedError
		switch {
		case errors.As(err, &ue):
			writeOpenAIError(&ctx.Response, 400, strInvalidRequest, []byte("unsupported_operation"), "model", []byte(ue.Error()))
			return
		case err != nil && !errors.As(err, new(*UpstreamError)) && !errors.As(err, new(*RequestError)):
			writeOpenAIError(&ctx.Response, 502, []byte("server_error"), nil, "", []byte(err.Error()))
			return
		case res.Stream == nil:
			return
		}
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			defer res.Stream.Close()
			for {
				var ev Event
				if res.Stream.Next(&ev) != nil || ev.Done {
					return
				}
				if ev.KeepAlive {
					continue
				}
				_, _ = w.WriteString("event: " + string(ev.Name) + "\ndata: " + string(ev.Data) + "\n\n")
				_ = w.Flush()
			}
		})
	}}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
	return f
}

// startMockClaude runs mockllm's Messages API serving model and returns an anthropic
// backend in front of it.
func startMockClaude(t *testing.T, model string) (*Backend, *mockllm.Server) {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{API: mockllm.APIAnthropic, Model: model, APIKey: "sk-ant-e2e", Seed: 7, MaxTokens: 24, Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
	return newTestBackend(t, Config{Provider: "anthropic", BaseURL: "http://" + ln.Addr().String() + "/v1", Model: model, APIKey: "sk-ant-e2e"}), srv
}

// startMockChat runs mockllm's chat completions (OpenAI mode, no Responses API used)
// and returns an openai backend told to serve the Responses API through chat.
func startMockChat(t *testing.T) (*Backend, *mockllm.Server) {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{Model: "tgi-model", APIKey: "sk-e2e", Seed: 7, MaxTokens: 24, Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
	cfg := Config{Provider: "openai", BaseURL: "http://" + ln.Addr().String() + "/v1", Model: "tgi-model", APIKey: "sk-e2e", ResponsesAPI: "chat"}
	return newTestBackend(t, cfg), srv
}

func sdkClient(f *responsesFront, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(f.url), option.WithAPIKey("gateway-key"), option.WithMaxRetries(0)}, opts...)...)
}

// bridgedBackends are the two kinds of backend the bridge serves, each in front of
// mockllm: Anthropic's Messages API, and an OpenAI-compatible chat server.
func bridgedBackends(t *testing.T) map[string]struct {
	b   *Backend
	srv *mockllm.Server
} {
	out := map[string]struct {
		b   *Backend
		srv *mockllm.Server
	}{}
	b, srv := startMockClaude(t, "claude-sonnet-4-5-20250929")
	out["anthropic"] = struct {
		b   *Backend
		srv *mockllm.Server
	}{b, srv}
	b, srv = startMockChat(t)
	out["chat"] = struct {
		b   *Backend
		srv *mockllm.Server
	}{b, srv}
	return out
}

// The official SDK's Responses.New and Responses.NewStreaming get their answers from
// a model served through a chat API: text, usage, an answer cut by
// max_output_tokens, the stream's events in order, a json_schema format; the chat
// server never sees a /responses call.
func TestBridgeSDK(t *testing.T) {
	for name, be := range bridgedBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := startResponsesFront(t, be.b)
			c := sdkClient(f)
			ctx := context.Background()
			res, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Instructions: openai.String("Be brief."),
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(res.ID, "resp_") || res.OutputText() == "" || res.Status != "completed" ||
				res.Usage.InputTokens == 0 || res.Usage.OutputTokens == 0 || res.Usage.TotalTokens != res.Usage.InputTokens+res.Usage.OutputTokens {
				t.Fatalf("%s", res.RawJSON())
			}
			if res.Instructions.OfString != "Be brief." {
				t.Errorf("instructions not echoed: %s", res.RawJSON())
			}
			sent := f.lastSent()
			if name == "anthropic" && !strings.Contains(string(sent), `"system"`) || name == "chat" && !strings.Contains(string(sent), `"role":"system"`) {
				t.Errorf("instructions not sent: %s", sent)
			}

			cut, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
				MaxOutputTokens: openai.Int(4),
			})
			if err != nil {
				t.Fatal(err)
			}
			if cut.Status != "incomplete" || cut.IncompleteDetails.Reason != "max_output_tokens" || cut.Usage.OutputTokens != 4 {
				t.Errorf("cut: %s", cut.RawJSON())
			}

			stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
			})
			var types []string
			var deltas, doneText strings.Builder
			var final responses.Response
			for n := int64(0); stream.Next(); n++ {
				ev := stream.Current()
				types = append(types, ev.Type)
				if ev.SequenceNumber != n {
					t.Fatalf("event %d numbered %d", n, ev.SequenceNumber)
				}
				switch ev.Type {
				case "response.output_text.delta":
					deltas.WriteString(ev.Delta)
				case "response.output_text.done":
					doneText.WriteString(ev.Text)
				case "response.completed", "response.incomplete":
					final = ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(types) < 8 || types[0] != "response.created" || types[1] != "response.in_progress" || types[2] != "response.output_item.added" ||
				types[3] != "response.content_part.added" || types[len(types)-1] != "response.completed" {
				t.Fatalf("events %v", types)
			}
			if deltas.Len() == 0 || deltas.String() != doneText.String() || final.OutputText() != deltas.String() || final.Usage.OutputTokens == 0 {
				t.Errorf("deltas %q, done %q, final %s", deltas.String(), doneText.String(), final.RawJSON())
			}

			format := responses.ResponseFormatTextConfigParamOfJSONSchema("weather", map[string]any{
				"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}, "additionalProperties": false,
			})
			format.OfJSONSchema.Strict = openai.Bool(true)
			_, err = c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris as JSON")},
				Text: responses.ResponseTextConfigParam{Format: format},
			})
			if err != nil {
				t.Fatal(err)
			}
			sent = f.lastSent()
			if name == "anthropic" && !strings.Contains(string(sent), `"output_config":{"format":{"type":"json_schema","schema":{`) || name == "chat" && !strings.Contains(string(sent), `"response_format":{"type":"json_schema","json_schema":{"name":"weather"`) {
				t.Errorf("format not sent: %s", sent)
			}
			if st := be.srv.Stats(); st.Requests["/v1/responses"] != 0 {
				t.Errorf("the upstream was asked its Responses API: %v", st.Requests)
			}
		})
	}
}

// A tool loop: function tools become chat tools, the model's tool call comes back as
// a function_call item, and the next call's function_call and function_call_output
// items go up as the assistant's tool call and the tool's message.
func TestBridgeSDKToolLoop(t *testing.T) {
	tool := responses.ToolParamOfFunction("get_weather", map[string]any{
		"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
	}, false)
	for name, be := range bridgedBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := startResponsesFront(t, be.b)
			c := sdkClient(f)
			ctx := context.Background()
			var call responses.ResponseFunctionToolCall
			if name == "anthropic" {
				// mockllm's Messages API calls the tool a request forces.
				for _, stream := range []bool{false, true} {
					params := responses.ResponseNewParams{
						Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris?")},
						Tools:      []responses.ToolUnionParam{tool},
						ToolChoice: responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
					}
					var out responses.Response
					if stream {
						s := c.Responses.NewStreaming(ctx, params)
						for s.Next() {
							if ev := s.Current(); ev.Type == "response.completed" {
								out = ev.Response
							}
						}
						if err := s.Err(); err != nil {
							t.Fatal(err)
						}
					} else {
						var err error
						o, err := c.Responses.New(ctx, params)
						if err != nil {
							t.Fatal(err)
						}
						out = *o
					}
					call = responses.ResponseFunctionToolCall{}
					for _, item := range out.Output {
						if item.Type == "function_call" {
							call = item.AsFunctionCall()
						}
					}
					if call.CallID == "" || call.Name != "get_weather" || !json.Valid([]byte(call.Arguments)) || !strings.Contains(call.Arguments, "city") {
						t.Fatalf("stream %v: no function call in %s", stream, out.RawJSON())
					}
				}
			} else {
				// mockllm's chat server calls no tools: the history is the client's.
				call = responses.ResponseFunctionToolCall{CallID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}
			}
			output := responses.ResponseInputItemParamOfFunctionCallOutput("18C and sunny")
			output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
			second, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Tools: []responses.ToolUnionParam{tool},
				Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
					responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser),
					responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
					output,
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if second.OutputText() == "" {
				t.Fatalf("second turn %s", second.RawJSON())
			}
			sent := string(f.lastSent())
			switch name {
			case "anthropic":
				if !strings.Contains(sent, `"tool_result"`) || !strings.Contains(sent, `"tool_use"`) || !strings.Contains(sent, "18C and sunny") {
					t.Errorf("upstream got %s", sent)
				}
			default:
				if !strings.Contains(sent, `{"role":"tool","tool_call_id":"call_1","content":"18C and sunny"}`) || !strings.Contains(sent, `"tool_calls":[{"id":"call_1"`) ||
					!strings.Contains(sent, `"tools":[{"type":"function","function":{"name":"get_weather"`) {
					t.Errorf("upstream got %s", sent)
				}
			}
		})
	}
}

// What the bridge cannot serve is refused without a call upstream: a follow-up of a
// stored response (ErrUnsupported: the gateway skips the backend as a fallback),
// background mode (400 naming it). An upstream's 4xx goes to the client as chat's
// does, and a stream the upstream cuts ends with the cut.
func TestBridgeSDKRefusals(t *testing.T) {
	for name, be := range bridgedBackends(t) {
		t.Run(name, func(t *testing.T) {
			f := startResponsesFront(t, be.b)
			c := sdkClient(f)
			ctx := context.Background()
			before := be.srv.Stats().Requests
			var ae *openai.Error
			_, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("more")},
				PreviousResponseID: openai.String("resp_abc"),
			})
			if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "stores no responses") {
				t.Fatalf("follow-up: %v", err)
			}
			_, err = c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
				Background: openai.Bool(true),
			})
			if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "background" {
				t.Fatalf("background: %v", err)
			}
			if after := be.srv.Stats().Requests; after["/v1/messages"] != before["/v1/messages"] || after["/v1/chat/completions"] != before["/v1/chat/completions"] {
				t.Errorf("refused calls went up: %v, then %v", before, after)
			}
			call := responsesCall([]byte(`{"model":"chat","input":"x","previous_response_id":"resp_1"}`), clientHeader())
			var res Result
			err = be.b.Send(call, &fasthttp.Response{}, &res)
			var ue *UnsupportedError
			if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Kind != Responses {
				t.Fatalf("Send: %v", err)
			}
			if call.Kind != Responses || string(call.Body) != `{"model":"chat","input":"x","previous_response_id":"resp_1"}` {
				t.Errorf("call changed: %+v", call)
			}

			_, err = c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
			}, option.WithHeader("x-mock-status", "404"))
			if !errors.As(err, &ae) || ae.StatusCode != 404 {
				t.Fatalf("upstream 404: %v", err)
			}

			// The upstream cuts the stream after two tokens.
			h := clientHeader()
			h.Set("x-mock-cut-after", "2")
			call = responsesCall([]byte(`{"model":"chat","input":"Say hello","stream":true}`), h)
			var out fasthttp.Response
			res = Result{}
			if err := be.b.Send(call, &out, &res); err != nil {
				t.Fatal(err)
			}
			got := readBridged(res.Stream)
			_ = res.Stream.Close()
			if !errors.Is(got.err, ErrStreamCut) {
				t.Fatalf("cut stream: %v after %d events", got.err, len(got.events))
			}
			if call.Kind != Responses || !call.Stream || call.IncludeUsage {
				t.Errorf("call changed: %+v", call)
			}
		})
	}
}
