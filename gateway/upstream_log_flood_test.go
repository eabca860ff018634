package gateway

import (
	"testing"
	"time"
)

// SRE: with every replica of a backend down, each failed request logged an "upstream
// failed" warning besides its access log line: a drill wrote about 113k such lines in
// 5 s. Now the first goes out, then at most one per backend a second, carrying how
// many were left out; another backend's first failure still goes out at once, and the
// line that goes out names its own request.
func TestUpstreamFailedWarningThrottled(t *testing.T) {
	deadA, deadB := deadAddr(t), deadAddr(t)
	var logs syncBuffer
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  a: {provider: openai, base_url: "http://`+deadA+`/v1", model: m}
  b: {provider: openai, base_url: "http://`+deadB+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: a}]}
  - {name: other, type: chat, routes: [{backend: b}]}
logging: {access_log: false}
`, Options{Logger: slogTo(&logs)})
	ctx := newProxyCtx([]byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
	const flood = 40
	start := time.Now()
	for range flood {
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 502 {
			t.Fatalf("status %d, want 502 from a dead upstream", ctx.Response.StatusCode())
		}
	}
	elapsed := time.Since(start)
	other := newProxyCtx([]byte(`{"model":"other","messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, other)

	lines := failedLines(t, logs.String())
	if len(lines["a"]) == 0 || len(lines["a"]) > 1+int(elapsed/time.Second) {
		t.Fatalf("%d warnings for backend a in %v, want the first and at most one a second after:\n%s", len(lines["a"]), elapsed, logs.String())
	}
	if _, ok := lines["a"][0]["suppressed"]; ok {
		t.Fatalf("the first warning says some were left out: %v", lines["a"][0])
	}
	if len(lines["b"]) != 1 || lines["b"][0]["request_id"] != string(other.Response.Header.Peek("X-Request-Id")) {
		t.Fatalf("backend b's first failure logged %v, want one line naming its request %s", lines["b"], other.Response.Header.Peek("X-Request-Id"))
	}

	// Once the interval has run out, the next failure goes out, naming its request
	// and counting every failure left out before it.
	s.rt.Load().upstreamLogOf("a", warnFailed).next.Store(0)
	proxyOnce(s, ctx)
	lines = failedLines(t, logs.String())
	last := lines["a"][len(lines["a"])-1]
	if last["request_id"] != string(ctx.Response.Header.Peek("X-Request-Id")) {
		t.Fatalf("the warning names request %v, want the one it logged, %s", last["request_id"], ctx.Response.Header.Peek("X-Request-Id"))
	}
	total := 0
	for _, l := range lines["a"] {
		n, _ := l["suppressed"].(float64)
		total += 1 + int(n)
	}
	if total != flood+1 {
		t.Fatalf("the warnings and the failures they say were left out count %d, want the %d failures:\n%s", total, flood+1, logs.String())
	}
	if _, ok := last["suppressed"]; !ok {
		t.Fatalf("the warning after a flood says nothing of the lines left out: %v", last)
	}
}

// failedLines are the "upstream failed" lines of logs by backend.
func failedLines(t *testing.T, logs string) map[string][]map[string]any {
	t.Helper()
	by := map[string][]map[string]any{}
	for _, l := range jsonLogLines(t, logs) {
		if l["msg"] == "upstream failed" {
			b, _ := l["backend"].(string)
			by[b] = append(by[b], l)
		}
	}
	return by
}
