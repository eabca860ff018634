package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// hdrSecret marks the Set-Cookie value of the big headers below: a cookie is a
// credential, and no log line, span or answer may quote it.
const hdrSecret = "STICKYSECRET"

// sizedAnswer is a 200 answer of ct carrying body, whose header (status line to the
// blank line that ends it, included) is exactly size bytes: a load balancer's
// stickiness cookie fills it.
func sizedAnswer(t *testing.T, size int, ct, body string) string {
	t.Helper()
	return sizedHead(t, size, "Content-Type: "+ct+"\r\nContent-Length: "+strconv.Itoa(len(body))) + body
}

// sizedHead is a 200 answer's header of exactly size bytes holding fields (lines
// without their last CRLF) and a Set-Cookie that fills it.
func sizedHead(t *testing.T, size int, fields string) string {
	t.Helper()
	head := "HTTP/1.1 200 OK\r\n" + fields + "\r\nSet-Cookie: lb=" + hdrSecret
	pad := size - len(head) - len("\r\n\r\n")
	if pad < 0 {
		t.Fatalf("a header of %d bytes cannot hold its fields", size)
	}
	return head + strings.Repeat("x", pad) + "\r\n\r\n"
}

// hdrRoute is one call whose answer the upstream gives a sized header: the gateway
// path and body the client sends, the backend's provider keys, and what the upstream
// answers (content type and body) and the client must find in its 200.
type hdrRoute struct {
	name, path, call, backend, ct, answer, want string
}

var hdrRoutes = []hdrRoute{
	{
		name: "chat", path: "/v1/chat/completions", call: chatBody,
		backend: "provider: openai, model: up-model", ct: "application/json", answer: labelledAnswer, want: `"content":"hi"`,
	},
	{
		name: "chat stream", path: "/v1/chat/completions", call: streamBody,
		backend: "provider: openai, model: up-model", ct: "text/event-stream", answer: sseChunk("hel") + sseChunk("lo") + "data: [DONE]\n\n", want: `"content":"lo"`,
	},
	{
		name: "anthropic", path: "/v1/chat/completions", call: chatBody,
		backend: "provider: anthropic, model: claude-x, api_key: sk-ant-test", ct: "application/json",
		answer: `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi there"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`,
		want:   `"content":"hi there"`,
	},
	{
		name: "responses", path: "/v1/responses", call: `{"model":"chat","input":"Say hello"}`,
		backend: "provider: openai, model: up-model", ct: "application/json", answer: respObject("completed", respUsage), want: `Hello there`,
	},
}

