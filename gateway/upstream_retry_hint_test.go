package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/valyala/fasthttp"
)

// hintGateway is a gateway whose endpoint chat routes to the upstream at addr
// (provider openai) with retries, the backends and endpoint options given after.
func hintGateway(t *testing.T, addr string, retries int, backends, endpoint string) *gw {
	t.Helper()
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
`+backends+`endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: `+strconv.Itoa(retries)+endpoint+`}
logging: {level: error, access_log: false}
`)
}

// checkHint checks an answer's x-should-retry: want, or none for "".
func checkHint(t *testing.T, h http.Header, want string) {
	t.Helper()
	if got := h.Values("X-Should-Retry"); want == "" && len(got) > 0 || want != "" && (len(got) != 1 || got[0] != want) {
		t.Errorf("x-should-retry %q, want %q", got, want)
	}
}

// An upstream's own x-should-retry (OpenAI's and Anthropic's APIs send it) reaches the
// client with the upstream's error, as the SDKs would have read it from the upstream:
// "false" keeps them from retrying a 5xx, "true" has them retry a 400. Only those two
// values go on, which the SDKs compare the header with exactly. Where the upstream
// says "true" but its wait is one not every SDK takes as told (60 s or more), the
// gateway's "false" wins, as for a limit's 429.
func TestUpstreamShouldRetryPassedOn(t *testing.T) {
	for _, c := range []struct {
		name, path string
		status     int
		hdr        []string
		want       string
		// lo and hi bound retry-after-ms; 0: no wait.
		lo, hi int64
	}{
		{name: "500 false", status: 500, hdr: []string{"X-Should-Retry", "false"}, want: "false"},
		{name: "400 true", status: 400, hdr: []string{"X-Should-Retry", "true"}, want: "true"},
		{name: "409 false", status: 409, hdr: []string{"X-Should-Retry", "false"}, want: "false"},
		{name: "429 true with a short wait", status: 429, hdr: []string{"X-Should-Retry", "true", "Retry-After", "0.3"}, want: "true", lo: 300, hi: 300},
		{name: "503 false with a short wait", status: 503, hdr: []string{"X-Should-Retry", "false", "Retry-After-Ms", "250"}, want: "false", lo: 250, hi: 250},
		{name: "429 true with a wait of two minutes", status: 429, hdr: []string{"X-Should-Retry", "true", "Retry-After", "120"}, want: "false", lo: 120_000, hi: 120_000},
		{name: "400 true with a wait of two minutes", status: 400, hdr: []string{"X-Should-Retry", "true", "Retry-After", "120"}, want: "false", lo: 120_000, hi: 120_000},
		{name: "400 false with a wait of two minutes", status: 400, hdr: []string{"X-Should-Retry", "false", "Retry-After", "120"}, want: "false", lo: 120_000, hi: 120_000},
		{name: "a value the SDKs do not read", status: 500, hdr: []string{"X-Should-Retry", "True"}},
		{name: "another value the SDKs do not read", status: 400, hdr: []string{"X-Should-Retry", "1"}},
		{name: "lower-case name", status: 500, hdr: []string{"x-should-retry", "false"}, want: "false"},
		{name: "messages API", path: "/v1/messages", status: 500, hdr: []string{"X-Should-Retry", "false"}, want: "false"},
		{name: "messages API, two minutes", path: "/v1/messages", status: 529, hdr: []string{"X-Should-Retry", "true", "Retry-After", "120"}, want: "false", lo: 120_000, hi: 120_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			up, addr := startCountingUpstream(t, answerError(c.status, c.hdr...))
			g := hintGateway(t, addr, 0, "", "")
			path := c.path
			if path == "" {
				path = "/v1/chat/completions"
			}
			resp, b := retryPost(t, g, path, retryChat("chat"), "Anthropic-Version", "2023-06-01")
			if resp.StatusCode != c.status || up.count() != 1 {
				t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
			}
			if c.hi == 0 {
				checkHint(t, resp.Header, c.want)
				for _, h := range []string{"Retry-After", "Retry-After-Ms"} {
					if v := resp.Header.Get(h); v != "" {
						t.Errorf("%s %q on an answer without a wait", h, v)
					}
				}
				return
			}
			checkWait(t, resp.Header, c.lo, c.hi, c.want)
		})
	}
}

// answerAnthropicError answers as Anthropic's API does: status, its error object of
// type typ, and the header name/value pairs of hdrs.
func answerAnthropicError(status int, typ string, hdrs ...string) func(*fasthttp.RequestCtx) {
	return func(ctx *fasthttp.RequestCtx) {
		for i := 0; i+1 < len(hdrs); i += 2 {
			ctx.Response.Header.Set(hdrs[i], hdrs[i+1])
		}
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"type":"error","error":{"type":"` + typ + `","message":"from the upstream"},"request_id":"req_1"}`)
	}
}

