package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func postChatBody(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// jsonLogLines parses every log line as JSON.
func jsonLogLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// SRE: a backend is a pool of vLLM replicas (`targets:`) and one of them answers
// garbage (a misconfigured sidecar's HTML page, a broken build). Its requests fail
// 502 upstream_bad_response and each logs a warning, but the warning names only the
// backend: the line that is the operator's one place to read *why* an attempt failed
// does not say which replica failed, although the gateway knows it (it labels
// tollgate_upstream_attempts_total{target} and the attempt span's server.address with
// it). With eight replicas, the operator cannot tell from the logs which one to pull.
// htmlAnswer answers as a proxy in front of a model server that is down: an HTML
// error page, which is no answer of the API.
func htmlAnswer(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/html")
	ctx.WriteString("<html><body>502 Bad Gateway</body></html>")
}

// cutStream begins a stream, then sends what is no event: the client has its 200, the
// failure is logged as "upstream stream failed".
func cutStream(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/event-stream")
	ctx.WriteString("data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {garbage\n\n")
}

func TestUpstreamFailureWarningNamesTarget(t *testing.T) {
	t.Parallel()
	good := startStaticUpstream(t)
	for _, c := range []struct {
		name, body, msg string
		bad             fasthttp.RequestHandler
	}{
		{"answer", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "upstream failed", htmlAnswer},
		{"stream", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "upstream failed", htmlAnswer},
		{"stream_cut", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "upstream stream failed", cutStream},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := serveUpstream(t, c.bad)
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+good+`/v1", "http://`+bad+`/v1"], model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
`)
			for i := 0; i < 8; i++ {
				postChatBody(t, g.url, c.body)
			}
			// Every warning names the target its last attempt failed on (the static
			// upstream fails streams too: it answers them with JSON), and the bad
			// target's failures are among them.
			onBad := 0
			for _, l := range jsonLogLines(t, g.logs.String()) {
				if l["msg"] != c.msg {
					continue
				}
				line, _ := json.Marshal(l)
				target, _ := l["target"].(string)
				switch {
				case strings.Contains(target, bad):
					onBad++
				case strings.Contains(target, good):
				default:
					t.Fatalf("observed %s; expected the warning to name the target its attempt failed on (as tollgate_upstream_attempts_total{target} does)", line)
				}
			}
			if onBad == 0 {
				t.Fatalf("no %q warning names the bad target %s:\n%s", c.msg, bad, g.logs.String())
			}
		})
	}
}

// Operator: clients send malformed requests and the operator sets logging.level: debug
// to see what the HTTP server says about them. Every such connection logs a debug line
// whose detail is fasthttp's printf template itself, "error when serving connection
// %q<->%q: %v": the addresses and the error are thrown away (fasthttpLogger.Printf logs
// format and drops args), so the line tells nothing and reads as a bug.
func TestDebugHTTPServerLineFormattedWithoutRequestBytes(t *testing.T) {
	up := startStaticUpstream(t)
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: debug}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := New(path, Options{Logger: slog.New(NewJSONLogHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-debug-secret-1234\r\nBad Header Line\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	c.Close()
	var debug []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(debug) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		debug = debug[:0]
		for _, l := range jsonLogLines(t, logs.String()) {
			if l["level"] == "DEBUG" {
				debug = append(debug, l)
			}
		}
	}
	if len(debug) == 0 {
		t.Fatalf("no debug line for the malformed request:\n%s", logs.String())
	}
	for _, l := range debug {
		b, _ := json.Marshal(l)
		if strings.Contains(string(b), "sk-debug-secret") {
			t.Fatalf("the debug line quotes the request's Authorization header: %s", b)
		}
		if l["remote"] == nil || l["error"] == nil {
			t.Fatalf("the debug line has no remote address or error: %s", b)
		}
		if strings.Contains(string(b), "%q") || strings.Contains(string(b), "%v") {
			t.Fatalf("logging.level debug, a malformed request: observed %s; expected the line's detail formatted (the connection's addresses and the error, or at least no printf verbs)", b)
		}
	}
}

// An operator signs a backend's requests with a query on base_url
// (`…/v1?sig=…`, README: "It may carry a credential (a signed token): only the
// target's host is shown in metrics, spans and logs"). When the upstream fails, the
// `upstream failed` / `upstream stream failed` warning's `target` is the whole URL,
// query and token included, where README says it is the target "as
// tollgate_upstream_attempts_total names it" (host:port).
func TestUpstreamFailureWarningHidesBaseURLQuery(t *testing.T) {
	t.Parallel()
	const secret = "S1gnedT0kenXyz987"
	for _, c := range []struct {
		name, body, msg string
		up              fasthttp.RequestHandler
	}{
		{"answer", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "upstream failed", htmlAnswer},
		{"stream", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "upstream stream failed", cutStream},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			up := serveUpstream(t, c.up)
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  signed: {provider: openai, base_url: "http://`+up+`/v1?sig=`+secret+`", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: signed}]}
`)
			postChatBody(t, g.url, c.body)
			var line map[string]any
			waitFor(t, func() bool {
				for _, l := range jsonLogLines(t, g.logs.String()) {
					if l["msg"] == c.msg {
						line = l
						return true
					}
				}
				return false
			})
			raw, _ := json.Marshal(line)
			if strings.Contains(string(raw), secret) {
				t.Errorf("observed the %q warning quoting base_url's signed query (%s); expected only the target's host, as README promises for logs", c.msg, raw)
			}
			if line["target"] != up {
				t.Errorf("observed %q warning target %v; expected %q, the target as tollgate_upstream_attempts_total names it", c.msg, line["target"], up)
			}
		})
	}
}
