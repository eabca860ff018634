package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// A call on a stored response (GET, DELETE, input_items, cancel) is answered with
// x-tollgate-backend naming the backend that holds it, as every answer is.
func TestResponsesByIDAnswerNamesItsBackend(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/responses/" + id},
		{"DELETE", "/v1/responses/" + id},
		{"GET", "/v1/responses/" + id + "/input_items"},
		{"POST", "/v1/responses/" + id + "/cancel"},
	} {
		r, body := respPost(t, g, c.method, c.path, "byid-hdr-"+c.method+strconv.Itoa(len(c.path)), "")
		if got := r.Header.Get("X-Tollgate-Backend"); got != "up" {
			t.Errorf("%s %s: observed status %d with x-tollgate-backend %q (body %.80s); expected x-tollgate-backend \"up\", the backend that answered",
				c.method, c.path, r.StatusCode, got, body)
		}
	}
}

// The series of the calls on stored responses (endpoint unknown, their backend) exist
// at 0 from the start, request counters included, as every label set's do.
func TestResponsesByIDSeriesExistFromStart(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	s := scrapeSeries(t, g)
	var have []string
	for k := range s {
		if strings.Contains(k, "endpoint=unknown") && strings.Contains(k, "backend=up,") {
			have = append(have, k)
		}
	}
	for _, code := range []string{"200", "404"} {
		k := "tollgate_requests_total{backend=up,code=" + code + ",endpoint=unknown,variant=none}"
		if _, ok := s[k]; !ok {
			t.Errorf("observed the by-ID label set with only %v before any call; expected %s at 0 from the start", have, k)
		}
	}
}

// A Responses call's max_output_tokens is its span's gen_ai.request.max_tokens, as a
// chat call's max_tokens is.
func TestResponsesSpanRecordsMaxOutputTokens(t *testing.T) {
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
	if r, body := respPost(t, g, "POST", "/v1/responses", "resp-span-max", `{"model":"chat","input":"hi","max_output_tokens":64,"temperature":0.5}`); r.StatusCode != 200 {
		t.Fatalf("POST /v1/responses: %d %s", r.StatusCode, body)
	}
	spans := requestSpans(t, g, exp, "resp-span-max")
	as := spans["chat up-model"]
	if len(as) != 1 {
		t.Fatalf("spans %v", spans)
	}
	ro := as[0].Snapshot()
	temp, _ := attr(ro, "gen_ai.request.temperature")
	if v, ok := attr(ro, "gen_ai.request.max_tokens"); !ok || v.AsInt64() != 64 {
		t.Errorf("observed gen_ai.request.max_tokens %v (present %v; gen_ai.request.temperature %v); expected 64, the request's max_output_tokens", v.Emit(), ok, temp.Emit())
	}
}

// With affinity by prefix, Responses calls sharing a long instructions (the Agents
// SDK's system prompt) with different inputs go to one replica, as chat calls sharing
// a system message do.
func TestResponsesAffinityHashesInstructions(t *testing.T) {
	t.Parallel()
	_, a := startResponsesUpstreamID(t, "resp_a")
	_, b := startResponsesUpstreamID(t, "resp_b")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+a+`/v1", "http://`+b+`/v1"], model: m, affinity: {by: prefix, bytes: 64, load_factor: 100}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
`)
	instr := strings.Repeat("You are a careful assistant for ACME support. ", 10)
	seen := map[string]int{}
	for i := range 16 {
		r, body := respPost(t, g, "POST", "/v1/responses", "aff-"+strconv.Itoa(i),
			`{"model":"chat","instructions":"`+instr+`","input":"question number `+strconv.Itoa(i*7919)+`"}`)
		if r.StatusCode != 200 || len(body) < 13 {
			t.Fatalf("POST /v1/responses: %d %s", r.StatusCode, body)
		}
		seen[body[7:13]]++ // {"id":"resp_a… or resp_b…
	}
	if len(seen) != 1 {
		t.Errorf("observed 16 calls with the same 460-byte instructions (affinity bytes: 64) spread over the replicas %v; expected all on one replica, their prompts sharing the first 64 bytes", seen)
	}
}
