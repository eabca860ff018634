package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A follow-up of a response stored on replica A, whose one connection or one
// max_concurrency slot a stream holds, waits for A (failing there at connect_timeout,
// or 503 at queue.timeout) rather than going to replica B, which does not hold the
// response.
func TestResponsesPinnedFollowUpWaitsForBusyReplica(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, bound string }{
		{"max_connections", "max_connections: 1, connect_timeout: 200ms"},
		{"max_concurrency", "max_concurrency: 1, queue: {size: 4, timeout: 300ms}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			a, addrA := startStoringReplica(t, "resp_a", release)
			b, addrB := startStoringReplica(t, "resp_b", release)
			t.Cleanup(func() { close(release) })
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+addrA+`/v1", "http://`+addrB+`/v1"], model: m, balance: round_robin, `+c.bound+`}
endpoints:
  - {name: chat, type: chat, retries: 0, routes: [{backend: pool}]}
logging: {level: info, format: json}
`)
			idA := "resp_a" + responseTag("pool", "http://"+addrA+"/v1")
			// A stream continuing on A holds A's connection and slot until the test ends.
			req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(`{"model":"chat","input":"hi","stream":true,"previous_response_id":"`+idA+`"}`))
			req.Header.Set("x-hold", "1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			r, body := respPost(t, g, "POST", "/v1/responses", "pin-busy-"+c.name, `{"model":"chat","input":"more","previous_response_id":"`+idA+`"}`)
			if len(b.calls()) != 0 || r.StatusCode < 500 {
				t.Fatalf("observed the follow-up of %s answered %d %s, replica B called %v; expected it kept off B, failing on busy A (A got %v)",
					idA, r.StatusCode, body, b.calls(), a.calls())
			}
		})
	}
}

