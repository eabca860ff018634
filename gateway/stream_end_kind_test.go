package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/promtest"
)

// A stream's ending is told alike by the client's error event, the access log's error,
// tollgate_stream_errors_total's code, the attempt's outcome and both spans.

const endStreamBody = `{"model":"once","stream":true,"messages":[{"role":"user","content":"hi"}]}`

const endAnswer = `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

func endChunk(content string) string {
	return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` +
		content + `"},"finish_reason":null}]}` + "\n\n"
}

type endEnv struct {
	g       *gw
	exp     *tracetest.InMemoryExporter
	release chan struct{}
	arrived chan string
}

// startEndEnv serves a traced gateway in front of an upstream that behaves as the
// request's X-Test-Mode says:
//   - stream-idle: one content event, then silence past stream_idle_timeout (400ms);
//   - stream-bad: one content event, then an event that is not JSON;
//   - stream-error-hold: one content event, then vLLM's own error event, then
//     silence until the test ends (the request's ID goes on arrived first);
//   - anything else: a 200 chat answer.
//
// Backends up, stable and canary all go to it; extra adds to the endpoints.
func startEndEnv(t *testing.T, extra string) *endEnv {
	t.Helper()
	e := &endEnv{release: make(chan struct{}), arrived: make(chan string, 16)}
	t.Cleanup(func() { close(e.release) })
	addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		id := req.Header.Get("X-Request-Id")
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
		chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
		hold := func() {
			select {
			case <-e.release:
			case <-time.After(5 * time.Second):
			}
			c.Close()
		}
		switch req.Header.Get("X-Test-Mode") {
		case "stream-idle":
			_, _ = io.WriteString(c, head+chunk(endChunk("a")))
			hold()
		case "stream-bad":
			_, _ = io.WriteString(c, head+chunk(endChunk("a")))
			time.Sleep(50 * time.Millisecond)
			_, _ = io.WriteString(c, chunk("data: <html>oops</html>\n\n")+"0\r\n\r\n")
		case "stream-error-hold":
			_, _ = io.WriteString(c, head+chunk(endChunk("a"))+
				chunk(`data: {"error":{"message":"engine dead","type":"server_error","code":500}}`+"\n\n"))
			e.arrived <- id
			hold()
		default:
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
				strconv.Itoa(len(endAnswer))+"\r\n\r\n"+endAnswer)
		}
	})
	backend := `{provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s, stream_idle_timeout: 400ms}`
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  up: ` + backend + `
  stable: ` + backend + `
  canary: ` + backend + `
endpoints:
  - {name: once, type: chat, routes: [{backend: up, variant: stable}]}
