package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// scriptedUpstream accepts connections, reads one HTTP request from each and then hands
// the connection to script, which writes whatever bytes it likes.
func scriptedUpstream(t *testing.T, script func(n int, c net.Conn, req *http.Request)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var count atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					n := int(count.Add(1))
					script(n, c, req)
				}
			}()
		}
	}()
	return ln.Addr().String(), &count
}

func sseChunk(content string) string {
	return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` +
		content + `"},"finish_reason":null}]}` + "\n\n"
}

func postChat(t *testing.T, g *gw, body string) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func targetsIdle(t *testing.T, g *gw) {
	t.Helper()
	rt := g.rt.Load()
	for _, b := range rt.backendList {
		for _, tg := range b.Targets() {
			deadline := time.Now().Add(3 * time.Second)
			for tg.InFlight() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := tg.InFlight(); n != 0 {
				t.Errorf("target %s still has %d in flight", tg.URL, n)
			}
		}
	}
}

// A stream that fails before its header went out to the client (an empty one, that
// ends with its header) is answered with an error status, not a 200 and an error
// event; once the header has gone (the gateway sends it when the upstream makes it
// wait), the stream ends with an error event.
func TestEmptyStreamIs502(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, resp string
		status     int
	}{
		{"chunked empty", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502},
		{"content-length 0", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n", 502},
		{"reset after the header", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, tc.resp)
				if tcp, ok := c.(*net.TCPConn); ok {
					_ = tcp.SetLinger(0)
				}
				c.Close()
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, streamBody)
			switch {
			case resp.StatusCode != tc.status:
				t.Errorf("status %d, body %q; want %d", resp.StatusCode, body, tc.status)
			case tc.status == 502 && (!strings.Contains(body, `"code":"upstream_stream_cut"`) || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Request-Id") == ""):
				t.Errorf("502 %v %q: want an upstream_stream_cut error body with a request ID", resp.Header, body)
			case tc.status == 200 && (!strings.HasPrefix(body, "data: {\"error\"") || strings.Contains(body, "[DONE]")):
				t.Errorf("200 %q: want an error event and no [DONE]", body)
			}
			targetsIdle(t, g)
			// The connection the 502 went out on serves the next request.
			if resp, body := postChat(t, g, chatBody); resp.StatusCode != 502 && resp.StatusCode != 200 {
				t.Errorf("next request: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func writeStreamHead(c net.Conn) {
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
}

func writeChunk(c net.Conn, s string) {
	_, _ = io.WriteString(c, strconv.FormatInt(int64(len(s)), 16)+"\r\n"+s+"\r\n")
}

// When the request's deadline is spent on the primary, the fallbacks are still
// "tried": each Send fails at once with ErrTimeout (DoDeadline with a past deadline),
// which passive health counts against a fallback the request never reached. With the
// default eject_after (5) both backends are out after 5 such requests and /readyz
// fails, though the fallback never saw a request.
func TestSpentDeadlineSkipsFallbacks(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) { <-hang })
	spare, spareAddr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + slow + `/v1", model: up-model}
  spare: {provider: openai, base_url: "http://` + spareAddr + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], fallbacks: [spare], timeout: 200ms}
logging: {level: error}
`
	g := startGateway(t, cfg)
	for i := 0; i < 5; i++ {
		if resp, body := postChat(t, g, chatBody); resp.StatusCode != 504 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := spare.Stats().Requests["/v1/chat/completions"]; n != 0 {
		t.Fatalf("spare got %d requests", n)
	}
	for _, b := range g.rt.Load().backendList {
		if b.Name == "spare" && !b.Healthy() {
			t.Errorf("fallback %q ejected though it never got a request: %+v", b.Name, b.Health())
		}
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz: %d %s", resp.StatusCode, b)
	}
}

// A non-streamed 200 whose body is not one JSON object must be a 502
// upstream_bad_response (README), not passed on: the scan stops at the first object's
// closing brace and never looks at what follows.
func TestAnswerWithTrailingBytesIs502(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body string }{
		{"html after object", `{"id":"x","object":"chat.completion","choices":[]}<html>502 Bad Gateway</html>`},
		{"two objects", `{"id":"a","object":"chat.completion","choices":[]}{"id":"b","object":"chat.completion","choices":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
					strconv.Itoa(len(tc.body))+"\r\n\r\n"+tc.body)
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, chatBody)
			if resp.StatusCode != 502 {
				t.Errorf("status %d, body %q; want 502 upstream_bad_response", resp.StatusCode, body)
			}
		})
	}
}

