package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// SRE: an upstream crashing mid-stream under load cut every stream in flight, and
// each logged an "upstream stream failed" warning besides its access log line, as
// "upstream failed" did before it was throttled. Now the first of a backend goes
// out, then at most one a second, carrying how many were left out; another backend's
// first goes out at once, and so does the backend's first stream failure after its
// "upstream failed" lines: each warning has its own throttle.
func TestUpstreamStreamFailedWarningThrottled(t *testing.T) {
	chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		if req.Header.Get("X-Test-Mode") == "down" {
			// No answer at all: "upstream failed".
			_ = c.Close()
			return
		}
		// A stream begun, then the connection closed before its last chunk.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(sseChunk("hello")))
		_ = c.Close()
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  a: {provider: openai, base_url: "http://`+addr+`/v1", model: m, health: {eject_after: 1000}}
  b: {provider: openai, base_url: "http://`+addr+`/v1", model: m, health: {eject_after: 1000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: a}]}
  - {name: other, type: chat, routes: [{backend: b}]}
logging: {access_log: false}
`)
	post := func(model, mode string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Test-Mode", mode)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), resp.Header.Get("X-Request-Id")
	}
	cut := func(model string) string {
		t.Helper()
		status, body, id := post(model, "cut")
		if status != 200 || !strings.Contains(body, "upstream_stream_cut") {
			t.Fatalf("got %d %q, want a 200 stream ended with upstream_stream_cut", status, body)
		}
		return id
	}

	// The backend's "upstream failed" line goes out first.
	if status, body, _ := post("chat", "down"); status != 502 {
		t.Fatalf("got %d %q, want 502 from an upstream that closed without answering", status, body)
	}
	const flood = 40
	start := time.Now()
	firstCut := cut("chat")
	for range flood - 1 {
		cut("chat")
	}
	elapsed := time.Since(start)
	otherID := cut("other")

	var lines map[string][]map[string]any
	// The log lines are written as the streams end, by then.
	waitFor(t, func() bool {
		lines = warningLines(t, g.logs.String(), "upstream stream failed")
		return len(lines["b"]) == 1
	})
	if len(lines["a"]) == 0 || len(lines["a"]) > 1+int(elapsed/time.Second) {
		t.Fatalf("%d stream warnings for backend a in %v, want the first and at most one a second after:\n%s", len(lines["a"]), elapsed, g.logs.String())
	}
	if first := lines["a"][0]; first["request_id"] != firstCut || first["target"] == nil || first["error"] == nil {
		t.Fatalf("the backend's first stream warning after its \"upstream failed\" one is %v, want the line of request %s: each warning is throttled apart", first, firstCut)
	}
	if _, ok := lines["a"][0]["suppressed"]; ok {
		t.Fatalf("the first stream warning says some were left out: %v", lines["a"][0])
	}
	if lines["b"][0]["request_id"] != otherID {
		t.Fatalf("backend b's first stream failure logged %v, want its request %s", lines["b"], otherID)
	}

	// Once the interval has run out, the next failure goes out, naming its request
	// and counting every failure left out before it.
	g.rt.Load().upstreamLogOf("a", warnStreamFailed).next.Store(0)
	lastID := cut("chat")
	waitFor(t, func() bool {
		lines = warningLines(t, g.logs.String(), "upstream stream failed")
		return lines["a"][len(lines["a"])-1]["request_id"] == lastID
	})
	total := 0
	for _, l := range lines["a"] {
		n, _ := l["suppressed"].(float64)
		total += 1 + int(n)
	}
	if total != flood+1 {
		t.Fatalf("the stream warnings and the failures they say were left out count %d, want the %d failures:\n%s", total, flood+1, g.logs.String())
	}
	if _, ok := lines["a"][len(lines["a"])-1]["suppressed"]; !ok {
		t.Fatalf("the stream warning after a flood says nothing of the lines left out: %v", lines["a"][len(lines["a"])-1])
	}
	if n := g.rt.Load().upstreamLogOf("a", warnFailed).left.Load(); n != 0 {
		t.Fatalf("the stream failures counted %d left out of the \"upstream failed\" warnings", n)
	}
	if failed := warningLines(t, g.logs.String(), "upstream failed"); len(failed["a"]) != 1 {
		t.Fatalf("%d \"upstream failed\" lines for backend a, want the one request that got no answer", len(failed["a"]))
	}
}

// SRE: in an overload every answer that found no room under server.max_buffered_bytes
// logged "upstream answer refused" besides its access log line. Throttled as the
// other warnings: the first per backend, then at most one a second with suppressed.
func TestUpstreamAnswerRefusedWarningThrottled(t *testing.T) {
	var logs syncBuffer
	// An answer over 64 KiB, as only those count against the bound.
	big := []byte(chatAnswerOf(100_000))
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(big)
	})
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, max_buffered_bytes: 64KiB}
backends:
  a: {provider: openai, base_url: "http://`+up+`/v1", model: m}
  b: {provider: openai, base_url: "http://`+up+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: a}]}
  - {name: other, type: chat, routes: [{backend: b}]}
