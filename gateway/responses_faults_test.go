package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// respEvent writes one named Responses API stream event.
func respEvent(w *bufio.Writer, typ, rest string) {
	w.WriteString("event: " + typ + "\ndata: {\"type\":\"" + typ + "\"" + rest + "}\n\n")
	w.Flush()
}

// respPost sends a call to the gateway and returns its answer, read whole.
func respPost(t *testing.T, g *gw, method, path, id, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, g.url+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Request-Id", id)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// storingReplica is one replica storing its own responses, as vLLM does: each response
// it makes has ID id, a previous_response_id other than id is refused 404
// previous_response_not_found, x-fail answers 500, and x-hold holds a stream open
// (after its first delta) until release is closed. Every call is noted in seen.
type storingReplica struct {
	id   string
	mu   sync.Mutex
	seen []string
}

func (r *storingReplica) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func startStoringReplica(t *testing.T, id string, release chan struct{}) (*storingReplica, string) {
	r := &storingReplica{id: id}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var req struct {
			Stream bool   `json:"stream"`
			Prev   string `json:"previous_response_id"`
		}
		_ = json.Unmarshal(ctx.PostBody(), &req)
		r.mu.Lock()
		r.seen = append(r.seen, string(ctx.Method())+" "+string(ctx.Path())+" prev="+req.Prev)
		r.mu.Unlock()
		ctx.SetContentType("application/json")
		switch {
		case len(ctx.Request.Header.Peek("x-fail")) > 0:
			ctx.SetStatusCode(500)
			ctx.SetBodyString(`{"error":{"message":"engine failed","type":"server_error","param":null,"code":null}}`)
		case req.Prev != "" && req.Prev != id:
			ctx.SetStatusCode(404)
			ctx.SetBodyString(`{"error":{"message":"Response with id '` + req.Prev + `' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`)
		case !req.Stream:
			ctx.SetBodyString(respObjectID(id, "completed", respUsage))
		default:
			hold := len(ctx.Request.Header.Peek("x-hold")) > 0
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				respEvent(w, "response.created", `,"response":`+respObjectID(id, "in_progress", "null"))
				respEvent(w, "response.output_text.delta", `,"delta":"Hi"`)
				if hold {
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
				}
				respEvent(w, "response.completed", `,"response":`+respObjectID(id, "completed", respUsage))
			})
		}
	})
	return r, addr
}

// A follow-up (previous_response_id) whose primary answers 503 skips an anthropic
// fallback (served through the bridge, which stores no responses) without an attempt
// and goes to the openai fallback after it; with that fallback alone the primary's 503
// stands (README, retries: a fallback that cannot take the request is skipped and
// makes no attempt). A call that continues nothing is served by the bridge.
func TestResponsesAnthropicFallbackSkipped(t *testing.T) {
	t.Parallel()
	down := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(503)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}`)
	})
	good, goodAddr := startStoringReplica(t, "resp_good", nil)
	_, claude := startMock(t, mockllm.Options{Model: "claude-x", API: mockllm.APIAnthropic, APIKey: "k", MaxTokens: 8, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  primary: {provider: openai, base_url: "http://`+down+`/v1", model: m}
  claude: {provider: anthropic, base_url: "http://`+claude+`/v1", model: claude-x, api_key: k}
  good: {provider: openai, base_url: "http://`+goodAddr+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, retries: 0, routes: [{backend: primary}], fallbacks: [claude, good]}
  - {name: chat2, type: chat, retries: 0, routes: [{backend: primary}], fallbacks: [claude]}
logging: {level: info, format: json}
`)
	prev := `"previous_response_id":"resp_good` + responseTag("primary", "http://"+down+"/v1") + `"`
	resp, body := respPost(t, g, "POST", "/v1/responses", "fb-good", `{"model":"chat","input":"hi",`+prev+`}`)
	line := accessLine(t, g, "fb-good")
	if resp.StatusCode != 200 || len(good.calls()) != 1 || line["attempts"] != float64(2) {
		t.Errorf("fallbacks [claude, good]: observed %d %s (backend %v, attempts %v, good called %d times); expected 200 from the openai fallback good, the anthropic one skipped",
			resp.StatusCode, body, line["backend"], line["attempts"], len(good.calls()))
	}
	resp, body = respPost(t, g, "POST", "/v1/responses", "fb-only", `{"model":"chat2","input":"hi",`+prev+`}`)
	line = accessLine(t, g, "fb-only")
	if resp.StatusCode != 503 || line["attempts"] != float64(1) {
		t.Errorf("fallbacks [claude]: observed %d %s (backend %v, attempts %v); expected the primary's 503 with 1 attempt, the anthropic fallback skipped",
			resp.StatusCode, body, line["backend"], line["attempts"])
	}
	resp, body = respPost(t, g, "POST", "/v1/responses", "fb-bridge", `{"model":"chat2","input":"hi"}`)
	line = accessLine(t, g, "fb-bridge")
	if resp.StatusCode != 200 || line["backend"] != "claude" || !strings.Contains(body, `"object":"response"`) {
		t.Errorf("a call continuing nothing: observed %d %s (backend %v); expected 200 from claude through the bridge",
			resp.StatusCode, body, line["backend"])
	}
}

