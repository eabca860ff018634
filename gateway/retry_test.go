package gateway

import (
	"encoding/json"
	"strconv"
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
	t.Parallel()
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

// countingUpstream is a fake upstream that records each request's body and answers as
// its answer function says.
type countingUpstream struct {
	mu     sync.Mutex
	bodies []string
}

func startCountingUpstream(t *testing.T, answer func(ctx *fasthttp.RequestCtx)) (*countingUpstream, string) {
	t.Helper()
	u := &countingUpstream{}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.bodies = append(u.bodies, string(ctx.PostBody()))
		u.mu.Unlock()
		answer(ctx)
	})
	return u, addr
}

func (u *countingUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

// answerChat answers with a chat completion.
func answerChat(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.Response.SetBodyRaw(benchChatResp)
}

// answerError answers with status, an OpenAI error body whose code is "s" and the
// status, and the header name/value pairs of hdrs.
func answerError(status int, hdrs ...string) func(*fasthttp.RequestCtx) {
	return func(ctx *fasthttp.RequestCtx) {
		for i := 0; i+1 < len(hdrs); i += 2 {
			ctx.Response.Header.Set(hdrs[i], hdrs[i+1])
		}
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"message":"status ` + strconv.Itoa(status) + `","type":"server_error","param":null,"code":"s` + strconv.Itoa(status) + `"}}`)
	}
}

// A Retry-After under the longest wait but past the deadline rules out the retry, not
// the fallback, which needs no pause: the deadline has not passed, so the fallback
// answers rather than the client getting the primary's 429.
func TestRetryAfterPastDeadlineGoesToFallback(t *testing.T) {
	_, primary := startCountingUpstream(t, answerError(429, "Retry-After", "3"))
	spare, spareAddr := startCountingUpstream(t, answerChat)
	s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: up-model}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: spare-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare], timeout: 1s}
logging: {level: error, access_log: false}
`)
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || spare.count() != 1 {
		t.Fatalf("status %d, fallback asked %d times: %s; want 200 from the fallback, which the deadline left time for",
			ctx.Response.StatusCode(), spare.count(), ctx.Response.Body())
	}
}

// A fallback that cannot take a valid request (an Anthropic backend asked for n=2) is
// skipped: the client gets the primary's 503, which it may retry, not a 400 blaming
// its request.
func TestFallbackLocalRefusalKeepsUpstreamError(t *testing.T) {
	_, primary := startCountingUpstream(t, answerError(503))
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: m}
  claude: {provider: anthropic, base_url: "http://`+holdPort(t).Addr()+`/v1", model: claude-x, api_key: sk-ant-x}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1, fallbacks: [claude]}
logging: {level: error, access_log: false}
`)
	resp, body := postChat(t, g, `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "s503") || resp.Header.Get("X-Tollgate-Backend") != "up" {
		t.Fatalf("%d from %q: %s; want the primary's 503 from up", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), body)
	}
}

// A fallback that refuses the call locally is skipped for the next one, which answers.
func TestFallbackLocalRefusalSkippedForNextFallback(t *testing.T) {
	_, primary := startCountingUpstream(t, answerError(503))
	spare, spareAddr := startCountingUpstream(t, answerChat)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: m}
  claude: {provider: anthropic, base_url: "http://`+holdPort(t).Addr()+`/v1", model: claude-x, api_key: sk-ant-x}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1, fallbacks: [claude, spare]}
logging: {level: error, access_log: false}
`)
	resp, body := postChat(t, g, `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || spare.count() != 1 || resp.Header.Get("X-Tollgate-Backend") != "spare" {
		t.Fatalf("%d from %q, spare asked %d times: %s; want 200 from spare", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), spare.count(), body)
	}
}

