package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// throttlingUpstream answers 429 with a Retry-After for its first `throttle` requests,
// then answers normally, and records when each request arrived.
type throttlingUpstream struct {
	mu       sync.Mutex
	arrivals []time.Time
	throttle int
	after    string
}

func startThrottlingUpstream(t *testing.T, throttle int, retryAfter string) (*throttlingUpstream, string) {
	t.Helper()
	u := &throttlingUpstream{throttle: throttle, after: retryAfter}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.arrivals = append(u.arrivals, time.Now())
		n := len(u.arrivals)
		u.mu.Unlock()
		if n <= u.throttle {
			ctx.SetStatusCode(429)
			ctx.Response.Header.Set("Retry-After", u.after)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return u, addr
}

func (u *throttlingUpstream) gaps() []time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(u.arrivals); i++ {
		out = append(out, u.arrivals[i].Sub(u.arrivals[i-1]))
	}
	return out
}

// retryConfig routes chat to upstream with two retries, and to spare as a fallback
// when spare is an address.
func retryConfig(upstream, spare string) string {
	backends, fallbacks := "", ""
	if spare != "" {
		backends = `  spare: {provider: openai, base_url: "http://` + spare + `/v1", model: up-model}` + "\n"
		fallbacks = ", fallbacks: [spare]"
	}
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
` + backends + `endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2` + fallbacks + `}
logging: {level: error, access_log: false}
`
}

// An upstream's 429 with a short Retry-After is waited out, then retried.
func TestUpstreamRetryAfterIsHonoured(t *testing.T) {
	up, addr := startThrottlingUpstream(t, 1, "1")
	s := newTestServer(t, retryConfig(addr, ""))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	gaps := up.gaps()
	if len(gaps) != 1 {
		t.Fatalf("%d attempts, want 2", len(gaps)+1)
	}
	// The backoff alone would wait 12–25 ms; Retry-After asks for a second.
	if gaps[0] < time.Second {
		t.Fatalf("retried %v after a 429 with Retry-After: 1", gaps[0])
	}
}

// A Retry-After longer than the gateway will wait ends the retries at once: the client
// gets the upstream's 429 and its Retry-After, to wait on its own terms.
func TestUpstreamLongRetryAfterIsPassedOn(t *testing.T) {
	up, addr := startThrottlingUpstream(t, 10, "30")
	s := newTestServer(t, retryConfig(addr, ""))
	ctx := newProxyCtx(benchChatBody)
	start := time.Now()
	proxyOnce(s, ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the gateway waited %v on a 30 s Retry-After", d)
	}
	if ctx.Response.StatusCode() != 429 {
		t.Fatalf("status %d, want the upstream's 429: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if got := string(ctx.Response.Header.Peek("Retry-After")); got != "30" {
		t.Fatalf("Retry-After %q, want 30", got)
	}
	if !strings.Contains(string(ctx.Response.Body()), "rate_limit_exceeded") {
		t.Fatalf("body %s is not the upstream's", ctx.Response.Body())
	}
	if n := len(up.gaps()) + 1; n != 1 {
		t.Fatalf("%d attempts on a backend that asked for 30 s", n)
	}
}

// A long Retry-After does not hold back a fallback to another backend.
func TestUpstreamLongRetryAfterGoesToFallback(t *testing.T) {
	_, addr := startThrottlingUpstream(t, 10, "30")
	spare, spareAddr := startThrottlingUpstream(t, 0, "0")
	s := newTestServer(t, retryConfig(addr, spareAddr))
	ctx := newProxyCtx(benchChatBody)
	start := time.Now()
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the fallback waited %v", d)
	}
	spare.mu.Lock()
	n := len(spare.arrivals)
	spare.mu.Unlock()
	if n != 1 {
		t.Fatalf("fallback got %d requests", n)
	}
}