// stallInChunkSize sends one whole event, then the next chunk's size line up to its
// '\r' and goes silent: the gateway's next socket read happens inside fasthttp's
// readCrLf, which wraps the read's error in ErrBrokenChunk (no Unwrap).
func stallInChunkSize(release chan struct{}) func(int, net.Conn, *http.Request) {
	return func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, sseChunk("Hel"))
		next := sseChunk("lo")
		_, _ = io.WriteString(c, strconv.FormatInt(int64(len(next)), 16)+"\r")
		<-release
	}
}

// stream_idle_timeout firing there must still end the stream with upstream_timeout.
func TestIdleTimeoutInsideChunkHeader(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := scriptedUpstream(t, stallInChunkSize(release))
	cfg := strings.Replace(mockConfig(addr, "", ""), "timeout: 20s}", "timeout: 20s, stream_idle_timeout: 300ms}", 1)
	g := startGateway(t, cfg)
	resp, body := postChat(t, g, streamBody)
	if resp.StatusCode != 200 || strings.Contains(body, "[DONE]") || !strings.Contains(body, `"code":"upstream_timeout"`) {
		t.Errorf("status %d body %q; want an upstream_timeout error event", resp.StatusCode, body)
	}
}

// README: the request's deadline cutting a stream that was still arriving does not
// count against the target. Five such cuts (eject_after's default) must not eject it.
func TestEndpointDeadlineInsideChunkHeaderKeepsTarget(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := scriptedUpstream(t, stallInChunkSize(release))
	cfg := strings.Replace(mockConfig(addr, "", ""), "routes: [{backend: up}]}", "routes: [{backend: up}], timeout: 300ms}", 1)
	g := startGateway(t, cfg)
	for i := 0; i < 5; i++ {
		resp, body := postChat(t, g, streamBody)
		if resp.StatusCode != 200 || strings.Contains(body, "[DONE]") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if i == 0 {
			t.Logf("body %q", body)
		}
	}
	for _, b := range g.rt.Load().backendList {
		if b.Name == "up" && !b.Healthy() {
			t.Errorf("target ejected by the gateway's own deadline: %+v", b.Health())
		}
	}
}

// Clients hanging up must not count against the target (TestStreamClientsGoneKeep-
// TargetInService), also when the upstream's segments end inside a chunk-size line.
func TestClientsGoneInsideChunkHeaderKeepTarget(t *testing.T) {
	t.Parallel()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		ev := sseChunk("tok")
		size := strconv.FormatInt(int64(len(ev)), 16)
		_, _ = io.WriteString(c, size+"\r")
		for i := 0; i < 200; i++ {
			time.Sleep(20 * time.Millisecond)
			if _, err := io.WriteString(c, "\n"+ev+"\r\n"+size+"\r"); err != nil {
				return
			}
		}
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	for range 5 {
		conn, br := dialGateway(t, g)
		if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream did not start: %v", err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
		waitFor(t, func() bool { return g.hijacked.Load() == 0 })
	}
	if n := strings.Count(g.logs.String(), `"status":499`); n != 5 {
		t.Errorf("%d access log lines with status 499, want 5", n)
	}
	for _, b := range g.rt.Load().backendList {
		if !b.Healthy() {
			t.Errorf("backend %s ejected after clients went away: %+v", b.Name, b.Health())
		}
	}
}