// An Anthropic backend's x-should-retry goes on too, on the error the gateway
// translates into OpenAI's shape: its 529 as a 503, which the SDKs retry as they do a
// 529, so what the upstream said of the request still holds.
func TestUpstreamShouldRetryAnthropicBackend(t *testing.T) {
	for _, c := range []struct {
		name           string
		status         int
		typ, hint      string
		want           int
		wantHint, code string
	}{
		{name: "529 false", status: 529, typ: "overloaded_error", hint: "false", want: 503, wantHint: "false", code: `"code":"overloaded"`},
		{name: "400 true", status: 400, typ: "invalid_request_error", hint: "true", want: 400, wantHint: "true", code: `"type":"invalid_request_error"`},
		{name: "429 none", status: 429, typ: "rate_limit_error", want: 429, code: `"code":"rate_limit_exceeded"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.hint != "" {
				hdr = []string{"X-Should-Retry", c.hint}
			}
			up, addr := startCountingUpstream(t, answerAnthropicError(c.status, c.typ, hdr...))
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-x, api_key: sk-ant-hint-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], retries: 0}
logging: {level: error, access_log: false}
`)
			resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
			if resp.StatusCode != c.want || up.count() != 1 || !strings.Contains(b, c.code) {
				t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
			}
			checkHint(t, resp.Header, c.wantHint)
		})
	}
}

// Of the upstream's error answer's headers only its wait and its x-should-retry reach
// the client, both written by the gateway from what it read: no cookie, key, account
// name, rate-limit state or hop-by-hop header of the upstream's, whichever provider.
func TestRetryHintNoOtherUpstreamHeader(t *testing.T) {
	leaky := []string{
		"X-Should-Retry", "false",
		"Retry-After", "2",
		"Set-Cookie", "session=cookie-secret; Path=/",
		"X-Upstream-Key", "sk-upstream-secret-7890",
		"Openai-Organization", "org-secret",
		"Openai-Project", "proj-secret",
		"Anthropic-Organization-Id", "anth-org-secret",
		"X-Ratelimit-Remaining-Requests", "77077",
		"Www-Authenticate", `Bearer realm="upstream-realm"`,
		"Proxy-Authenticate", `Basic realm="proxy-realm"`,
		"Keep-Alive", "timeout=4242",
		"Connection", "X-Hop",
		"X-Hop", "hop-secret",
		"Upgrade", "h2c-secret",
		"Alt-Svc", `h3=":4433"`,
		"Server", "upstream-server-name",
	}
	secrets := []string{"cookie-secret", "sk-upstream-secret", "org-secret", "proj-secret", "anth-org-secret", "77077",
		"upstream-realm", "proxy-realm", "4242", "hop-secret", "h2c-secret", "4433", "upstream-server-name"}
	for _, c := range []struct {
		name, backend string
		answer        func(*fasthttp.RequestCtx)
		want          int
	}{
		{"openai", "{provider: openai, base_url: \"http://ADDR/v1\", model: m}", answerError(429, leaky...), 429},
		{"anthropic", "{provider: anthropic, base_url: \"http://ADDR/v1\", model: claude-x, api_key: sk-ant-hint-123456}",
			answerAnthropicError(529, "overloaded_error", leaky...), 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, addr := startCountingUpstream(t, c.answer)
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: `+strings.Replace(c.backend, "ADDR", addr, 1)+`
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
logging: {level: error, access_log: false}
`)
			resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
			if resp.StatusCode != c.want {
				t.Fatalf("%d: %s", resp.StatusCode, b)
			}
			checkWait(t, resp.Header, 2000, 2000, "false")
			var all strings.Builder
			for k, vs := range resp.Header {
				all.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
			}
			for _, s := range secrets {
				if strings.Contains(all.String(), s) {
					t.Errorf("the upstream's %q reached the client:\n%s", s, all.String())
				}
			}
			for _, h := range []string{"Set-Cookie", "Openai-Organization", "Www-Authenticate", "Proxy-Authenticate", "Keep-Alive", "X-Hop", "Upgrade", "Alt-Svc"} {
				if v := resp.Header.Values(h); len(v) > 0 {
					t.Errorf("%s %q passed on", h, v)
				}
			}
			if resp.Close {
				t.Error("the client's connection closed")
			}
		})
	}
}

// An upstream's x-should-retry speaks for its backend. The client's retry goes through
// the same plan, so it holds where that retry reaches the same backend first: after
// the gateway's own retries on it (none after a "false"), when a fallback could not take the call and the
// first backend's answer stands, and from a context fallback a context-window refusal
// sent the request to (the refusal comes again). A fallback's does not: the client's
// retry goes to the first backend, whose failure (a 503, no replica free) may have
// passed by then, and a fallback's "false" would keep the client from it; the SDKs then
// follow their status rule.
func TestUpstreamShouldRetryAfterRetriesAndFallbacks(t *testing.T) {
	t.Run("after the gateway's retries on the same backend", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(500, "X-Should-Retry", "true"))
		g := hintGateway(t, addr, 1, "", "")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 500 || up.count() != 2 {
			t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
		}
		checkHint(t, resp.Header, "true")
	})
	t.Run("false, which the gateway's retries heed too", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(500, "X-Should-Retry", "false"))
		g := hintGateway(t, addr, 1, "", "")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 500 || up.count() != 1 {
			t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
		}
		checkHint(t, resp.Header, "false")
	})
	t.Run("a fallback's false", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(503))
		spare, spareAddr := startCountingUpstream(t, answerError(429, "X-Should-Retry", "false", "Retry-After-Ms", "20"))
		g := hintGateway(t, addr, 0, `  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
`, ", fallbacks: [spare]")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 429 || up.count() != 1 || spare.count() != 1 || resp.Header.Get("X-Tollgate-Backend") != "spare" {
			t.Fatalf("%d from %q after %d+%d attempts: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), up.count(), spare.count(), b)
		}
		checkWait(t, resp.Header, 20, 20, "")
	})
	t.Run("a fallback's true", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(503))
		_, spareAddr := startCountingUpstream(t, answerError(400, "X-Should-Retry", "true"))
		g := hintGateway(t, addr, 0, `  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
`, ", fallbacks: [spare]")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 400 || up.count() != 1 {
			t.Fatalf("%d after %d attempts: %s", resp.StatusCode, up.count(), b)
		}
		checkHint(t, resp.Header, "")
	})
	t.Run("the first backend's answer kept past a fallback that could not take the call", func(t *testing.T) {
		_, addr := startCountingUpstream(t, answerError(500, "X-Should-Retry", "false"))
		g := hintGateway(t, addr, 0, `  claude: {provider: anthropic, base_url: "http://`+holdPort(t).Addr()+`/v1", model: claude-x, api_key: sk-ant-x}
`, ", fallbacks: [claude]")
		resp, b := retryPost(t, g, "/v1/chat/completions", `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 500 || resp.Header.Get("X-Tollgate-Backend") != "up" {
			t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b)
		}
		checkHint(t, resp.Header, "false")
	})
	t.Run("a context fallback's", func(t *testing.T) {
		addr := startStaticRefusingUpstream(t)
		large, largeAddr := startCountingUpstream(t, answerError(429, "X-Should-Retry", "false"))
		g := hintGateway(t, addr, 0, `  large: {provider: openai, base_url: "http://`+largeAddr+`/v1", model: l}
`, ", context_fallbacks: [large]")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 429 || large.count() != 1 {
			t.Fatalf("%d after %d attempts at the context fallback: %s", resp.StatusCode, large.count(), b)
		}
		checkHint(t, resp.Header, "false")
	})
}