// startSizedUpstream answers every request with rt's answer under a header of size
// bytes; calls counts the requests it read.
func startSizedUpstream(t *testing.T, rt hdrRoute, size int, calls *atomic.Int64) string {
	answer := sizedAnswer(t, size, rt.ct, rt.answer)
	u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
		for u.read(n, br) {
			calls.Add(1)
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	return u.addr
}

// hdrConfig is a gateway whose endpoint chat goes to backend up at addr (with more
// backend keys), retried twice and falling back to backend spare.
func hdrConfig(rt hdrRoute, addr, keys string) string {
	if keys != "" {
		keys = ", " + keys
	}
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  up: {` + rt.backend + `, base_url: "http://` + addr + `/v1", timeout: 4s` + keys + `}
  spare: {provider: mock, model: spare-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: warn, access_log: false}
`
}

func postPath(t *testing.T, g *gw, path, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(g.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// An upstream answer's header is read into a buffer of the backend's
// max_response_header_bytes (4KiB by default, held by every open connection): one up
// to that size is read, one over it is the upstream's invalid answer, 502
// upstream_bad_response, not retried nor sent to a fallback as any invalid answer,
// whose log line names the key and its value, for the operator to raise it, and
// never the header's bytes. Plain and streamed chat, a translated Anthropic answer and
// the Responses API read their answers through the same client.
func TestUpstreamAnswerHeaderSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, keys string
		size       int
		ok         bool
		bound      int
	}{
		{"6000 bytes over the default", "", 6000, false, 4096},
		{"6000 bytes under max_response_header_bytes 8KiB", "max_response_header_bytes: 8KiB", 6000, true, 8192},
		{"exactly the default", "", 4096, true, 4096},
		{"one byte over the default", "", 4097, false, 4096},
		{"exactly max_response_header_bytes 8KiB", "max_response_header_bytes: 8KiB", 8192, true, 8192},
		{"one byte over max_response_header_bytes 8KiB", "max_response_header_bytes: 8KiB", 8193, false, 8192},
	}
	for _, rt := range hdrRoutes {
		for _, tc := range cases {
			t.Run(rt.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var calls atomic.Int64
				g := startGateway(t, hdrConfig(rt, startSizedUpstream(t, rt, tc.size, &calls), tc.keys))
				resp, body := postPath(t, g, rt.path, rt.call)
				if tc.ok {
					if resp.StatusCode != 200 || !strings.Contains(body, rt.want) {
						t.Fatalf("%d %q, want 200 with the upstream's answer (%s)", resp.StatusCode, body, rt.want)
					}
					return
				}
				if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
					t.Fatalf("%d %q, want 502 upstream_bad_response", resp.StatusCode, body)
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("the upstream got %d calls, want 1: an invalid answer is not retried", n)
				}
				if b := resp.Header.Get("x-tollgate-backend"); b != "up" {
					t.Errorf("x-tollgate-backend %q, want up: an invalid answer is not sent to a fallback", b)
				}
				if v := resp.Header.Get("x-should-retry"); v != "false" {
					t.Errorf("x-should-retry %q, want false: a retry gets the same header", v)
				}
				logs := g.logs.String()
				line := logLinesWith(logs, "upstream failed")
				want := "upstream answer header over the backend's max_response_header_bytes (" + strconv.Itoa(tc.bound) + " bytes)"
				if !strings.Contains(line, want) || !strings.Contains(line, `"backend":"up"`) {
					t.Errorf("log line %q, want one naming backend up and %q", line, want)
				}
				if strings.Contains(logs, hdrSecret) || strings.Contains(body, hdrSecret) {
					t.Errorf("the header's cookie reached the log or the answer:\n%s\n%s", logs, body)
				}
				if strings.Contains(logs, "readbuffersize") {
					t.Errorf("the log names fasthttp's ReadBufferSize, which no config key sets:\n%s", logs)
				}
			})
		}
	}
}

// The upstream call's span of an answer whose header is over max_response_header_bytes
// names the key in its exception, without the header's bytes.
func TestUpstreamAnswerHeaderSizeSpan(t *testing.T) {
	var calls atomic.Int64
	addr := startSizedUpstream(t, hdrRoutes[0], 6000, &calls)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx([]byte(`{"model":"once","messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 502 {
		t.Fatalf("%d %s, want 502", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	client := byName(exp.GetSpans())["chat up-model"]
	if len(client) != 1 {
		t.Fatalf("spans: %s", contractSpanSummary(exp.GetSpans()))
	}
	var msg string
	for _, e := range client[0].Events {
		for _, a := range e.Attributes {
			if a.Key == attribute.Key("exception.message") {
				msg = a.Value.AsString()
			}
		}
	}
	if !strings.Contains(msg, "max_response_header_bytes (4096 bytes)") || strings.Contains(msg, hdrSecret) {
		t.Errorf("upstream span exception %q, want one naming max_response_header_bytes (4096 bytes) without the header", msg)
	}
}

// max_response_header_bytes is validated as the backend's other size keys are, the
// problem named by file, line and key.
func TestMaxResponseHeaderBytesConfigProblems(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"512", "t.yaml:6: backends.up.max_response_header_bytes: must be at least 1KiB: a status line and the fields an API answers with take most of that"},
		{"2MiB", "t.yaml:6: backends.up.max_response_header_bytes: must be at most 1MiB: every open upstream connection holds a buffer this size"},
		{"-1", "t.yaml:6: backends.up.max_response_header_bytes: cannot use `-1` as a size (use e.g. 8MiB, 512KB, 1048576)"},
		{"lots", "t.yaml:6: backends.up.max_response_header_bytes: cannot use `lots` as a size (use e.g. 8MiB, 512KB, 1048576)"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			y := "backends:\n  up:\n    provider: openai\n    base_url: http://127.0.0.1:8000/v1\n    model: m\n" +
				"    max_response_header_bytes: " + tc.value + "\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			_, problems := parseProblems(t, y, nil)
			if len(problems) != 1 || problems[0] != tc.want {
				t.Errorf("problems %q, want [%q]", problems, tc.want)
			}
		})
	}
	y := "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:8000/v1\", model: m, max_response_header_bytes: 16KiB}\n" +
		"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	cfg, problems := parseProblems(t, y, nil)
	if len(problems) > 0 || cfg.Backends["up"].MaxResponseHeaderBytes != 16<<10 {
		t.Fatalf("16KiB: problems %q, config %+v", problems, cfg)
	}
}