// A follow-up of a response stored on a replica that passive health ejected is not
// sent to another replica (whose 404 previous_response_not_found the SDKs do not
// retry): the backend has no target for it, a retryable 503.
func TestResponsesPinnedFollowUpToEjectedReplica(t *testing.T) {
	t.Parallel()
	a, addrA := startStoringReplica(t, "resp_a", nil)
	b, addrB := startStoringReplica(t, "resp_b", nil)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+addrA+`/v1", "http://`+addrB+`/v1"], model: m, balance: round_robin, health: {eject_after: 1, eject_for: 1m}}
endpoints:
  - {name: chat, type: chat, retries: 0, routes: [{backend: pool}]}
logging: {level: info, format: json}
`)
	idA := "resp_a" + responseTag("pool", "http://"+addrA+"/v1")
	if r, _ := respPost(t, g, "POST", "/v1/responses", "eject", `{"model":"chat","input":"hi","previous_response_id":"`+idA+`"}`, "x-fail", "1"); r.StatusCode != 500 {
		t.Fatalf("first call: %d", r.StatusCode)
	}
	r, body := respPost(t, g, "POST", "/v1/responses", "after-eject", `{"model":"chat","input":"more","previous_response_id":"`+idA+`"}`)
	if len(b.calls()) != 0 || r.StatusCode != 503 {
		t.Fatalf("observed the follow-up of %s sent to replica B (%v) and answered %d %s; expected it on A (%v) or a retryable 503, not another replica's 404",
			idA, b.calls(), r.StatusCode, body, a.calls())
	}
}

// Two deployments behind one ingress (targets differing only by path): a reload that
// removes one keeps the other's tag, so its stored responses are still found.
func TestResponsesTagKeptByReloadThatKeepsTheTarget(t *testing.T) {
	t.Parallel()
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		dep := strings.Split(strings.TrimPrefix(string(ctx.Path()), "/"), "/")[0]
		ctx.SetContentType("application/json")
		ctx.SetBodyString(respObjectID("resp_"+dep, "completed", respUsage))
	})
	cfg := func(targets string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: [` + targets + `], model: m, balance: round_robin}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