// A follow-up waiting in the queue for replica A's slot is let go with 503
// no_healthy_upstream when A is ejected, not handed a slot on replica B.
func TestResponsesPinnedWaiterLetGoOnEjection(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string][]string{}
	replica := func(name, id string) string {
		return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
			var req struct {
				Stream bool   `json:"stream"`
				Prev   string `json:"previous_response_id"`
			}
			_ = json.Unmarshal(ctx.PostBody(), &req)
			mu.Lock()
			calls[name] = append(calls[name], "prev="+req.Prev)
			mu.Unlock()
			ctx.SetContentType("application/json")
			switch {
			case req.Prev != "" && req.Prev != id:
				ctx.SetStatusCode(404)
				ctx.SetBodyString(`{"error":{"message":"Response with id '` + req.Prev + `' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`)
			case !req.Stream:
				ctx.SetBodyString(respObjectID(id, "completed", respUsage))
			default:
				ctx.SetContentType("text/event-stream")
				ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
					respEvent(w, "response.created", `,"response":`+respObjectID(id, "in_progress", "null"))
					respEvent(w, "response.output_text.delta", `,"delta":"Hi"`)
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
					// Cut: no terminal event.
				})
			}
		})
	}
	addrA := replica("a", "resp_a")
	addrB := replica("b", "resp_b")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+addrA+`/v1", "http://`+addrB+`/v1"], model: m, balance: round_robin,
         max_concurrency: 1, queue: {size: 4, timeout: 10s}, health: {eject_after: 1, eject_for: 1m}}
endpoints:
  - {name: chat, type: chat, retries: 0, routes: [{backend: pool}]}
logging: {level: info, format: json}
`)
	idA := "resp_a" + responseTag("pool", "http://"+addrA+"/v1")
	req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(`{"model":"chat","input":"hi","stream":true,"previous_response_id":"`+idA+`"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		r, body := respPost(t, g, "POST", "/v1/responses", "pin-waiter", `{"model":"chat","input":"more","previous_response_id":"`+idA+`"}`)
		done <- answer{r.StatusCode, body}
	}()
	waitInFlight(t, g, 2, "the follow-up waiting for A")
	// The follow-up is in flight; its queue wait begins microseconds later.
	time.Sleep(300 * time.Millisecond)
	close(release)
	var got answer
	select {
	case got = <-done:
	case <-time.After(8 * time.Second):
		t.Fatal("the follow-up got no answer")
	}
	mu.Lock()
	onB := append([]string(nil), calls["b"]...)
	mu.Unlock()
	if len(onB) != 0 {
		t.Fatalf("observed the follow-up of %s handed to replica B (%v) once A was ejected, answered %d %s; expected 503 no_healthy_upstream, B not called",
			idA, onB, got.status, got.body)
	}
}

// A Responses stream cut before its terminal event has no finish reason on its span:
// in_progress, the status its first event named, is no reason the model stopped.
func TestResponsesCutStreamSpanHasNoFinishReason(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	_, body := respPost(t, g, "POST", "/v1/responses", "cut-span", `{"model":"chat","input":"hi","stream":true}`, "x-test-end", "cut")
	if !strings.Contains(body, "upstream_stream_cut") {
		t.Fatalf("stream not cut: %s", body)
	}
	spans := requestSpans(t, g, exp, "cut-span")
	as := spans["chat up-model"]
	if len(as) != 1 {
		t.Fatalf("spans %v", spans)
	}
	if v, ok := attr(as[0].Snapshot(), "gen_ai.response.finish_reasons"); ok {
		t.Fatalf("observed gen_ai.response.finish_reasons %v on the span of a stream cut before its terminal event; expected none, the response never finished",
			v.AsStringSlice())
	}
}

// An upstream whose response IDs are base64 (LiteLLM's, with '=' padding): the ID the
// gateway returned, tagged, is found by GET as its follow-up is.
func TestResponsesByIDBase64ID(t *testing.T) {
	t.Parallel()
	const id = "resp_bGl0ZWxsbTpyZXNwXzAx=="
	_, addr := startResponsesUpstreamID(t, id)
	g := startGateway(t, mockConfig(addr, "", "")+"logging: {level: info, format: json}\n")
	r, body := respPost(t, g, "POST", "/v1/responses", "b64-make", `{"model":"chat","input":"hi"}`)
	var m struct{ ID string }
	_ = json.Unmarshal([]byte(body), &m)
	tagged := id + responseTag("up", "http://"+addr+"/v1")
	if r.StatusCode != 200 || m.ID != tagged {
		t.Fatalf("create: %d %s", r.StatusCode, body)
	}
	r, body = respPost(t, g, "POST", "/v1/responses", "b64-follow", `{"model":"chat","input":"more","previous_response_id":"`+m.ID+`"}`)
	if r.StatusCode != 200 {
		t.Fatalf("follow-up: %d %s", r.StatusCode, body)
	}
	r, body = respPost(t, g, "GET", "/v1/responses/"+m.ID, "b64-get", "")
	if r.StatusCode != 200 {
		t.Fatalf("observed GET /v1/responses/%s (the ID the gateway returned, whose follow-up it served) answered %d %s; expected 200, the stored response from its tagged target",
			m.ID, r.StatusCode, body)
	}
}

// A single-replica backend ejected by one 500: once eject_for has run out, a follow-up
// pinned to that replica is the trial that brings it back, not a 503 for as long as
// only follow-ups arrive.
func TestResponsesPinnedFollowUpIsTheTrial(t *testing.T) {
	t.Parallel()
	a, addrA := startStoringReplica(t, "resp_a", nil)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addrA+`/v1", model: m, health: {eject_after: 1, eject_for: 100ms}}
endpoints:
  - {name: chat, type: chat, retries: 0, routes: [{backend: up}]}
logging: {level: info, format: json}
`)
	idA := "resp_a" + responseTag("up", "http://"+addrA+"/v1")
	if r, _ := respPost(t, g, "POST", "/v1/responses", "trial-eject", `{"model":"chat","input":"hi","previous_response_id":"`+idA+`"}`, "x-fail", "1"); r.StatusCode != 500 {
		t.Fatalf("first call: %d", r.StatusCode)
	}
	// Ten times eject_for: the ejection has run out, the next request is the trial.
	time.Sleep(time.Second)
	before := len(a.calls())
	r, body := respPost(t, g, "POST", "/v1/responses", "trial-follow", `{"model":"chat","input":"more","previous_response_id":"`+idA+`"}`)
	if r.StatusCode != 200 || len(a.calls()) != before+1 {
		t.Fatalf("observed the follow-up answered %d %s, the replica called %d times, 1 s after its 100ms ejection ran out; expected it sent to the replica as its trial and answered 200",
			r.StatusCode, body, len(a.calls())-before)
	}
}