logging: {access_log: false}
`, Options{Logger: slogTo(&logs)})
	// Other answers hold the room: every answer now finds none.
	s.answerBytes.Add(1 << 20)
	defer s.answerBytes.Add(-1 << 20)
	refused := func(model string) string {
		t.Helper()
		ctx := newProxyCtx([]byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`))
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 503 || !strings.Contains(string(ctx.Response.Body()), "overloaded") {
			t.Fatalf("got %d %s, want 503 overloaded: the answer had no room", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return string(ctx.Response.Header.Peek("X-Request-Id"))
	}
	const flood = 40
	start := time.Now()
	firstID := refused("chat")
	for range flood - 1 {
		refused("chat")
	}
	elapsed := time.Since(start)
	otherID := refused("other")

	const msg = "upstream answer refused: server.max_buffered_bytes has no room for it"
	lines := warningLines(t, logs.String(), msg)
	if len(lines["a"]) == 0 || len(lines["a"]) > 1+int(elapsed/time.Second) {
		t.Fatalf("%d warnings for backend a in %v, want the first and at most one a second after:\n%s", len(lines["a"]), elapsed, logs.String())
	}
	first := lines["a"][0]
	if _, ok := first["suppressed"]; ok || first["request_id"] != firstID || first["max_buffered_bytes"] != float64(64<<10) {
		t.Fatalf("the first warning is %v, want request %s's, max_buffered_bytes 65536, nothing left out", first, firstID)
	}
	if len(lines["b"]) != 1 || lines["b"][0]["request_id"] != otherID {
		t.Fatalf("backend b's first refusal logged %v, want one line naming its request %s", lines["b"], otherID)
	}

	s.rt.Load().upstreamLogOf("a", warnAnswerRefused).next.Store(0)
	lastID := refused("chat")
	lines = warningLines(t, logs.String(), msg)
	last := lines["a"][len(lines["a"])-1]
	if last["request_id"] != lastID {
		t.Fatalf("the warning names request %v, want the one it logged, %s", last["request_id"], lastID)
	}
	total := 0
	for _, l := range lines["a"] {
		n, _ := l["suppressed"].(float64)
		total += 1 + int(n)
	}
	if total != flood+1 {
		t.Fatalf("the warnings and the refusals they say were left out count %d, want the %d refusals:\n%s", total, flood+1, logs.String())
	}
	if _, ok := last["suppressed"]; !ok {
		t.Fatalf("the warning after a flood says nothing of the lines left out: %v", last)
	}
	if failed := warningLines(t, logs.String(), "upstream failed"); len(failed) != 0 {
		t.Fatalf("refused answers logged \"upstream failed\": %v", failed)
	}
}

// warningLines are the lines of logs with message msg, by backend.
func warningLines(t *testing.T, logs, msg string) map[string][]map[string]any {
	t.Helper()
	by := map[string][]map[string]any{}
	for _, l := range jsonLogLines(t, logs) {
		if l["msg"] == msg {
			b, _ := l["backend"].(string)
			by[b] = append(by[b], l)
		}
	}
	return by
}