// A local refusal by the first backend is the client's answer: its request is one no
// backend of the endpoint's routes can express.
func TestFirstBackendLocalRefusalAnswers(t *testing.T) {
	t.Parallel()
	_, spareAddr := startCountingUpstream(t, answerChat)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+holdPort(t).Addr()+`/v1", model: claude-x, api_key: sk-ant-x}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], retries: 1, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	resp, body := postChat(t, g, `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 400 || !strings.Contains(body, `"param":"n"`) {
		t.Fatalf("%d: %s; want claude's 400 on n", resp.StatusCode, body)
	}
}

// After the primary's retries fail, the fallback is asked once, with its own model
// name in a body that is still valid JSON, and x-tollgate-backend names it.
func TestFallbackGetsOwnModelAndBackendHeader(t *testing.T) {
	t.Parallel()
	up, primary := startCountingUpstream(t, answerError(503))
	spare, spareAddr := startCountingUpstream(t, answerChat)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: a-much-longer-primary-model-name}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	resp, body := postChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Backend") != "spare" {
		t.Fatalf("%d from %q: %s; want 200 from spare", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), body)
	}
	if up.count() != 3 || spare.count() != 1 {
		t.Fatalf("%d primary and %d fallback attempts; want 3 and 1", up.count(), spare.count())
	}
	var m struct{ Model string }
	spare.mu.Lock()
	sent := spare.bodies[0]
	spare.mu.Unlock()
	if err := json.Unmarshal([]byte(sent), &m); err != nil || m.Model != "s" {
		t.Fatalf("fallback received %s (err %v); want model \"s\"", sent, err)
	}
}

// When every attempt fails, the client gets the last upstream's status, body and
// Retry-After, not a gateway 502.
func TestAllAttemptsFailedPassesLastUpstreamError(t *testing.T) {
	_, primary := startCountingUpstream(t, answerError(500))
	_, spareAddr := startCountingUpstream(t, answerError(503, "Retry-After", "1"))
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: m}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	resp, body := postChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "s503") || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("X-Tollgate-Backend") != "spare" {
		t.Fatalf("%d retry-after %q backend %q: %s; want the fallback's 503 with Retry-After 1",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Tollgate-Backend"), body)
	}
}

// A 4xx the client caused is neither retried nor sent to a fallback.
func TestClientErrorNotRetried(t *testing.T) {
	up, primary := startCountingUpstream(t, answerError(400))
	spare, spareAddr := startCountingUpstream(t, answerChat)
	s := newTestServer(t, retryConfig(primary, spareAddr))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 400 || up.count() != 1 || spare.count() != 0 {
		t.Fatalf("%d, %d primary and %d fallback attempts; want 400 after one attempt", ctx.Response.StatusCode(), up.count(), spare.count())
	}
}

// A pool with affinity sends every attempt of a prompt to its ring target: a retry
// must go to another target in service when that one refused the attempt, or the
// client gets a 502 while a healthy replica sits idle (until the refusing one is
// ejected, which takes failures of many requests).
func TestRetryAvoidsTargetThatFailedIt(t *testing.T) {
	t.Parallel()
	dead := holdPort(t)
	for _, c := range []struct{ name, balance string }{
		{"round_robin", ""}, {"least_loaded", "balance: least_loaded, "}, {"affinity", "affinity: {by: prefix}, "},
	} {
		balance := c.balance
		t.Run(c.name, func(t *testing.T) {
			live, addr := startCountingUpstream(t, answerChat)
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, model: m, `+balance+`targets: ["http://`+dead.Addr()+`/v1", "http://`+addr+`/v1"],
       health: {eject_after: 1000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1}
`)
			for i := range 20 {
				body := `{"model":"chat","messages":[{"role":"user","content":"prompt ` + strconv.Itoa(i) + `"}]}`
				if resp, b := postChat(t, g, body); resp.StatusCode != 200 {
					t.Fatalf("request %d: %d %s; want the retry served by the live replica", i, resp.StatusCode, b)
				}
			}
			if n := live.count(); n != 20 {
				t.Fatalf("live replica served %d of 20", n)
			}
		})
	}
}