` + extra + `
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`
	e.g, e.exp = startTracedGateway(t, yaml)
	return e
}

func (e *endEnv) post(t *testing.T, id, mode, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.g.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	if mode != "" {
		req.Header.Set("X-Test-Mode", mode)
	}
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hangUpAfterErrorEvent sends a stream-error-hold request as a client that closes its
// connection once it has read the upstream's error event, as the OpenAI SDKs do when
// they raise on one.
func (e *endEnv) hangUpAfterErrorEvent(t *testing.T, body string, header ...string) {
	t.Helper()
	rc := dialRaw(t, e.g, nil)
	_, _ = io.WriteString(rc.conn, rawRequest(t, e.g, body, append(header, "X-Test-Mode: stream-error-hold")...))
	<-e.arrived
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), "engine dead") {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("stream ended before the upstream's error event: %v\n%s", err, got)
		}
	}
	_ = rc.conn.Close()
}

// scrapeSeries flattens the tollgate_ series: counters by value, histograms by count.
func scrapeSeries(t *testing.T, g *gw) map[string]float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "tollgate_") {
			continue
		}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			k := name + "{" + strings.Join(ls, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[k] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[k+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// seriesDelta is what changed between two scrapes, one series a line.
func seriesDelta(a, b map[string]float64) string {
	var ks []string
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			ks = append(ks, fmt.Sprintf("%s %v", k, d))
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, "\n")
}

// spans is the server span and the upstream attempt spans of request id.
func (e *endEnv) spans(t *testing.T, id string) (server tracetest.SpanStub, attempts []tracetest.SpanStub, summary string) {
	t.Helper()
	var all tracetest.SpanStubs
	n := 0
	for _, ss := range requestSpans(t, e.g, e.exp, id) {
		for _, s := range ss {
			all = append(all, s)
			switch s.SpanKind {
			case trace.SpanKindServer:
				server = s
				n++
			case trace.SpanKindClient:
				attempts = append(attempts, s)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d server spans for %s", n, id)
	}
	return server, attempts, contractSpanSummary(all)
}

func errType(s tracetest.SpanStub) string {
	v, _ := attr(s.Snapshot(), "error.type")
	return v.AsString()
}

// TestStreamIdleTimeoutLoggedAsTimeout: a stream that the upstream leaves silent past
// stream_idle_timeout after its first event ends with an error event of code
// upstream_timeout, is counted in tollgate_stream_errors_total{code="upstream_timeout"}
// and its attempt with outcome timeout; a request that timed out before its stream
// began is logged and traced as upstream_timeout. The access log and the server span
// name the same kind, not a cut (an upstream that died), which would send the SRE
// looking for crashed replicas instead of slow ones.
func TestStreamIdleTimeoutLoggedAsTimeout(t *testing.T) {
	t.Parallel()
	e := startEndEnv(t, "")
	before := scrapeSeries(t, e.g)
	st, body := e.post(t, "idle", "stream-idle", endStreamBody)
	if st != 200 || !strings.Contains(body, `"code":"upstream_timeout"`) {
		t.Fatalf("status %d body %s; want a 200 stream ended by an upstream_timeout event", st, body)
	}
	line := accessLine(t, e.g, "idle")
	server, attempts, summary := e.spans(t, "idle")
	delta := seriesDelta(before, scrapeSeries(t, e.g))
	if !strings.Contains(delta, "tollgate_stream_errors_total{backend=up,code=upstream_timeout,endpoint=once,variant=stable} 1") {
		t.Fatalf("metrics did not count an upstream_timeout stream error:\n%s", delta)
	}
	if line["error"] != "upstream_timeout" {
		t.Errorf("access log error %q, want upstream_timeout (the client's event code, tollgate_stream_errors_total's code, attempt outcome timeout)\nlog %v\nmetrics\n%s", line["error"], line, delta)
	}
	if got := errType(server); got != "upstream_timeout" {
		t.Errorf("server span error.type %q, want upstream_timeout\n%s", got, summary)
	}
	if len(attempts) != 1 || errType(attempts[0]) != "upstream_timeout" || attempts[0].Status.Code != codes.Error {
		t.Errorf("attempt spans: want one Error typed upstream_timeout\n%s", summary)
	}
}

// TestStreamBadEventLoggedAsBadResponse: a stream whose upstream sends an event that
// is not JSON after its first one ends with an error event of code
// upstream_bad_response and is counted under that code in
// tollgate_stream_errors_total; the access log and the spans name it so too.
func TestStreamBadEventLoggedAsBadResponse(t *testing.T) {
	t.Parallel()
	e := startEndEnv(t, "")
	before := scrapeSeries(t, e.g)
	st, body := e.post(t, "bad", "stream-bad", endStreamBody)
	if st != 200 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
		t.Fatalf("status %d body %s; want a 200 stream ended by an upstream_bad_response event", st, body)
	}
	line := accessLine(t, e.g, "bad")
	server, attempts, summary := e.spans(t, "bad")
	delta := seriesDelta(before, scrapeSeries(t, e.g))
	if !strings.Contains(delta, "tollgate_stream_errors_total{backend=up,code=upstream_bad_response,endpoint=once,variant=stable} 1") {
		t.Fatalf("metrics did not count an upstream_bad_response stream error:\n%s", delta)
	}
	if line["error"] != "upstream_bad_response" {
		t.Errorf("access log error %q, want upstream_bad_response (the client's event code and tollgate_stream_errors_total's)\nlog %v", line["error"], line)
	}
	if got := errType(server); got != "upstream_bad_response" {
		t.Errorf("server span error.type %q, want upstream_bad_response\n%s", got, summary)
	}
	if len(attempts) != 1 || errType(attempts[0]) != "upstream_bad_response" {
		t.Errorf("attempt spans: want one typed upstream_bad_response\n%s", summary)
	}
}

// TestStreamErrorEventThenHangUpIsUpstreamError: vLLM's engine fails mid-stream: its
// error event reaches the client, which (as the OpenAI SDKs do on an error event)
// stops reading and closes the connection before the upstream ends the stream.
// README: the upstream's own error event "goes to the client as it came ... and the
// stream counts the same way, code upstream_error". The stream ended by the upstream's
// failure, not by the client: it is counted as a stream error, logged as the 200 with
// error upstream_error the client got, its attempt counted as an error, and both spans
// marked alike (an Error typed client_gone would contradict README: a client's doing
// is not kept as an error).
func TestStreamErrorEventThenHangUpIsUpstreamError(t *testing.T) {
	t.Parallel()
	e := startEndEnv(t, "")
	before := scrapeSeries(t, e.g)
	e.hangUpAfterErrorEvent(t, endStreamBody, "X-Request-Id: errgone")
	line := accessLine(t, e.g, "errgone")
	server, attempts, summary := e.spans(t, "errgone")
	delta := seriesDelta(before, scrapeSeries(t, e.g))
	if len(attempts) != 1 {
		t.Fatalf("%d attempt spans\n%s", len(attempts), summary)
	}
	a := attempts[0]
	if !strings.Contains(delta, "tollgate_stream_errors_total{backend=up,code=upstream_error,endpoint=once,variant=stable} 1") {
		t.Errorf("the client got the upstream's error event, but tollgate_stream_errors_total{code=upstream_error} did not count it\nlog %v\nmetrics\n%s", line, delta)
	}
	if server.Status.Code != a.Status.Code || errType(server) != errType(a) {
		t.Errorf("server span status %v error.type %q, attempt span status %v error.type %q: they disagree\n%s",
			server.Status.Code, errType(server), a.Status.Code, errType(a), summary)
	}
	if server.Status.Code == codes.Error && errType(server) == "client_gone" {
		t.Errorf("server span is an Error whose error.type is client_gone (a client's doing, README: not kept as an error)")
	}
	if server.Status.Code != codes.Error || errType(server) != "upstream_error" {
		t.Errorf("server span status %v error.type %q, want Error upstream_error\n%s", server.Status.Code, errType(server), summary)
	}
	if line["status"] != 200.0 || line["error"] != "upstream_error" {
		t.Errorf("access log status %v error %q, want 200 upstream_error (what the client got)", line["status"], line["error"])
	}
	for _, want := range []string{
		"tollgate_requests_total{backend=up,code=200,endpoint=once,variant=stable} 1",
		"tollgate_upstream_attempts_total{backend=up,outcome=error,",
	} {
		if !strings.Contains(delta, want) {
			t.Errorf("metrics lack %q:\n%s", want, delta)
		}
	}
}

// TestStreamErrorEventThenHangUpCanaryCountsFailure: the canary judges a stream whose
// upstream sent its own error event as failed, whether or not the client stayed to the
// end of it, as the target's health does.
func TestStreamErrorEventThenHangUpCanaryCountsFailure(t *testing.T) {
	e := startEndEnv(t, `  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h}`)
	user := canaryUser(t, halfCanary)
	e.hangUpAfterErrorEvent(t, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		"X-Request-Id: canary-gone", "X-User-ID: "+user)
	if line := accessLine(t, e.g, "canary-gone"); line["backend"] != "canary" {
		t.Fatalf("served by %v, want the canary", line["backend"])
	}
	w := readCanaryWindow(t, e.g.AdminAddr()).Canary.Window
	if w.Requests != 1 || w.Errors != 1 {
		t.Errorf("canary window: %d requests, %d errors; want the failed stream counted (1, 1)", w.Requests, w.Errors)
	}
}
