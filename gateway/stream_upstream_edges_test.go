package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trailerChunk frames s as one HTTP/1.1 chunk.
func trailerChunk(s string) string {
	return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n"
}

// A streamed answer whose chunked body ends in a malformed trailer that echoes the
// request's Authorization header (a debugging echo, as TestSecretsFasthttpParseErrorQuotesKey
// has it for the status line): the "upstream stream failed" log line does not quote
// it. The trailer is parsed into upstreamBody's carrier response, whose header lacks
// the clients' SecureErrorLogMessage; the body's errors leave the contents out.
func TestStreamTrailerParseErrorHidesTrailer(t *testing.T) {
	const key = "sk-review-trailer-5a7c1e9d"
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		_, _ = io.WriteString(c, trailerChunk(sseChunk("hello")))
		// The body ends without [DONE]; its trailer sends the key back.
		_, _ = io.WriteString(c, "0\r\nAuthorization: "+req.Header.Get("Authorization")+"\r\n\r\n")
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: m, api_key: `+key+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	status, body := secretsPost(t, g.url, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if strings.Contains(body, key) {
		t.Errorf("answer (%d) carries the provider key:\n%s", status, body)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(g.logs.String(), "upstream stream failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l := g.logs.String()
	if !strings.Contains(l, "upstream stream failed") {
		t.Fatalf("no stream failure logged:\n%s", l)
	}
	if strings.Contains(l, key) {
		t.Errorf("log carries the provider key:\n%s", l)
	}
}

// An upstream answering a streamed request 204 with the event stream's content type
// (a proxy, a misrouted path) has sent no stream: the client gets 502
// upstream_bad_response, as for a 304 or a 3xx, where the stream reader was set up on
// no body and panicked (OpenAI: in the relay, the access log blaming the client;
// Anthropic: in the request handler, which ended the process).
func TestStreamNoContentAnswerIsBadResponse(t *testing.T) {
	t.Parallel()
	for _, prov := range []string{"openai", "anthropic"} {
		t.Run(prov, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
				_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Type: text/event-stream\r\n\r\n")
			})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: `+prov+`, base_url: "http://`+addr+`/v1", model: m, api_key: k}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
			req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("no answer: %v\nlogs:\n%s", err, g.logs.String())
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "upstream_bad_response") {
				t.Fatalf("answer %d %s, want 502 upstream_bad_response", resp.StatusCode, b)
			}
		})
	}
}

// A streamed request's answer header is read under the client watch's 200 ms ticks
// (upstreamConn.read), each of which sets a read deadline 200 ms ahead. Once the
// header has come, the deadline in force is put back (upstreamConn.unwatch): with
// neither first_byte_timeout nor stream_idle_timeout set (the defaults), the last
// tick's deadline stayed on a plaintext connection, and what was read of the body
// before the relay's own silence hook (an Anthropic stream's first event, read in
// Send; a streamed request's error answer) timed out after ~200 ms as a 504. The
// backend's timeout is a minute: each answer must come through.
func TestStreamHeaderWatchRestoresDeadline(t *testing.T) {
	t.Parallel()
	// upstream answers status after hold, and the body after gap.
	upstream := func(tls bool, hold, gap time.Duration, status int, body ...string) *httptest.Server {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(hold)
			if status == 200 {
				w.Header().Set("Content-Type", "text/event-stream")
			} else {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(status)
			w.(http.Flusher).Flush()
			time.Sleep(gap)
			for _, b := range body {
				_, _ = io.WriteString(w, b)
			}
		})
		var up *httptest.Server
		if tls {
			up = httptest.NewTLSServer(h)
		} else {
			up = httptest.NewServer(h)
		}
		t.Cleanup(up.Close)
		return up
	}
	anthropicStream := []string{anthStart, anthTextStart(0), anthText(0, "Hello"),
		sseEvent("content_block_stop", `{"type":"content_block_stop","index":0}`),
		sseEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}`),
		anthStop}
	const chatStream = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	serve := func(t *testing.T, prov string, up *httptest.Server) *gw {
		extra := ""
		if strings.HasPrefix(up.URL, "https") {
			extra = ", tls: {insecure_skip_verify: true}"
		}
		return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: `+prov+`, base_url: "`+up.URL+`/v1", model: m, api_key: k, timeout: 60s`+extra+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	}
	for _, tc := range []struct {
		name      string
		tls       bool
		hold, gap time.Duration
	}{
		// The header at once, the first event after the prompt's prefill.
		{"anthropic header at once", false, 0, 500 * time.Millisecond},
		// The header held (a loading model), the first event later still.
		{"anthropic header held", false, 250 * time.Millisecond, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := serve(t, "anthropic", upstream(tc.tls, tc.hold, tc.gap, 200, anthropicStream...))
			status, body := secretsPost(t, g.url, chatStream)
			if status != 200 || !strings.Contains(body, "Hello") || !strings.Contains(body, "[DONE]") {
				t.Fatalf("answer %d, want the stream:\n%s\nlogs:\n%s", status, body, g.logs.String())
			}
		})
	}
	t.Run("openai error answer, header held", func(t *testing.T) {
		g := serve(t, "openai", upstream(false, 250*time.Millisecond, 500*time.Millisecond, 429,
			`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`))
		status, body := secretsPost(t, g.url, chatStream)
		if status != 429 || !strings.Contains(body, "Rate limit reached") {
			t.Fatalf("answer %d, want the upstream's 429:\n%s\nlogs:\n%s", status, body, g.logs.String())
		}
	})
}

// An Anthropic stream is primed in Send (its first event read before the stream is
// handed on), after the call's watch of the header wait and before the relay's: the
// client is watched meanwhile, so one that hangs up after the header and before the
// first event (an upstream that sends the header at once, then prefills a long
// prompt) aborts the upstream request at once, not when that event comes.
func TestAnthropicStreamPrimeIsWatched(t *testing.T) {
	t.Parallel()
	abandoned := make(chan time.Time, 1)
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		closed := make(chan struct{})
		go func() { _, _ = c.Read(make([]byte, 1)); close(closed) }()
		select {
		case <-closed:
			abandoned <- time.Now()
		case <-time.After(3 * time.Second):
			_, _ = io.WriteString(c, trailerChunk(anthStart)+trailerChunk(anthTextStart(0))+trailerChunk(anthText(0, "late")))
			<-closed
			abandoned <- time.Now()
		}
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-x, api_key: k, timeout: 60s, stream_idle_timeout: 30s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
`)
	gone := dialRaw(t, g, nil)
	gone.send(t, g, "gone", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	time.Sleep(500 * time.Millisecond) // the header came; the model prefills
	hungUp := time.Now()
	_ = gone.conn.Close()
	select {
	case at := <-abandoned:
		if took := at.Sub(hungUp); took > 2*time.Second {
			t.Errorf("the upstream request was aborted %v after its client hung up", took)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the upstream connection stayed open under the stream whose client hung up")
	}
	line := accessLine(t, g, "gone")
	if line["status"] != 499.0 || line["error"] != "client_gone" {
		t.Errorf("access log: status %v error %v, want 499 client_gone\n%s", line["status"], line["error"], g.logs.String())
	}
}
