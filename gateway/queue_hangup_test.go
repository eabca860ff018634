package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// heldUpstream answers chat requests one at a time as the test lets them: each
// request's X-Test-Client comes on arrived when it arrives, and its answer goes out
// when a value comes on release (or release is closed, at the test's end). A request
// with X-Test-Upstream: 429 gets a 429 with Retry-After: 4 at once.
type heldUpstream struct {
	addr    string
	arrived chan string
	release chan struct{}
	count   *atomic.Int64
}

func startHeldUpstream(t *testing.T) *heldUpstream {
	u := &heldUpstream{arrived: make(chan string, 16), release: make(chan struct{})}
	u.addr, u.count = scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		if req.Header.Get("X-Test-Upstream") == "429" {
			b := `{"error":{"message":"slow down","type":"rate_limit_exceeded","code":null}}`
			_, _ = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 4\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(b))+"\r\n\r\n"+b)
			return
		}
		u.arrived <- req.Header.Get("X-Test-Client")
		select {
		case <-u.release:
		case <-time.After(30 * time.Second):
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
	})
	return u
}

// next is the client of the next request the upstream receives.
func (u *heldUpstream) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-u.arrived:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the upstream")
		return ""
	}
}

// rawClient is one client connection speaking HTTP/1.1 by hand, so that hanging up
// is explicit.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw connects to g, over TLS when roots is set.
func dialRaw(t *testing.T, g *gw, roots *x509.CertPool) *rawClient {
	t.Helper()
	var c net.Conn
	var err error
	if roots != nil {
		c, err = tls.Dial("tcp", g.Addr(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	} else {
		c, err = net.Dial("tcp", g.Addr())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{conn: c, br: bufio.NewReader(c)}
}

// send writes a request with the client's name as its request ID and X-Test-Client.
func (c *rawClient) send(t *testing.T, g *gw, name, body string, header ...string) {
	t.Helper()
	header = append(header, "X-Request-Id: "+name, "X-Test-Client: "+name)
	if _, err := io.WriteString(c.conn, rawRequest(t, g, body, header...)); err != nil {
		t.Fatal(err)
	}
}

func (c *rawClient) status(t *testing.T) (int, http.Header) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// accessLine waits for the access log line of request id.
func accessLine(t *testing.T, g *gw, id string) map[string]any {
	t.Helper()
	var line map[string]any
	ok := pollFor(10*time.Second, func() bool {
		for _, l := range strings.Split(g.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["request_id"] == id {
				line = m
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no access log line for request %s", id)
	}
	return line
}

// waitInFlight polls until the chat endpoint has n requests in flight.
func waitInFlight(t *testing.T, g *gw, n float64, what string) {
	t.Helper()
	var got float64
	if !pollFor(10*time.Second, func() bool { got = loadfGather(t, g, "chat").inFlight; return got == n }) {
		t.Fatalf("%s: %v requests in flight, want %v", what, got, n)
	}
}

// hangupConfig is chat on a backend that serves one request at a time and queues the
// rest for up to 10 s; extra goes on in the chat endpoint, or at the top level.
func hangupConfig(upstream, server, extra string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s` + server + `}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, max_concurrency: 1,
       queue: {size: 4, timeout: 10s}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    retries: 1
` + extra + "\n"
}

// traced has every request's spans kept (startTracedGateway collects them).
const traced = "tracing: {exporter: otlp-grpc, sample_ratio: 1}"

// A request waiting in a backend's queue whose client hangs up leaves the queue at
// once: it never reaches the upstream, ends as client_gone (499) in the access log,
// tollgate_requests_total and its spans, gets no answer, and the request queued
// behind it takes the freed slot in its turn. A client that stays connected is served
// as before. Hanging up is closing the connection, shutting down its sending side
// (as nginx counts it), or closing a TLS connection; a queued stream leaves the same.
func TestQueuedRequestLeavesWhenItsClientHangsUp(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for from, to := range map[string]string{pki.serverCert: certFile, pki.serverKey: keyFile} {
		if err := os.WriteFile(to, mustRead(t, from), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		tls    bool
		body   string
		hangUp func(c net.Conn) error
	}{
		{"close", false, chatBody, net.Conn.Close},
		{"half-close", false, chatBody, func(c net.Conn) error { return c.(*net.TCPConn).CloseWrite() }},
		{"reset", false, chatBody, func(c net.Conn) error { _ = c.(*net.TCPConn).SetLinger(0); return c.Close() }},
		{"TLS close", true, chatBody, net.Conn.Close},
		{"queued stream", false, streamBody, net.Conn.Close},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startHeldUpstream(t)
			server := ""
			var roots *x509.CertPool
			if tc.tls {
				server = `, tls: {cert_file: "` + certFile + `", key_file: "` + keyFile + `"}`
				roots = pki.pool
			}
			g, exp := startTracedGateway(t, hangupConfig(u.addr, server, traced))
			t.Cleanup(func() { close(u.release) }) // before the gateway stops

			holder := dialRaw(t, g, roots)
			holder.send(t, g, "holder", chatBody)
			if c := u.next(t); c != "holder" {
				t.Fatalf("upstream got %q first, want the holder", c)
			}
			gone := dialRaw(t, g, roots)
			gone.send(t, g, "gone", tc.body)
			waitInFlight(t, g, 2, "the second request queues")
			stays := dialRaw(t, g, roots)
			stays.send(t, g, "stays", chatBody)
			waitInFlight(t, g, 3, "the third request queues")

			hungUp := time.Now()
			if err := tc.hangUp(gone.conn); err != nil {
				t.Fatal(err)
			}
			line := accessLine(t, g, "gone")
			if took := time.Since(hungUp); took > 2*time.Second {
				t.Errorf("the request left the queue %v after its client hung up", took)
			}
			if line["status"] != 499.0 || line["error"] != "client_gone" || line["backend"] != "up" {
				t.Errorf("access log %v, want status 499, error client_gone, backend up", line)
			}
			waitInFlight(t, g, 2, "after the hang-up")
			if tc.name == "half-close" {
				// The client can still read: the gateway closed without an answer.
				b, err := io.ReadAll(gone.br)
				if err != nil || len(b) != 0 {
					t.Errorf("the client that hung up read %q, %v; want nothing and the end", b, err)
				}
			}

			// The slot freed next goes to the request still queued.
			u.release <- struct{}{}
			if code, _ := holder.status(t); code != 200 {
				t.Fatalf("holder: status %d", code)
			}
			if c := u.next(t); c != "stays" {
				t.Fatalf("upstream got %q next, want the request still queued", c)
			}
			u.release <- struct{}{}
			if code, _ := stays.status(t); code != 200 {
				t.Fatalf("the request still queued: status %d", code)
			}
			waitInFlight(t, g, 0, "at the end")
			if n := u.count.Load(); n != 2 {
				t.Errorf("upstream received %d requests, want 2: the one whose client hung up never went", n)
			}
			if n := requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "499"}); n != 1 {
				t.Errorf("tollgate_requests_total{code=499} = %v, want 1", n)
			}
			if n := requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "200"}); n != 2 {
				t.Errorf("tollgate_requests_total{code=200} = %v, want 2", n)
			}
			// Nothing went upstream: no attempt span, as none is counted.
			checkClientGoneSpans(t, g, exp, "gone", false)
			for _, spans := range requestSpans(t, g, exp, "gone") {
				for _, sp := range spans {
					if sp.SpanKind == trace.SpanKindClient {
						t.Errorf("an attempt span %q for the request that left the queue, which sent nothing upstream", sp.Name)
					}
				}
			}
		})
	}
}

// checkClientGoneSpans checks that the request's server span, and its upstream
// attempt's when attempt is set, say client_gone without being errors (keep_errors
// does not keep what a client did).
func checkClientGoneSpans(t *testing.T, g *gw, exp *tracetest.InMemoryExporter, id string, attempt bool) {
	t.Helper()
	var server, client []tracetest.SpanStub
	for _, spans := range requestSpans(t, g, exp, id) {
		for _, s := range spans {
			switch s.SpanKind {
			case trace.SpanKindServer:
				server = append(server, s)
			case trace.SpanKindClient:
				client = append(client, s)
			}
		}
	}
	if len(server) != 1 {
		t.Fatalf("%d server spans", len(server))
	}
	s := server[0].Snapshot()
	if v, _ := attr(s, "http.response.status_code"); v.AsInt64() != 499 {
		t.Errorf("server span status %v, want 499", v.Emit())
	}
	if v, _ := attr(s, "error.type"); v.AsString() != "client_gone" || s.Status().Code == codes.Error {
		t.Errorf("server span error.type %q, status %v; want client_gone, not an error", v.AsString(), s.Status().Code)
	}
	if !attempt {
		return
	}
	if len(client) == 0 {
		t.Fatal("no upstream attempt span")
	}
	last := client[len(client)-1].Snapshot()
	if v, _ := attr(last, "error.type"); v.AsString() != "client_gone" || last.Status().Code == codes.Error {
		t.Errorf("attempt span error.type %q, status %v; want client_gone, not an error", v.AsString(), last.Status().Code)
	}
}

// While the gateway waits out an upstream's Retry-After before retrying, a client
// that hangs up ends the wait at once: no retry goes upstream, and the request ends as
// client_gone (499).
func TestRetryAfterWaitEndsWhenTheClientHangsUp(t *testing.T) {
	u := startHeldUpstream(t)
	g, exp := startTracedGateway(t, hangupConfig(u.addr, "", traced))
	t.Cleanup(func() { close(u.release) })
	c := dialRaw(t, g, nil)
	c.send(t, g, "waits", chatBody, "X-Test-Upstream: 429")
	if !pollFor(10*time.Second, func() bool { return u.count.Load() == 1 }) {
		t.Fatal("the first attempt never reached the upstream")
	}
	hungUp := time.Now()
	_ = c.conn.Close()
	line := accessLine(t, g, "waits")
	// The Retry-After is 4 s.
	if took := time.Since(hungUp); took > 2*time.Second {
		t.Errorf("the request ended %v after its client hung up", took)
	}
	if line["status"] != 499.0 || line["error"] != "client_gone" || line["attempts"] != 1.0 {
		t.Errorf("access log %v, want status 499, error client_gone, 1 attempt", line)
	}
	if n := u.count.Load(); n != 1 {
		t.Errorf("upstream received %d requests, want the first attempt alone", n)
	}
	if n := requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "499"}); n != 1 {
		t.Errorf("tollgate_requests_total{code=499} = %v, want 1", n)
	}
	checkClientGoneSpans(t, g, exp, "waits", false)
}

// A request whose client hung up while it was queued sent nothing upstream: its token
// estimate is given back to the limits, as for any request that generated nothing.
func TestQueuedRequestHungUpIsRefunded(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, hangupConfig(u.addr, "", "    limits: [{per: endpoint, tokens: 1000, window: hour}]"))
	t.Cleanup(func() { close(u.release) })
	holder := dialRaw(t, g, nil)
	holder.send(t, g, "holder", chatBody)
	if c := u.next(t); c != "holder" {
		t.Fatalf("upstream got %q first, want the holder", c)
	}
	gone := dialRaw(t, g, nil)
	gone.send(t, g, "gone", `{"model":"chat","max_tokens":800,"messages":[{"role":"user","content":"hi"}]}`)
	waitInFlight(t, g, 2, "the second request queues")
	_ = gone.conn.Close()
	if line := accessLine(t, g, "gone"); line["status"] != 499.0 {
		t.Fatalf("access log %v, want status 499", line)
	}
	u.release <- struct{}{}
	if code, _ := holder.status(t); code != 200 {
		t.Fatalf("holder: status %d", code)
	}
	// The holder used 5 tokens; the next request's estimate is about 30.
	after := dialRaw(t, g, nil)
	after.send(t, g, "after", chatBody)
	if c := u.next(t); c != "after" {
		t.Fatalf("upstream got %q, want the request sent after", c)
	}
	u.release <- struct{}{}
	code, h := after.status(t)
	if code != 200 {
		t.Fatalf("after: status %d", code)
	}
	rem, err := strconv.Atoi(h.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil || rem < 900 {
		t.Errorf("x-ratelimit-remaining-tokens %q after the hang-up, want about 965: the 800 estimated for the request that left the queue were not given back", h.Get("X-Ratelimit-Remaining-Tokens"))
	}
}