logging: {level: info, format: json}
`
	}
	ta, tb := `"http://`+addr+`/a/v1"`, `"http://`+addr+`/b/v1"`
	g := startGateway(t, cfg(ta+", "+tb))
	var idA string
	for range 4 {
		_, body := respPost(t, g, "POST", "/v1/responses", "make", `{"model":"chat","input":"hi"}`)
		var m struct{ ID string }
		_ = json.Unmarshal([]byte(body), &m)
		if strings.HasPrefix(m.ID, "resp_a-tg") {
			idA = m.ID
		}
	}
	if idA == "" {
		t.Fatal("no response from deployment a")
	}
	if r, body := respPost(t, g, "GET", "/v1/responses/"+idA, "get-before", ""); r.StatusCode != 200 {
		t.Fatalf("before the reload: %d %s", r.StatusCode, body)
	}
	if err := os.WriteFile(g.path, []byte(cfg(ta)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if r, body := respPost(t, g, "GET", "/v1/responses/"+idA, "get-after", ""); r.StatusCode != 200 {
		t.Fatalf("observed GET %s after a reload keeping its target (/a/v1) answered %d %s; expected 200 from that target", idA, r.StatusCode, body)
	}
}

// A call on a stored response has a client span for its upstream call, and the
// upstream gets its traceparent.
func TestResponsesByIDCallUpstreamSpan(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var traceparent string
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		traceparent = string(ctx.Request.Header.Peek("traceparent"))
		mu.Unlock()
		ctx.SetContentType("application/json")
		ctx.SetBodyString(respObjectID("resp_0123", "completed", respUsage))
	})
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	if r, body := respPost(t, g, "GET", "/v1/responses/"+id, "byid-trace", ""); r.StatusCode != 200 {
		t.Fatalf("GET: %d %s", r.StatusCode, body)
	}
	spans := requestSpans(t, g, exp, "byid-trace")
	var names []string
	clients := 0
	for n, ss := range spans {
		names = append(names, n)
		for _, s := range ss {
			if s.SpanKind.String() == "client" {
				clients++
			}
		}
	}
	mu.Lock()
	tp := traceparent
	mu.Unlock()
	if clients != 1 || tp == "" {
		t.Fatalf("observed spans %v (%d client spans) and traceparent %q sent upstream; expected one client span for the upstream call and a traceparent on it", names, clients, tp)
	}
}

// A call on a stored response counts under its backend (endpoint unknown) in
// tollgate_requests_total and its attempt in tollgate_upstream_attempts_total, as the
// access log names them.
func TestResponsesByIDCallCountedUnderItsBackend(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", "")+"logging: {level: info, format: json}\n")
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	if r, body := respPost(t, g, "GET", "/v1/responses/"+id, "byid-metrics", ""); r.StatusCode != 200 {
		t.Fatalf("GET: %d %s", r.StatusCode, body)
	}
	line := accessLine(t, g, "byid-metrics")
	fams := scrapeAdmin(t, g)
	_, up := seriesWith(fams, "tollgate_requests_total", "backend", "up", "code", "200")
	_, none := seriesWith(fams, "tollgate_requests_total", "backend", "none", "code", "200")
	_, attempts := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "up")
	if up != 1 || attempts != 1 {
		t.Fatalf("observed access log backend %v attempts %v, but requests_total{backend=\"up\",code=\"200\"}=%v, {backend=\"none\",code=\"200\"}=%v, upstream_attempts_total{backend=\"up\"}=%v; expected the call counted under backend up with its one attempt",
			line["backend"], line["attempts"], up, none, attempts)
	}
}

// Retrieving a stored response as a stream (?stream=true, for background responses) is
// refused 400 naming stream, not taken for the upstream's bad answer; stream=false is
// a plain retrieval.
func TestResponsesByIDStreamRetrieveRefused(t *testing.T) {
	t.Parallel()
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.QueryArgs().Peek("stream")) != "true" {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(respObjectID("resp_0123", "completed", respUsage))
			return
		}
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			respEvent(w, "response.output_text.delta", `,"sequence_number":4,"delta":"there"`)
			respEvent(w, "response.completed", `,"sequence_number":5,"response":`+respObjectID("resp_0123", "completed", respUsage))
		})
	})
	g := startGateway(t, mockConfig(addr, "", ""))
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	r, body := respPost(t, g, "GET", "/v1/responses/"+id+"?stream=true&starting_after=3", "byid-stream", "")
	if r.StatusCode != 400 || !strings.Contains(body, `"param":"stream"`) || !strings.Contains(body, "without stream=true") {
		t.Fatalf("observed %d %s %s; expected 400 naming stream, not the upstream's stream taken for a bad answer", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
	if r, body := respPost(t, g, "GET", "/v1/responses/"+id+"?stream=false", "byid-nostream", ""); r.StatusCode != 200 || !strings.Contains(body, id) {
		t.Fatalf("stream=false: observed %d %s; expected the stored response", r.StatusCode, body)
	}
}

// An upstream that ends a Responses stream with [DONE] before any terminal event has
// cut it: the client gets the gateway's error event and the request counts
// upstream_stream_cut, not a clean success.
func TestResponsesStreamEndedByDoneWithoutTerminalEvent(t *testing.T) {
	t.Parallel()
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			respEvent(w, "response.created", `,"response":`+respObject("in_progress", "null"))
			respEvent(w, "response.output_text.delta", `,"delta":"Hi"`)
			w.WriteString("data: [DONE]\n\n")
			w.Flush()
		})
	})
	g := startGateway(t, mockConfig(addr, "", "")+"logging: {level: info, format: json}\n")
	_, body := respPost(t, g, "POST", "/v1/responses", "done-early", `{"model":"chat","input":"hi","stream":true}`)
	line := accessLine(t, g, "done-early")
	if !strings.Contains(body, "upstream_stream_cut") || line["error"] != "upstream_stream_cut" {
		t.Fatalf("observed a stream ending %q, access log error %q; expected the gateway's upstream_stream_cut error event and error upstream_stream_cut",
			body[strings.LastIndex(body, "event:"):], line["error"])
	}
}

// The openai-go SDK's GetStreaming asks for a stored response's stream in a JSON body
// on its GET: refused 400 as ?stream=true is, not answered with the plain response,
// which the SDK would read as a stream with no event and no error.
func TestResponsesByIDStreamInBodyRefused(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	st := c.Responses.GetStreaming(context.Background(), id, responses.ResponseGetParams{})
	for st.Next() {
		t.Fatalf("an event: %v", st.Current())
	}
	var ae *openai.Error
	if err := st.Err(); !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "stream" {
		t.Fatalf("observed %v; expected 400 naming stream", err)
	}
	if _, err := c.Responses.Get(context.Background(), id, responses.ResponseGetParams{}); err != nil {
		t.Fatalf("a plain GET: %v", err)
	}
}