// An upstream that dies mid-stream is an upstream error (DESIGN: metrics of "upstream
// errors"); some tollgate_ series must show it, or SREs never see such failures.
func TestStreamCutInMetrics(t *testing.T) {
	t.Parallel()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, sseChunk("Hel"))
		// Time for the gateway to read the chunk: a reset that arrives first drops
		// it from the receive queue, and the stream fails before its first event
		// (a 502, not a cut stream).
		time.Sleep(300 * time.Millisecond)
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	for range 3 {
		if resp, body := postChat(t, g, streamBody); !strings.Contains(body, "upstream_stream_cut") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	}
	// A stream is recorded just after its last bytes went to the client.
	var fams map[string]*dto.MetricFamily
	waitWithin(5*time.Second, func() bool {
		var err error
		if fams, err = promtest.Scrape("http://" + g.AdminAddr() + "/metrics"); err != nil {
			t.Fatal(err)
		}
		n, _ := promtest.Sum(fams, "tollgate_requests_total", func(map[string]string) bool { return true })
		return n == 3
	})
	for _, c := range []struct {
		name  string
		match func(map[string]string) bool
		want  float64
	}{
		{"tollgate_stream_errors_total", func(l map[string]string) bool { return l["code"] == "upstream_stream_cut" && l["backend"] == "up" }, 3},
		{"tollgate_stream_errors_total", func(l map[string]string) bool { return l["code"] != "upstream_stream_cut" }, 0},
		{"tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == "error" }, 3},
		{"tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] != "error" }, 0},
		{"tollgate_requests_total", func(l map[string]string) bool { return l["code"] == "200" }, 3},
	} {
		if v, _ := promtest.Sum(fams, c.name, c.match); v != c.want {
			t.Errorf("%s: %v, want %v", c.name, v, c.want)
		}
	}
}

// A stream that never had a token is judged by the canary by how long it took to end,
// not as instant (its time to first token is zero).
func TestCanaryJudgesTokenlessStreamByDuration(t *testing.T) {
	t.Parallel()
	_, stable := startMock(t, mockllm.Options{MaxTokens: 4})
	canary, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		time.Sleep(150 * time.Millisecond)
		writeChunk(c, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		writeChunk(c, "data: [DONE]\n\n")
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	cfg := strings.Replace(canaryConfig(stable, canary), "interval: 400ms", "interval: 1h", 1)
	g := startGateway(t, cfg)
	c := &http.Client{Timeout: 10 * time.Second}
	served := 0
	for u := 0; u < 400 && served == 0; u++ {
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(streamBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-ID", "user-"+strconv.Itoa(u))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Tollgate-Backend") == "canary" {
			served++
		}
	}
	if served == 0 {
		t.Fatal("no user of 400 landed on the canary")
	}
	var view struct {
		Canary struct {
			Window struct {
				Requests uint64        `json:"requests"`
				P99      time.Duration `json:"p99_ns"`
			} `json:"window"`
		} `json:"canary"`
	}
	// The stream is observed when its relay ends, which may come after the client has
	// read the last chunk.
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := c.Get("http://" + g.AdminAddr() + "/admin/endpoints/chat")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&view)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if view.Canary.Window.Requests > 0 || time.Now().After(end) {
			break
		}
	}
	if w := view.Canary.Window; w.Requests != 1 || w.P99 < 140*time.Millisecond {
		t.Errorf("canary window %+v, want 1 request with a p99 of about 150ms", w)
	}
}

// A client that hangs up on a stream while the upstream is between two events (a
// request queued behind others, a long reasoning pause) aborts the upstream request at
// once: the upstream connection closes, the target's slot and the stream are given
// back, and the request ends as client_gone (499) without counting against the target.
func TestClientGoneWhileUpstreamSilentAbortsUpstream(t *testing.T) {
	t.Parallel()
	addr, upstreamClosed, release := silentStreamUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	// Runs before the gateway stops, so that its shutdown does not wait on the stream.
	t.Cleanup(release)
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetLinger(0)
	_ = conn.Close()
	gone := time.Now()
	ok := pollFor(8*time.Second, func() bool {
		return upstreamClosed.Load() && targetsInFlight(g) == 0 && g.hijacked.Load() == 0
	})
	if !ok {
		t.Fatalf("%v after the client hung up: upstream connection closed %v, %d upstream requests in flight, %d streams open; want closed, 0, 0",
			time.Since(gone).Round(time.Second), upstreamClosed.Load(), targetsInFlight(g), g.hijacked.Load())
	}
	if logs := g.logs.String(); !strings.Contains(logs, `"status":499`) || !strings.Contains(logs, `"error":"client_gone"`) {
		t.Errorf("want the stream logged as 499 client_gone:\n%s", logs)
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == "canceled" }); n != 1 {
		t.Errorf("%v attempts counted as canceled, want the stream's one (a hang-up says nothing of the target)", n)
	}
}

