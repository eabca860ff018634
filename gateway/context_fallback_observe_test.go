package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A context fallback is observed as a fallback is: each attempt in
// tollgate_upstream_attempts_total and as a span of its own, the request under the
// backend that served it with variant none (a context fallback serves no route, so
// neither A/B variant gets its answers and no route's gates count its attempts), the
// route's own refusal counted for its route as any 4xx.
func TestContextFallbackObserved(t *testing.T) {
	u := startCtxUpstreams(t)
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
`+u.backends()+`  small-v2: {provider: openai, base_url: "http://`+u.smallAddr+`/v1", model: llama-8k, timeout: 20s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: small, weight: 50, variant: stable}, {backend: small-v2, weight: 50, variant: canary}]
    sticky: {from: header, name: X-User-ID}
    context_fallbacks: [large]
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	c := g.client()
	const n = 6
	variants := map[string]bool{}
	for i := range n {
		id := "ctx-observed-" + strconv.Itoa(i)
		var resp *http.Response
		if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
			option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", id), option.WithHeader("X-User-ID", "user-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		servedBy(t, g, resp, id, "large", "", 2)
		spans := requestSpans(t, g, exp, id)
		small, large := spans["chat llama-8k"], spans["chat llama-128k"]
		if len(small) != 1 || len(large) != 1 {
			t.Fatalf("attempt spans: %d on llama-8k, %d on llama-128k; want one each", len(small), len(large))
		}
		for _, a := range []struct {
			span             sdktrace.ReadOnlySpan
			attempt, outcome string
		}{{small[0].Snapshot(), "1", "status_4xx"}, {large[0].Snapshot(), "2", "ok"}} {
			at, _ := attr(a.span, "tollgate.attempt")
			out, _ := attr(a.span, "tollgate.outcome")
			if at.Emit() != a.attempt || out.Emit() != a.outcome {
				t.Errorf("span %s: attempt %q outcome %q, want %s %s", a.span.Name(), at.Emit(), out.Emit(), a.attempt, a.outcome)
			}
		}
		if v, ok := attr(small[0].Snapshot(), "tollgate.variant"); ok {
			variants[v.AsString()] = true
		}
		if _, ok := attr(large[0].Snapshot(), "tollgate.variant"); ok {
			t.Errorf("the context fallback's attempt span has a variant")
		}
		for _, ss := range spans {
			for _, s := range ss {
				if v, ok := attr(s.Snapshot(), "tollgate.request_id"); ok && v.AsString() == id {
					if b, _ := attr(s.Snapshot(), "tollgate.backend"); b.AsString() != "large" {
						t.Errorf("server span backend %q, want large", b.AsString())
					}
					if v, ok := attr(s.Snapshot(), "tollgate.variant"); ok {
						t.Errorf("server span variant %q, want none", v.AsString())
					}
				}
			}
		}
	}
	// The sticky keys above draw both routes (the layout hashes them the same on
	// every run).
	if !variants["stable"] || !variants["canary"] {
		t.Errorf("routes tried first: %v, want both variants", variants)
	}

	fams := scrapeAdmin(t, g)
	if _, got := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "backend", "large", "variant", "none", "code", "200"); got != n {
		t.Errorf("requests served by large under variant none: %v, want %d", got, n)
	}
	for _, v := range []string{"stable", "canary"} {
		if _, got := seriesWith(fams, "tollgate_requests_total", "endpoint", "chat", "variant", v); got != 0 {
			t.Errorf("requests under variant %s: %v, want 0 (a context fallback served them all)", v, got)
		}
	}
	if _, got := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "large", "outcome", "ok"); got != n {
		t.Errorf("attempts on large: %v ok, want %d", got, n)
	}
	_, small := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "small", "outcome", "status_4xx")
	_, smallV2 := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "small-v2", "outcome", "status_4xx")
	if small+smallV2 != n {
		t.Errorf("refused attempts on the routes: %v + %v, want %d", small, smallV2, n)
	}
	// The routes' gates count their own attempts (a 4xx is no failure), never the
	// context fallback's.
	var requests, errs uint64
	for _, ep := range g.router.Snapshot() {
		if ep.Name != "chat" {
			continue
		}
		for _, r := range ep.Routes {
			requests += r.Requests
			errs += r.Errors
		}
	}
	if requests != n || errs != 0 {
		t.Errorf("the routes counted %d attempts, %d failed; want %d, none failed", requests, errs, n)
	}
}

