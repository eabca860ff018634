package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// server.max_buffered_bytes bounds the request bodies held in memory, all requests
// together: while one client's large body is held, another's that would take the total
// past the bound is refused 503 overloaded with Retry-After (its rest read and
// dropped, the connection kept), and is taken once the first is answered. The held
// bytes and the bound are gauges on /metrics, back to 0 after.
func TestMaxBufferedBytes(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 512KiB, max_buffered_bytes: 512KiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
logging: {level: info, access_log: true}
`, Options{})
	// send sends a request whose body has length bytes, the first of them part.
	send := func(c *rawClient, id string, length int, part string) {
		t.Helper()
		postBytes(t, c, "/v1/chat/completions", "X-Request-Id: "+id+"\r\n", length, part)
	}
	post := func(c *rawClient, id, b string) { t.Helper(); send(c, id, len(b), b) }
	body := func(n int) string { return padBody(chatPad, n) }
	read := func(c *rawClient) (*http.Response, string) { t.Helper(); return nextAnswer(t, c) }

	// A sends 300,000 bytes of a 400,000-byte body: its buffer, grown to the
	// Content-Length, is held.
	a := dialRaw(t, g, nil)
	whole := body(400000)
	send(a, "a", len(whole), whole[:300000])
	waitBuffered(t, g, 400000, "while A's body arrives")
	if v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_limit_bytes"); v != 512<<10 {
		t.Errorf("tollgate_request_body_buffered_limit_bytes = %v", v)
	}

	// B's body would take the total past 512 KiB.
	b := dialRaw(t, g, nil)
	post(b, "b1", body(200000))
	resp, got := read(b)
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" || resp.Close {
		t.Fatalf("B got %d %s (Retry-After %q, close %v); want 503 overloaded, Retry-After 1, the connection kept", resp.StatusCode, got, resp.Header.Get("Retry-After"), resp.Close)
	}
	if line := accessLine(t, g, "b1"); line["status"] != 503.0 || line["error"] != "overloaded" {
		t.Errorf("access log %v", line)
	}
	// Asked from its headers (Expect: 100-continue), such a body is refused before it
	// is sent, the connection then closed.
	e := dialRaw(t, g, nil)
	postBytes(t, e, "/v1/chat/completions", "X-Request-Id: e1\r\nExpect: 100-continue\r\n", 200000, "")
	resp, got = read(e)
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("an expectation for a body with no room got %d %s (Retry-After %q); want 503 overloaded", resp.StatusCode, got, resp.Header.Get("Retry-After"))
	}
	// A body under 64 KiB counts nothing, and is taken.
	post(b, "b2", body(60000))
	if resp, got := read(b); resp.StatusCode != 200 {
		t.Fatalf("B's small body got %d %s", resp.StatusCode, got)
	}

	// A's body ends: it is answered, and B's large body is taken on the same connection.
	writeRaw(t, a, whole[300000:])
	if resp, got := read(a); resp.StatusCode != 200 {
		t.Fatalf("A got %d %s", resp.StatusCode, got)
	}
	post(b, "b3", body(200000))
	if resp, got := read(b); resp.StatusCode != 200 {
		t.Fatalf("B's body after A's got %d %s", resp.StatusCode, got)
	}
	waitBuffered(t, g, 0, "after the answers")
}

// A body alone is always taken, its chunked buffer one byte over the bound included.
func TestMaxBufferedBytesBodyAlone(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, max_buffered_bytes: 256KiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	b := padBody(chatPad, 256<<10)
	c := dialRaw(t, g, nil)
	writeRaw(t, c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+strconv.FormatInt(int64(len(b)), 16)+"\r\n"+b+"\r\n0\r\n\r\n")
	if resp, got := nextAnswer(t, c); resp.StatusCode != 200 {
		t.Fatalf("a chunked body of max_body_bytes alone got %d %s", resp.StatusCode, got)
	}
}

// Left out, the bound is 1GiB, or half the runtime's memory limit when less, and at
// least max_body_bytes; written, 0, a negative size or one under max_body_bytes is
// refused.
func TestMaxBufferedBytesConfig(t *testing.T) {
	for _, c := range []struct {
		maxBody     Size
		limit, want int64
	}{
		{8 << 20, 1<<63 - 1, 1 << 30},
		{8 << 20, 900 << 20, 450 << 20},
		{8 << 20, 10 << 20, 8 << 20},
		{2 << 30, 1<<63 - 1, 2 << 30},
	} {
		if got := defaultMaxBuffered(c.maxBody, c.limit); int64(got) != c.want {
			t.Errorf("defaultMaxBuffered(%d, %d) = %d, want %d", c.maxBody, c.limit, got, c.want)
		}
	}
	const rest = "backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	cfg, problems := parseProblems(t, "server:\n  listen: \":8080\"\n"+rest, nil)
	if len(problems) > 0 || cfg.Server.MaxBufferedBytes < cfg.Server.MaxBodyBytes || cfg.Server.MaxBufferedBytes > 1<<30 {
		t.Errorf("left out: %d, problems %q", cfg.Server.MaxBufferedBytes, problems)
	}
	for y, want := range map[string]string{
		"server:\n  max_buffered_bytes: 0\n":                              "t.yaml:2: server.max_buffered_bytes: must be more than 0 (leave it out for 1GiB or half the memory limit)",
		"server:\n  max_buffered_bytes: 4MiB\n":                           "t.yaml:2: server.max_buffered_bytes: must be at least server.max_body_bytes",
		"server:\n  max_body_bytes: 1MiB\n  max_buffered_bytes: 1MiB\n":   "",
		"server:\n  max_body_bytes: 1MiB\n  max_buffered_bytes: 512KiB\n": "t.yaml:3: server.max_buffered_bytes: must be at least server.max_body_bytes",
	} {
		_, problems := parseProblems(t, y+rest, nil)
		if want == "" && len(problems) > 0 || want != "" && !slices.Equal(problems, []string{want}) {
			t.Errorf("%q: problems %q, want %q", y, problems, want)
		}
	}
}

// A body refused for want of room gives back what it held at once, not once the rest
// of it has been read and dropped: slow uploads that all grow together would otherwise
// each keep a part of the bound while their refused rest trickles in, and refuse one
// another until none is taken.
func TestMaxBufferedBytesRefusedGivesBack(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 512KiB, max_buffered_bytes: 512KiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	whole := padBody(chatPad, 300000)
	held := func(want float64) { t.Helper(); waitBuffered(t, g, want, "") }
	start := func(c *rawClient, part string) {
		t.Helper()
		postBytes(t, c, "/v1/chat/completions", "", 300000, part)
	}
	write := func(c *rawClient, part string) { t.Helper(); writeRaw(t, c, part) }
	// A's buffer grows to its Content-Length: 300,000 held.
	a := dialRaw(t, g, nil)
	start(a, whole[:270000])
	held(300000)
	// B's grows to 128 KiB (431,072 held), then its growth to 256 KiB has no room.
	b := dialRaw(t, g, nil)
	start(b, whole[:100000])
	held(300000 + 128<<10)
	write(b, whole[100000:140000])
	held(300000)
	// Refused, B's rest is still read and dropped, then its 503 is sent.
	write(b, whole[140000:])
	if resp, got := nextAnswer(t, b); resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) {
		t.Fatalf("B got %d %s, want 503 overloaded", resp.StatusCode, got)
	}
	write(a, whole[270000:])
	if resp, got := nextAnswer(t, a); resp.StatusCode != 200 {
		t.Fatalf("A got %d %s", resp.StatusCode, got)
	}
	held(0)
}

// An MLflow invocation's body is copied with its endpoint's name spliced in: that copy
// is a body buffer too, counted against server.max_buffered_bytes beside the body
// read, and refused 503 overloaded when it has no room.
func TestMaxBufferedBytesInvocationSplice(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 512KiB, max_buffered_bytes: 512KiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	head := `{"messages":[{"role":"user","content":"hi"}],"user":"`
	body := func(n int) string { return padBody(head, n) }
	post := func(c *rawClient, b string) (*http.Response, string) {
		t.Helper()
		postBytes(t, c, "/endpoints/chat/invocations", "", len(b), b)
		return nextAnswer(t, c)
	}
	c := dialRaw(t, g, nil)
	// 200,000 bytes read and about as many spliced: both fit.
	if resp, got := post(c, body(200000)); resp.StatusCode != 200 {
		t.Fatalf("an invocation of 200,000 bytes got %d %s", resp.StatusCode, got)
	}
	// A holds 300,000: an invocation of 200,000 bytes has room to be read, not to
	// be copied as well.
	a := dialRaw(t, g, nil)
	whole := `{"model":"chat",` + body(300000 - len(`{"model":"chat",`) + 1)[1:]
	postBytes(t, a, "/v1/chat/completions", "", 300000, whole[:270000])
	waitBuffered(t, g, 300000, "while A's body arrives")
	resp, got := post(c, body(200000))
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("an invocation whose copy has no room got %d %s (Retry-After %q); want 503 overloaded", resp.StatusCode, got, resp.Header.Get("Retry-After"))
	}
	writeRaw(t, a, whole[270000:])
	if resp, got := nextAnswer(t, a); resp.StatusCode != 200 {
		t.Fatalf("A got %d %s", resp.StatusCode, got)
	}
	waitBuffered(t, g, 0, "after the answers")
}