// pollFor polls cond every 20 ms for up to limit.
func pollFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// targetsInFlight is the sum of every target's requests in flight.
func targetsInFlight(g *gw) int64 {
	var n int64
	rt := g.rt.Load()
	if rt == nil {
		return -1
	}
	for _, b := range rt.backendList {
		for _, tg := range b.Targets() {
			n += tg.InFlight()
		}
	}
	return n
}

// An upstream answer over the buffered-answer bound (64 MiB) is an invalid answer,
// 502 upstream_bad_response, and is not retried: each retry would re-run the
// generation for the same answer.
func TestAnswerOverLimitNotRetried(t *testing.T) {
	t.Parallel()
	addr, hits := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		// The header alone announces an answer over the bound.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 83886080\r\n\r\n{")
		c.Close()
	})
	g := startGateway(t, mockConfig(addr, "", `
  - {name: r, type: chat, routes: [{backend: up}], retries: 2}
`))
	resp, body := postChat(t, g, `{"model":"r","messages":[{"role":"user","content":"hi"}]}`)
	if n := hits.Load(); n != 1 || resp.StatusCode != 502 || !strings.Contains(body, "upstream_bad_response") {
		t.Fatalf("an 80 MiB answer: upstream asked %d times, client got %d %s; want 1 request and 502 upstream_bad_response", n, resp.StatusCode, body)
	}
}

// An upstream answer that is neither a success nor an error (a redirect, a 304 to a
// POST) is not the API's answer: 502 upstream_bad_response, and the client is not
// sent around the gateway (no Location).
func TestUpstreamRedirectIs502(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, resp string }{
		{"307", "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://elsewhere.example/v1/chat/completions\r\nContent-Length: 0\r\n\r\n"},
		{"301 with body", "HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/v1/\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<a>moved</a>\n"},
		{"304", "HTTP/1.1 304 Not Modified\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, tc.resp)
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, chatBody)
			if resp.StatusCode != 502 || !strings.Contains(body, "upstream_bad_response") || resp.Header.Get("Location") != "" {
				t.Fatalf("upstream answered %q; client got %d (Location %q) %q; want 502 upstream_bad_response",
					strings.SplitN(tc.resp, "\r\n", 2)[0], resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
}

// A request whose retry answered logs no error: the 503 of the attempt before it is
// not the request's (its line says 200 with two attempts).
func TestRetriedSuccessLogsNoError(t *testing.T) {
	_, addr := startFlakyUpstream(t, 1)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "routes: [{backend: up}]", "routes: [{backend: up}], retries: 1", 1))
	resp, body := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": "retried-ok"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	line := afAccess(t, g, "retried-ok")
	if line["status"] != float64(200) || line["attempts"] != float64(2) || line["error"] != "" {
		t.Errorf("access log status %v, attempts %v, error %q; want 200, 2 and no error", line["status"], line["attempts"], line["error"])
	}
}

// silentStreamUpstream answers every request with a stream's header and one chunk, then
// stays silent until the gateway closes the connection (closed is set then) or release
// is called.
func silentStreamUpstream(t *testing.T) (addr string, closed *atomic.Bool, release func()) {
	t.Helper()
	closed = new(atomic.Bool)
	released := make(chan struct{})
	addr, _ = scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, sseChunk("Hel"))
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, c)
			closed.Store(true)
			close(done)
		}()
		select {
		case <-done:
		case <-released:
			c.Close()
		}
	})
	var once sync.Once
	return addr, closed, func() { once.Do(func() { close(released) }) }
}