// openai-go, with its default two retries, against upstreams that say x-should-retry:
// it reads the upstream's word through the gateway as it would from the upstream. A
// 500 that says false is one attempt (the status alone made it three); a 400 that says
// true is retried twice (the status alone made it one); a fallback's false, which says
// nothing of the first backend, leaves the SDK its status rule: a 429 retried twice,
// each retry reaching the first backend again.
func TestSDKRetriesUpstreamShouldRetry(t *testing.T) {
	ctx := context.Background()
	chat := func(g *gw) error {
		c := openai.NewClient(option.WithBaseURL(g.url+"/v1"), option.WithAPIKey("unused"))
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi"), MaxTokens: openai.Int(4)})
		return err
	}
	t.Run("500 false", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(500, "X-Should-Retry", "false"))
		g := hintGateway(t, addr, 0, "", "")
		if e := apiErr(t, chat(g)); e.StatusCode != 500 {
			t.Fatalf("status %d, want 500", e.StatusCode)
		}
		if n := up.count(); n != 1 {
			t.Errorf("the upstream saw %d attempts, want 1", n)
		}
	})
	t.Run("400 true", func(t *testing.T) {
		// A short wait, so that the SDK's retries do not take its own backoff.
		up, addr := startCountingUpstream(t, answerError(400, "X-Should-Retry", "true", "Retry-After-Ms", "10"))
		g := hintGateway(t, addr, 0, "", "")
		if e := apiErr(t, chat(g)); e.StatusCode != 400 {
			t.Fatalf("status %d, want 400", e.StatusCode)
		}
		if n := up.count(); n != 3 {
			t.Errorf("the upstream saw %d attempts, want 3: the call and the SDK's two retries", n)
		}
	})
	t.Run("a fallback's false", func(t *testing.T) {
		up, addr := startCountingUpstream(t, answerError(503))
		spare, spareAddr := startCountingUpstream(t, answerError(429, "X-Should-Retry", "false", "Retry-After-Ms", "10"))
		g := hintGateway(t, addr, 0, `  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
`, ", fallbacks: [spare]")
		if e := apiErr(t, chat(g)); e.StatusCode != 429 {
			t.Fatalf("status %d, want 429", e.StatusCode)
		}
		if n, m := up.count(), spare.count(); n != 3 || m != 3 {
			t.Errorf("the first backend saw %d attempts and the fallback %d, want 3 each", n, m)
		}
	})
}
