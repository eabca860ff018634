package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/tracing"
)

// cutWaitsConfig has, on one upstream, an endpoint whose backend serves one request
// at a time and queues the next (chat), one for streams (stream) and one whose
// upstream asks for a Retry-After the gateway waits out (retry); chat's requests
// take token estimates and concurrency leases in Redis. Redis gets a timeout no loaded
// test machine reaches: a refund sent after the default 50ms timeout is dropped rather
// than risk counting it twice (README), which is not what its test checks.
func cutWaitsConfig(upstream, redis string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 1m, max_concurrency: 1,
       queue: {size: 4, timeout: 30s}}
  free: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 1m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 40000, window: hour}, {per: endpoint, concurrency: 5}]
  - {name: stream, type: chat, routes: [{backend: free}]}
  - {name: retry, type: chat, routes: [{backend: free}], retries: 1}
limiter: {store: redis, redis: {url: "` + redis + `"}, prefetch: 0s, concurrency_lease: 60s, timeout: 5s}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, access_log: true}
`
}

// README (Signals): a request still inside the handler when shutdown_grace runs out
// has had nothing of its answer yet. The shutdown ends its wait as a client's hang-up
// would (an answer awaited from an upstream, a stream's header an upstream holds, a
// place in a backend's queue, a Retry-After's pause), aborting its upstream request,
// and answers it 503 shutting_down with Connection: close, which the SDKs retry on
// another replica, within a bounded time. Each request has its access log line, its
// count in tollgate_requests_total, its spans ended (an error, its attempt's outcome
// shutdown), its token estimate refunded and its Redis lease given back: it did not
// die with the process.
// Not t.Parallel: it sets go-redis's logger and OpenTelemetry's error handler.
func TestShutdownGraceEndAnswersRequestsStillWaiting(t *testing.T) {
	rds := redistest.Start(t)
	aborted := make(chan string, 8)
	addr, count := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		if req.Header.Get("X-Test-Upstream") == "429" {
			b := `{"error":{"message":"slow down","type":"rate_limit_exceeded","code":null}}`
			_, _ = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 4\r\nContent-Type: application/json\r\nContent-Length: "+
				strconv.Itoa(len(b))+"\r\n\r\n"+b)
			return
		}
		if req.Header.Get("X-Test-Client") == "" {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
				strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
			return
		}
		// Generating, or holding a stream's header until the first token: the only
		// thing it hears is its connection closing.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = c.Read(make([]byte, 1))
		aborted <- req.Header.Get("X-Test-Client")
	})
	exp := &keepSpans{}
	g := serveWithOptions(t, cutWaitsConfig(addr, rds.URL()), Options{SpanExporter: exp})

	cases := []struct {
		id, body, header string
		attempts         float64
		upstream         bool // its upstream request is under way at the cut
	}{
		{"awaited", `{"model":"chat","max_tokens":8000,"messages":[{"role":"user","content":"hi"}]}`, "", 1, true},
		{"queued", `{"model":"chat","max_tokens":8000,"messages":[{"role":"user","content":"hi"}]}`, "", 0, false},
		{"header", `{"model":"stream","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "", 1, true},
		{"pause", `{"model":"retry","messages":[{"role":"user","content":"hi"}]}`, "X-Test-Upstream: 429", 1, false},
	}
	clients := map[string]*rawClient{}
	for _, tc := range cases {
		c := dialRaw(t, g, nil)
		var hdr []string
		if tc.header != "" {
			hdr = append(hdr, tc.header)
		}
		c.send(t, g, tc.id, tc.body, hdr...)
		clients[tc.id] = c
		if tc.id == "awaited" {
			// It holds the chat backend's one slot before the next one queues.
			if !pollFor(10*time.Second, func() bool { return count.Load() == 1 }) {
				t.Fatal("the first request never reached the upstream")
			}
		}
	}
	// awaited, header and the first attempt of pause went upstream; queued waits.
	if !pollFor(10*time.Second, func() bool { return count.Load() == 3 && loadfGather(t, g, "chat").inFlight == 2 }) {
		t.Fatalf("%d requests upstream, %v chat requests in flight; want 3 and 2", count.Load(), loadfGather(t, g, "chat").inFlight)
	}
	time.Sleep(300 * time.Millisecond) // the waits well under way
	if n := leasesHeld(rds.Addr()); n != 2 {
		t.Fatalf("%d concurrency leases in Redis while chat's two requests wait, want 2", n)
	}

	stopped := time.Now()
	g.stopWithin(t, 10*time.Second)
	// shutdown_grace (300ms), then the cut and its bounded wait (2s).
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("Serve returned %v after the stop with shutdown_grace 300ms", took)
	}
	if n := leasesHeld(rds.Addr()); n != 0 {
		t.Errorf("%d concurrency leases left in Redis after the shutdown, want 0", n)
	}
	for _, tc := range cases {
		c := clients[tc.id]
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Errorf("%s: no answer after the shutdown cut its wait: %v", tc.id, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"shutting_down"`) || !resp.Close {
			t.Errorf("%s: answered %d %s (connection close %v); want 503 shutting_down with Connection: close",
				tc.id, resp.StatusCode, body, resp.Close)
		}
		if resp.Header.Get("X-Request-Id") != tc.id {
			t.Errorf("%s: x-request-id %q", tc.id, resp.Header.Get("X-Request-Id"))
		}
		line := accessLine(t, g, tc.id)
		if line["status"] != 503.0 || line["error"] != "shutting_down" || line["attempts"] != tc.attempts {
			t.Errorf("%s: access log %v; want status 503, error shutting_down, %v attempts", tc.id, line, tc.attempts)
		}
	}
	gotAborted := map[string]bool{}
	for len(aborted) > 0 {
		gotAborted[<-aborted] = true
	}
	for _, tc := range cases {
		if tc.upstream && !gotAborted[tc.id] {
			t.Errorf("%s: its upstream request was not aborted (its connection stayed open); aborted: %v", tc.id, gotAborted)
		}
	}
	if n := count.Load(); n != 3 {
		t.Errorf("the upstream received %d requests, want 3: the queued one or the retry went upstream during the shutdown", n)
	}

	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	codes503, outcomes := 0.0, map[string]float64{}
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			lab := map[string]string{}
			for _, l := range m.GetLabel() {
				lab[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "tollgate_requests_total":
				if lab["code"] == "503" {
					codes503 += m.GetCounter().GetValue()
				}
			case "tollgate_upstream_attempts_total":
				outcomes[lab["outcome"]] += m.GetCounter().GetValue()
			}
		}
	}
	if codes503 != 4 {
		t.Errorf("tollgate_requests_total{code=503} = %v, want 4", codes503)
	}
	if outcomes["shutdown"] != 2 || outcomes["canceled"] != 0 || outcomes["status_4xx"] != 1 {
		t.Errorf("tollgate_upstream_attempts_total by outcome %v; want shutdown 2 (awaited, header), status_4xx 1 (pause's first), none canceled", outcomes)
	}
	checkCutSpans(t, exp, "awaited", true)
	checkCutSpans(t, exp, "header", true)
	checkCutSpans(t, exp, "queued", false)

	// Another replica on the same Redis reads chat's token bucket: both 8000-token
	// estimates were refunded. Its spans stay in memory: exported to the config's
	// collector, which nothing runs, its stop would wait out the export timeout.
	b := serveWithOptions(t, cutWaitsConfig(addr, rds.URL()), Options{SpanExporter: &keepSpans{}})
	resp, body := postWith(t, b.url+"/v1/chat/completions", `{"model":"chat","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`, nil)
	if rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); rem < 38000 {
		t.Errorf("after the shutdown, x-ratelimit-remaining-tokens %d of 40000 (%d %s): the estimates of the requests it answered 503 stay charged",
			rem, resp.StatusCode, body)
	}
}

// checkCutSpans checks the spans of request id, which the shutdown cut while it
// waited: its server span is an error with status 503 and error.type
// shutting_down, and its attempt, when it went upstream, has outcome shutdown.
func checkCutSpans(t *testing.T, exp *keepSpans, id string, attempt bool) {
	t.Helper()
	var server sdktrace.ReadOnlySpan
	all := exp.all()
	for _, s := range all {
		if v, ok := attr(s, "tollgate.request_id"); ok && v.AsString() == id && s.SpanKind() == trace.SpanKindServer {
			server = s
		}
	}
	if server == nil {
		t.Errorf("%s: no server span", id)
		return
	}
	if v, _ := attr(server, "http.response.status_code"); v.AsInt64() != 503 {
		t.Errorf("%s: server span status %v, want 503", id, v.Emit())
	}
	if v, _ := attr(server, "error.type"); v.AsString() != "shutting_down" || server.Status().Code != codes.Error {
		t.Errorf("%s: server span error.type %q, status %v; want shutting_down, an error", id, v.AsString(), server.Status().Code)
	}
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range all {
		if s.SpanContext().TraceID() == server.SpanContext().TraceID() && s.SpanKind() == trace.SpanKindClient {
			attempts = append(attempts, s)
		}
	}
	if !attempt {
		if len(attempts) != 0 {
			t.Errorf("%s: %d attempt spans for a request that never went upstream", id, len(attempts))
		}
		return
	}
	if len(attempts) != 1 {
		t.Fatalf("%s: %d attempt spans, want 1", id, len(attempts))
	}
	a := attempts[0]
	if v, _ := attr(a, string(tracing.KeyOutcome)); v.AsString() != "shutdown" {
		t.Errorf("%s: attempt span outcome %q, want shutdown", id, v.AsString())
	}
	if v, _ := attr(a, "error.type"); v.AsString() != "shutting_down" || a.Status().Code != codes.Error {
		t.Errorf("%s: attempt span error.type %q, status %v; want shutting_down, an error", id, v.AsString(), a.Status().Code)
	}
}

// cutWaits ends a client watch running as the client's hang-up would, leaving the
// connection's write side open for the 503; a watch started after the cut has fired
// already. Neither stays in the server's list.
func TestCutWaitsEndsRunningAndLaterWatches(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &Server{}
	running := &clientWatch{conn: conn, s: s}
	ch := running.Watch()
	if ch == nil {
		t.Fatal("a TCP connection was not watched")
	}
	s.cutOpen()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the running watch did not fire when the shutdown cut the waits")
	}
	later := &clientWatch{conn: conn, s: s}
	select {
	case <-later.Watch():
	default:
		t.Fatal("a watch started after the cut has not fired")
	}
	later.Unwatch()
	running.Unwatch()
	for i := range s.waits {
		if s.waits[i].head != nil {
			t.Fatal("a watch stayed listed after its Unwatch")
		}
	}
	if _, err := io.WriteString(conn, "answer"); err != nil {
		t.Fatalf("the cut connection cannot carry the answer: %v", err)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(peer, b); err != nil || string(b) != "answer" {
		t.Fatalf("the client read %q, %v", b, err)
	}
}
