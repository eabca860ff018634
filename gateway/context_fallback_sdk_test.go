package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// Windows of the mockllm upstreams of the context fallback tests, in tokens (mockllm
// counts about four bytes a token): a prompt of ctxLongPrompt fits only the large one.
const (
	ctxSmallWindow = 128
	ctxMidWindow   = 256
)

// ctxLongPrompt is about 450 tokens to mockllm: over the small and mid windows, well
// inside the large one's 8192.
var ctxLongPrompt = strings.Repeat("a long history of the conversation so far; ", 40)

// ctxUpstreams are mockllm servers of three context windows, each serving the model
// its backend names.
type ctxUpstreams struct {
	small, mid, large             *mockllm.Server
	smallAddr, midAddr, largeAddr string
}

func startCtxUpstreams(t *testing.T) *ctxUpstreams {
	t.Helper()
	u := &ctxUpstreams{}
	u.small, u.smallAddr = startMock(t, mockllm.Options{Model: "llama-8k", MaxModelLen: ctxSmallWindow, MaxTokens: 8, Seed: 1})
	u.mid, u.midAddr = startMock(t, mockllm.Options{Model: "llama-32k", MaxModelLen: ctxMidWindow, MaxTokens: 8, Seed: 2})
	u.large, u.largeAddr = startMock(t, mockllm.Options{Model: "llama-128k", MaxTokens: 8, Seed: 3})
	return u
}

// ctxBackends are the backends of u: small, mid and large, and small and large again
// serving the Responses API through their chat completions.
func (u *ctxUpstreams) backends() string {
	return `backends:
  small: {provider: openai, base_url: "http://` + u.smallAddr + `/v1", model: llama-8k, timeout: 20s}
  mid: {provider: openai, base_url: "http://` + u.midAddr + `/v1", model: llama-32k, timeout: 20s}
  large: {provider: openai, base_url: "http://` + u.largeAddr + `/v1", model: llama-128k, timeout: 20s}
  small-bridged: {provider: openai, base_url: "http://` + u.smallAddr + `/v1", model: llama-8k, timeout: 20s, responses_api: chat}
  large-bridged: {provider: openai, base_url: "http://` + u.largeAddr + `/v1", model: llama-128k, timeout: 20s, responses_api: chat}
`
}