// A reload that raises max_response_header_bytes builds the backend anew, its clients
// with the larger buffer: the answer refused before it is read after it.
func TestMaxResponseHeaderBytesReload(t *testing.T) {
	t.Parallel()
	rt := hdrRoutes[0]
	var calls atomic.Int64
	addr := startSizedUpstream(t, rt, 6000, &calls)
	g := startGateway(t, hdrConfig(rt, addr, ""))
	if resp, body := postPath(t, g, rt.path, rt.call); resp.StatusCode != 502 {
		t.Fatalf("before the reload: %d %q, want 502", resp.StatusCode, body)
	}
	if err := os.WriteFile(g.path, []byte(hdrConfig(rt, addr, "max_response_header_bytes: 8KiB")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if resp, body := postPath(t, g, rt.path, rt.call); resp.StatusCode != 200 || !strings.Contains(body, rt.want) {
		t.Fatalf("after the reload to 8KiB: %d %q, want 200", resp.StatusCode, body)
	}
}

// Active health checks read their answers with the requests' bound: a load balancer
// that sets its cookie on every answer, the checks' included, takes the target out
// of service under the default (the warning names the cause, header_too_large),
// and keeps it in service once max_response_header_bytes is raised.
func TestMaxResponseHeaderBytesHealthChecks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, keys string
		out        bool
	}{
		{"default", "", true},
		{"raised", "max_response_header_bytes: 8KiB", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := hdrRoutes[0]
			answer := sizedAnswer(t, 6000, rt.ct, rt.answer)
			var checks atomic.Int64
			u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if req.URL.Path == "/health" {
						checks.Add(1)
					}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			})
			keys := "health: {path: /health, interval: 50ms, unhealthy_threshold: 1}"
			if tc.keys != "" {
				keys += ", " + tc.keys
			}
			g := startGateway(t, hdrConfig(rt, u.addr, keys))
			if !waitWithin(5*time.Second, func() bool { return checks.Load() >= 3 }) {
				t.Fatalf("%d health checks in 5s", checks.Load())
			}
			line := logLinesWith(g.logs.String(), "upstream target out of service")
			if !tc.out {
				if line != "" {
					t.Fatalf("target taken out of service: %s", line)
				}
				if resp, body := postPath(t, g, rt.path, rt.call); resp.StatusCode != 200 {
					t.Fatalf("%d %q, want 200", resp.StatusCode, body)
				}
				return
			}
			// The warning follows the check's verdict: under load it may come after
			// the upstream has seen later checks.
			want := func(line string) bool {
				return strings.Contains(line, `"reason":"health_check_failed"`) && strings.Contains(line, `"error":"header_too_large"`)
			}
			if !waitWithin(5*time.Second, func() bool {
				line = logLinesWith(g.logs.String(), "upstream target out of service")
				return want(line)
			}) {
				t.Fatalf("out of service line %q, want health_check_failed with error header_too_large", line)
			}
			if strings.Contains(g.logs.String(), hdrSecret) {
				t.Errorf("the header's cookie reached the log:\n%s", g.logs.String())
			}
		})
	}
}

