package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestContextFallbackLaterOneAttempt: with retries: 2 and context_fallbacks [mid, bad],
// a prompt too long for the route and for mid goes on to bad, which fails with a 500:
// bad gets one attempt (the first context fallback alone has the endpoint's retries).
func TestContextFallbackLaterOneAttempt(t *testing.T) {
	t.Parallel()
	u := startCtxUpstreams(t)
	bad, badAddr := startMock(t, mockllm.Options{Model: "llama-128k", ErrorRate: 1, Seed: 4})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
`+u.backends()+`  bad: {provider: openai, base_url: "http://`+badAddr+`/v1", model: llama-128k, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: small}], retries: 2, context_fallbacks: [mid, bad]}
logging: {level: info, format: json}
`)
	c := g.client()
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
		option.WithHeader("X-Request-Id", "ctxfb-later"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode < 500 {
		t.Fatalf("err %v, want bad's 5xx", err)
	}
	line := accessLine(t, g, "ctxfb-later")
	if n := bad.Stats().Requests["/v1/chat/completions"]; n != 1 || line["attempts"] != 3.0 {
		t.Errorf("%d attempts on bad (the second context fallback), %v in all; want 1 on bad, 3 in all (small, mid, bad)", n, line["attempts"])
	}
}

// TestContextFallbackNotForStoredConversation: a Responses API conversation stored on
// the route's own backend grows past its window: its follow-up (previous_response_id)
// gets that backend's refusal, 400 context_length_exceeded, not a context fallback's
// 404 for a response it never stored.
func TestContextFallbackNotForStoredConversation(t *testing.T) {
	t.Parallel()
	u := startCtxUpstreams(t)
	g := startCtxGateway(t, u)
	c := g.client()
	ctx := context.Background()
	first, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}, MaxOutputTokens: openai.Int(16)})
	if err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", PreviousResponseID: openai.String(first.ID),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(ctxLongPrompt)}, MaxOutputTokens: openai.Int(16)},
		option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "ctxfb-follow"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("follow-up: err %v (from %q), want a refusal", err, resp.Header.Get("X-Tollgate-Backend"))
	}
	if apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
		t.Errorf("%d %s %q from %q; want 400 context_length_exceeded (the response lives on small, which refused the grown conversation)",
			apiErr.StatusCode, apiErr.Code, apiErr.Message, apiErr.Response.Header.Get("X-Tollgate-Backend"))
	}
}