// startCtxGateway serves u's backends and these endpoints: chat, legacy and embed in
// front of small with large as their context fallback, bridged the same through the
// Responses API bridge, tight with mid (too small too) and plain with large as an
// ordinary fallback only.
func startCtxGateway(t *testing.T, u *ctxUpstreams) *gw {
	t.Helper()
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
`+u.backends()+`endpoints:
  - {name: chat, type: chat, routes: [{backend: small, weight: 100, variant: stable}], context_fallbacks: [large]}
  - {name: legacy, type: completions, routes: [{backend: small}], context_fallbacks: [large]}
  - {name: embed, type: embeddings, routes: [{backend: small}], context_fallbacks: [large]}
  - {name: bridged, type: chat, routes: [{backend: small-bridged}], context_fallbacks: [large-bridged]}
  - {name: tight, type: chat, routes: [{backend: small}], context_fallbacks: [mid]}
  - {name: plain, type: chat, routes: [{backend: small}], fallbacks: [large]}
logging: {level: info, format: json}
`)
}

// servedBy checks the answer's x-tollgate-backend and x-tollgate-variant, and the
// access log line of request id: its backend, variant and attempts.
func servedBy(t *testing.T, g *gw, resp *http.Response, id, backend, variant string, attempts float64) {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	if got := resp.Header.Get("X-Tollgate-Backend"); got != backend {
		t.Errorf("x-tollgate-backend %q, want %q", got, backend)
	}
	if got := resp.Header.Get("X-Tollgate-Variant"); got != variant {
		t.Errorf("x-tollgate-variant %q, want %q", got, variant)
	}
	line := accessLine(t, g, id)
	// No variant is "none" in the access log, as in the metrics.
	wantVariant := variant
	if wantVariant == "" {
		wantVariant = "none"
	}
	if line["backend"] != backend || line["attempts"] != attempts || line["variant"] != wantVariant {
		t.Errorf("access log %v: want backend %s, variant %q, %v attempts", line, backend, wantVariant, attempts)
	}
}

// A prompt too long for the route's model goes on to the context fallback, through
// the official SDK on every API the gateway serves: chat (answered and streamed),
// completions, embeddings, the Responses API natively and through its bridge. The
// answer names the backend that served it and no variant (a context fallback serves
// no route), and the access log counts both attempts; a prompt that fits is answered
// by the route, its variant named.
func TestContextFallbackSDK(t *testing.T) {
	u := startCtxUpstreams(t)
	g := startCtxGateway(t, u)
	c := g.client()
	ctx := context.Background()
	for _, tc := range []struct {
		name, backend string
		call          func(prompt string, opts ...option.RequestOption) error
		// variant is the route's (its backend's name unless set), named when it
		// serves.
		variant string
		// routeBackend serves a short prompt (default small).
		routeBackend string
	}{
		{name: "chat", backend: "large", variant: "stable", call: func(p string, opts ...option.RequestOption) error {
			res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg(p), MaxTokens: openai.Int(4)}, opts...)
			if err == nil && (len(res.Choices) != 1 || res.Choices[0].Message.Content == "") {
				return errors.New("empty answer")
			}
			return err
		}},
		{name: "chat stream", backend: "large", variant: "stable", call: func(p string, opts ...option.RequestOption) error {
			s := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg(p), MaxTokens: openai.Int(4)}, opts...)
			var acc openai.ChatCompletionAccumulator
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if s.Err() == nil && (len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "") {
				return errors.New("empty stream")
			}
			return s.Err()
		}},
		{name: "completions", backend: "large", variant: "small", call: func(p string, opts ...option.RequestOption) error {
			res, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "legacy", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)}, MaxTokens: openai.Int(4)}, opts...)
			if err == nil && (len(res.Choices) != 1 || res.Choices[0].Text == "") {
				return errors.New("empty completion")
			}
			return err
		}},
		{name: "embeddings", backend: "large", variant: "small", call: func(p string, opts ...option.RequestOption) error {
			res, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(p)}}, opts...)
			if err == nil && (len(res.Data) != 1 || len(res.Data[0].Embedding) == 0) {
				return errors.New("no embedding")
			}
			return err
		}},
		{name: "responses", backend: "large", call: func(p string, opts ...option.RequestOption) error {
			res, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(p)}, MaxOutputTokens: openai.Int(16)}, opts...)
			if err == nil && res.OutputText() == "" {
				return errors.New("no output text")
			}
			return err
		}, variant: "stable"},
		{name: "responses stream", backend: "large", variant: "stable", call: func(p string, opts ...option.RequestOption) error {
			s := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(p)}, MaxOutputTokens: openai.Int(16)}, opts...)
			done := false
			for s.Next() {
				done = done || s.Current().Type == "response.completed"
			}
			if s.Err() == nil && !done {
				return errors.New("no response.completed")
			}
			return s.Err()
		}},
		{name: "responses bridge", backend: "large-bridged", routeBackend: "small-bridged", variant: "small-bridged", call: func(p string, opts ...option.RequestOption) error {
			res, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "bridged", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(p)}, MaxOutputTokens: openai.Int(16), Store: openai.Bool(false)}, opts...)
			if err == nil && res.OutputText() == "" {
				return errors.New("no output text")
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "ctx-" + strings.ReplaceAll(tc.name, " ", "-")
			var resp *http.Response
			if err := tc.call(ctxLongPrompt, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", id)); err != nil {
				t.Fatalf("long prompt: %v", err)
			}
			servedBy(t, g, resp, id, tc.backend, "", 2)

			route := tc.routeBackend
			if route == "" {
				route = "small"
			}
			resp = nil
			if err := tc.call("hi", option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", id+"-short")); err != nil {
				t.Fatalf("short prompt: %v", err)
			}
			servedBy(t, g, resp, id+"-short", route, tc.variant, 1)
		})
	}
}

// A Responses API follow-up to a response a context fallback stored goes to that
// backend first, where the response is: the conversation has outgrown the route's
// window anyway.
func TestContextFallbackResponsesFollowUp(t *testing.T) {
	u := startCtxUpstreams(t)
	g := startCtxGateway(t, u)
	c := g.client()
	ctx := context.Background()
	first, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(ctxLongPrompt)}, MaxOutputTokens: openai.Int(16)})
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	next, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", PreviousResponseID: openai.String(first.ID),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("and then?")}, MaxOutputTokens: openai.Int(16)},
		option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "ctx-follow-up"))
	if err != nil {
		t.Fatalf("follow-up: %v", err)
	}
	if next.PreviousResponseID != first.ID {
		t.Errorf("previous_response_id %q, want %q", next.PreviousResponseID, first.ID)
	}
	servedBy(t, g, resp, "ctx-follow-up", "large", "", 1)
	if n := u.small.Stats().Requests["/v1/responses"]; n != 1 {
		t.Errorf("small got %d Responses calls, want the first one's only", n)
	}
}

// When every context fallback is too small as well, the client gets the last
// context-window refusal in OpenAI's shape, which the SDK reads as
// context_length_exceeded, and the access log names that backend and error.
func TestContextFallbackAllTooSmall(t *testing.T) {
	u := startCtxUpstreams(t)
	g := startCtxGateway(t, u)
	c := g.client()
	var resp *http.Response
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "tight", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
		option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "ctx-tight"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err %v, want an API error", err)
	}
	if apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" || apiErr.Type != "invalid_request_error" {
		t.Errorf("status %d code %q type %q, want 400 context_length_exceeded invalid_request_error", apiErr.StatusCode, apiErr.Code, apiErr.Type)
	}
	if !strings.Contains(apiErr.Message, "maximum context length is 256 tokens") {
		t.Errorf("message %q, want mid's (the last refusal)", apiErr.Message)
	}
	if got := apiErr.Response.Header.Get("X-Tollgate-Backend"); got != "mid" {
		t.Errorf("x-tollgate-backend %q, want mid", got)
	}
	line := accessLine(t, g, "ctx-tight")
	if line["backend"] != "mid" || line["attempts"] != 2.0 || line["status"] != 400.0 || line["error"] != "context_length_exceeded" {
		t.Errorf("access log %v: want backend mid, 2 attempts, status 400, error context_length_exceeded", line)
	}
}

// A 400 for anything but the context window goes to the client at once, as the
// upstream wrote it; so does a context-window 400 on an endpoint without
// context_fallbacks (its fallbacks are for upstream failures, not refusals).
func TestContextFallbackOtherRefusals(t *testing.T) {
	u := startCtxUpstreams(t)
	g := startCtxGateway(t, u)
	for _, tc := range []struct {
		name, body, message string
	}{
		{"a non-context 400", `{"model":"chat","temperature":-1,"messages":[{"role":"user","content":"hi"}]}`,
			`{"error":{"message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":400}}`},
		{"no context_fallbacks", `{"model":"plain","max_tokens":4,"messages":[{"role":"user","content":"` + ctxLongPrompt + `"}]}`,
			`"type":"BadRequestError","param":null,"code":400}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := u.large.Stats().Requests["/v1/chat/completions"]
			status, body := postChatBody(t, g.url, tc.body)
			if status != 400 || !strings.HasSuffix(body, tc.message) {
				t.Fatalf("%d %s, want the upstream's 400 ending %s", status, body, tc.message)
			}
			if n := u.large.Stats().Requests["/v1/chat/completions"] - before; n != 0 {
				t.Errorf("large got %d requests, want none", n)
			}
		})
	}
}