// A body over 64 KiB counts, once read, the copy of it the provider sends upstream
// too, for as long as the request: its buffer plus its length.
// Not t.Parallel: the gauge must be read within the upstream's 400 ms TTFT.
func TestMaxBufferedBytesCountsUpstreamCopy(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {ttft: 400ms, max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	b := padBody(chatPad, 100000)
	c := dialRaw(t, g, nil)
	postBytes(t, c, "/v1/chat/completions", "", len(b), b)
	// The buffer grows to the Content-Length: 100,000 bytes, and as many again.
	waitBuffered(t, g, 200000, "while the upstream works")
	if resp, _ := nextAnswer(t, c); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitBuffered(t, g, 0, "after the answer")
}

// A body buffer grows to powers of two (or its bound), whatever capacity the pooled
// buffer it started in had: what a body holds against max_buffered_bytes depends on
// the bytes that came alone. A 60,000-byte buffer left by an earlier body grew to
// 120,000, where a fresh one grows to 128 KiB.
func TestBodyCap(t *testing.T) {
	for _, c := range []struct{ c, bound, want int }{
		{0, 300000, bodyChunk},
		{bodyChunk, 300000, 2 * bodyChunk},
		{60000, 300000, 128 << 10},
		{64 << 10, 300000, 128 << 10},
		{50001, 300000, 128 << 10},
		{128 << 10, 300000, 256 << 10},
		{256 << 10, 300000, 300000},
		{8 << 10, 10000, 10000},
		{0, 100, bodyChunk},
	} {
		if got := bodyCap(c.c, c.bound); got != c.want {
			t.Errorf("bodyCap(%d, %d) = %d, want %d", c.c, c.bound, got, c.want)
		}
	}
	// From any capacity the pool may hold, a body of 100,000 bytes ends in 128 KiB.
	for c0 := 1; c0 <= maxPooledBuffer; c0 += 997 {
		c := c0
		for c < 100000 {
			c = bodyCap(c, 300000)
		}
		if c != 128<<10 {
			t.Fatalf("from %d: %d, want %d", c0, c, 128<<10)
		}
	}
}