// An upstream failure on a context fallback follows the endpoint's rules from there:
// its retries on that backend, then the next context fallback; the endpoint's
// fallbacks are not tried after a context-window refusal (their windows may be as
// small as the route's), so with no context fallback left the client gets the failure.
// A fallback's context-window refusal goes on to the context fallbacks not tried.
func TestContextFallbackUpstreamFailure(t *testing.T) {
	u := startCtxUpstreams(t)
	bad, badAddr := startMock(t, mockllm.Options{Model: "llama-128k", ErrorRate: 1, Seed: 4})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
`+u.backends()+`  bad: {provider: openai, base_url: "http://`+badAddr+`/v1", model: llama-128k, timeout: 20s}
endpoints:
  - {name: next, type: chat, routes: [{backend: small}], retries: 1, context_fallbacks: [bad, large]}
  - {name: last, type: chat, routes: [{backend: small}], retries: 1, fallbacks: [large], context_fallbacks: [bad]}
  - {name: via, type: chat, routes: [{backend: bad}], retries: 0, fallbacks: [small], context_fallbacks: [bad, small, large]}
logging: {level: info, format: json}
`)
	c := g.client()
	ctx := context.Background()
	badCalls := func() int64 { return bad.Stats().Requests["/v1/chat/completions"] }
	largeCalls := func() int64 { return u.large.Stats().Requests["/v1/chat/completions"] }

	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "next", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
		option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "ctx-5xx-next")); err != nil {
		t.Fatal(err)
	}
	// small's refusal, bad and its retry, then large.
	servedBy(t, g, resp, "ctx-5xx-next", "large", "", 4)
	if badCalls() != 2 || largeCalls() != 1 {
		t.Errorf("bad got %d calls, large %d; want 2 (a retry) and 1", badCalls(), largeCalls())
	}

	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "last", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
		option.WithHeader("X-Request-Id", "ctx-5xx-last"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode < 500 {
		t.Fatalf("err %v, want bad's 5xx", err)
	}
	if got := apiErr.Response.Header.Get("X-Tollgate-Backend"); got != "bad" {
		t.Errorf("x-tollgate-backend %q, want bad", got)
	}
	line := accessLine(t, g, "ctx-5xx-last")
	if line["attempts"] != 3.0 || line["backend"] != "bad" {
		t.Errorf("access log %v, want 3 attempts ending on bad", line)
	}
	if badCalls() != 4 || largeCalls() != 1 {
		t.Errorf("bad got %d calls, large %d; want 4 and still 1 (the fallback is not tried)", badCalls(), largeCalls())
	}

	// The route fails, its fallback refuses the prompt as too long: on to the
	// context fallbacks, past the two backends tried already.
	resp = nil
	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "via", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4)},
		option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "ctx-5xx-via")); err != nil {
		t.Fatal(err)
	}
	servedBy(t, g, resp, "ctx-5xx-via", "large", "", 3)
	if badCalls() != 5 || largeCalls() != 2 {
		t.Errorf("bad got %d calls, large %d; want 5 and 2", badCalls(), largeCalls())
	}
}

// The answer cache keeps the context fallback's answer, and a repeat is answered from
// it naming that backend, with no upstream call.
func TestContextFallbackCached(t *testing.T) {
	u := startCtxUpstreams(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
`+u.backends()+`endpoints:
  - {name: chat, type: chat, routes: [{backend: small}], context_fallbacks: [large], cache: {ttl: 1h}}
logging: {level: info, format: json}
`)
	c := g.client()
	params := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg(ctxLongPrompt), MaxTokens: openai.Int(4), Seed: openai.Int(1)}
	var answers [2]string
	for i, want := range []string{"miss", "hit"} {
		id := "ctx-cache-" + want
		var resp *http.Response
		res, err := c.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", id))
		if err != nil {
			t.Fatal(err)
		}
		answers[i] = res.RawJSON()
		if got := resp.Header.Get("X-Tollgate-Cache"); got != want {
			t.Errorf("request %d: x-tollgate-cache %q, want %q", i, got, want)
		}
		servedBy(t, g, resp, id, "large", "", float64(2-2*i))
	}
	if answers[0] != answers[1] {
		t.Errorf("the hit answered %s, want the fallback's %s", answers[1], answers[0])
	}
	if n := u.large.Stats().Requests["/v1/chat/completions"]; n != 1 {
		t.Errorf("large got %d calls, want 1", n)
	}
}