// A chunked body's trailer is a header too, read into the same buffer: one over
// max_response_header_bytes is refused as a header is, and named as a trailer.
func TestMaxResponseHeaderBytesTrailer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, keys string
		ok         bool
	}{
		{"default", "", false},
		{"raised", "max_response_header_bytes: 8KiB", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := hdrRoutes[0]
			body := labelledAnswer
			answer := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
				strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\nX-Lb: " + hdrSecret + strings.Repeat("x", 5000) + "\r\n\r\n"
			var calls atomic.Int64
			u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
				for u.read(n, br) {
					calls.Add(1)
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			})
			g := startGateway(t, hdrConfig(rt, u.addr, tc.keys))
			resp, got := postPath(t, g, rt.path, rt.call)
			if tc.ok {
				if resp.StatusCode != 200 || !strings.Contains(got, rt.want) {
					t.Fatalf("%d %q, want 200", resp.StatusCode, got)
				}
				return
			}
			if resp.StatusCode != 502 || !strings.Contains(got, `"code":"upstream_bad_response"`) || calls.Load() != 1 {
				t.Fatalf("%d %q after %d calls, want 502 upstream_bad_response after 1", resp.StatusCode, got, calls.Load())
			}
			line := logLinesWith(g.logs.String(), "upstream failed")
			if !strings.Contains(line, "upstream answer trailer over the backend's max_response_header_bytes (4096 bytes)") {
				t.Errorf("log line %q, want one naming the trailer and max_response_header_bytes (4096 bytes)", line)
			}
			if strings.Contains(g.logs.String(), hdrSecret) {
				t.Errorf("the trailer reached the log:\n%s", g.logs.String())
			}
		})
	}
}

// A larger read buffer does not hold a stream's bytes back: with
// max_response_header_bytes at 64KiB, each event reaches the client before the
// upstream sends the next.
func TestMaxResponseHeaderBytesStreamEventByEvent(t *testing.T) {
	t.Parallel()
	rt := hdrRoutes[1]
	got := make(chan struct{})
	u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
		if !u.read(n, br) {
			return
		}
		chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
		_, _ = io.WriteString(c, sizedHead(t, 6000, "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked")+chunk(sseChunk("first")))
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			return // the test fails on the client's side
		}
		_, _ = io.WriteString(c, chunk(sseChunk("second")+"data: [DONE]\n\n")+"0\r\n\r\n")
	})
	g := startGateway(t, hdrConfig(rt, u.addr, "max_response_header_bytes: 64KiB"))
	resp, err := http.Post(g.url+rt.path, "application/json", strings.NewReader(rt.call))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	events := make(chan string, 8)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events <- sc.Text()
			}
		}
	}()
	want := []string{`"content":"first"`, `"content":"second"`, "[DONE]"}
	for i, w := range want {
		select {
		case e, ok := <-events:
			if !ok || !strings.Contains(e, w) {
				t.Fatalf("event %d: %q (open %v), want one holding %s", i, e, ok, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%s) not passed on within 5s: held in a buffer", i, w)
		}
		if i == 0 {
			close(got)
		}
	}
}

// A header over max_response_header_bytes is the gateway's own bound, as an answer
// over max_response_bytes is: it does not count against the target, which every
// target behind the same load balancer would fail alike.
func TestMaxResponseHeaderBytesNoEjection(t *testing.T) {
	t.Parallel()
	rt := hdrRoutes[0]
	var calls atomic.Int64
	g := startGateway(t, hdrConfig(rt, startSizedUpstream(t, rt, 6000, &calls), "health: {eject_after: 1, eject_for: 1m}"))
	for i := range 3 {
		resp, body := postPath(t, g, rt.path, rt.call)
		if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
			t.Fatalf("request %d: %d %q, want 502 upstream_bad_response from the target, still in service", i, resp.StatusCode, body)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the upstream got %d calls for 3 requests, want 3", n)
	}
	if line := logLinesWith(g.logs.String(), "out of service"); line != "" {
		t.Errorf("target taken out of service: %s", line)
	}
}
