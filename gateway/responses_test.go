package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/tracing"
	"github.com/valyala/fasthttp"
)

// responsesUpstream answers POST /v1/responses as OpenAI does: a response object,
// or its stream of named events ending with response.completed (no [DONE]). A
// request's x-test-end header picks another ending for a stream: "cut" (the body
// ends after the first delta), "failed" (response.failed) or "incomplete".
type responsesUpstream struct {
	id string
	// echoPrev puts a call's previous_response_id in its response object.
	echoPrev atomic.Bool
	mu       sync.Mutex
	bodies   [][]byte
	paths    []string
}

func (u *responsesUpstream) calls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

func (u *responsesUpstream) last() (string, map[string]any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal(u.bodies[len(u.bodies)-1], &m)
	return u.paths[len(u.paths)-1], m
}

const respUsage = `{"input_tokens":11,"input_tokens_details":{"cached_tokens":3},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}`

func respObject(status, usage string) string { return respObjectID("resp_0123", status, usage) }

func respObjectID(id, status, usage string) string {
	return `{"id":"` + id + `","object":"response","created_at":1700000000,"status":"` + status +
		`","error":null,"incomplete_details":null,"model":"up-model-2025","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello there","annotations":[]}]}],"parallel_tool_calls":true,"service_tier":"default","store":true,"tool_choice":"auto","tools":[],"usage":` + usage + `}`
}

func startResponsesUpstream(t *testing.T) (*responsesUpstream, string) {
	return startResponsesUpstreamID(t, "resp_0123")
}

func startResponsesUpstreamID(t *testing.T, id string) (*responsesUpstream, string) {
	u := &responsesUpstream{id: id}
	respObject := func(status, usage string) string { return respObjectID(id, status, usage) }
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.bodies = append(u.bodies, append([]byte(nil), ctx.PostBody()...))
		u.paths = append(u.paths, string(ctx.Path()))
		u.mu.Unlock()
		if rest, ok := strings.CutPrefix(string(ctx.Path()), "/v1/responses/"); ok {
			id, sub, _ := strings.Cut(rest, "/")
			ctx.SetContentType("application/json")
			switch {
			case id != u.id:
				ctx.SetStatusCode(404)
				ctx.SetBodyString(`{"error":{"message":"Response with id '` + id + `' not found.","type":"invalid_request_error","param":null,"code":null}}`)
			case sub == "input_items":
				ctx.SetBodyString(`{"object":"list","data":[{"id":"msg_0","type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"first_id":"msg_0","last_id":"msg_0","has_more":false,"query":"` + string(ctx.URI().QueryString()) + `"}`)
			case sub == "cancel":
				ctx.SetStatusCode(400)
				ctx.SetBodyString(`{"error":{"message":"Only responses created with background=true can be cancelled.","type":"invalid_request_error","param":null,"code":null}}`)
			case string(ctx.Method()) == "DELETE":
				ctx.SetBodyString(`{"id":"` + id + `","object":"response","deleted":true}`)
			default:
				ctx.SetBodyString(respObject("completed", respUsage))
			}
			return
		}
		var req struct {
			Stream bool   `json:"stream"`
			Prev   string `json:"previous_response_id"`
		}
		_ = json.Unmarshal(ctx.PostBody(), &req)
		if req.Prev != "" && u.echoPrev.Load() {
			// Echoed in the response object, as OpenAI does.
			respObject = func(status, usage string) string {
				return strings.Replace(respObjectID(id, status, usage), `"object":"response",`, `"object":"response","previous_response_id":"`+req.Prev+`",`, 1)
			}
		}
		if !req.Stream {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(respObject("completed", respUsage))
			return
		}
		end := string(ctx.Request.Header.Peek("x-test-end"))
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			seq := 0
			ev := func(typ, rest string) {
				w.WriteString("event: " + typ + "\ndata: {\"type\":\"" + typ + "\",\"sequence_number\":" + strconv.Itoa(seq) + rest + "}\n\n")
				seq++
				w.Flush()
			}
			ev("response.created", `,"response":`+respObject("in_progress", "null"))
			ev("response.output_item.added", `,"output_index":0,"item":{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[]}`)
			ev("response.output_text.delta", `,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello"`)
			if end == "cut" {
				return
			}
			ev("response.output_text.delta", `,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there"`)
			switch end {
			case "failed":
				ev("response.failed", `,"response":`+strings.Replace(respObject("failed", "null"), `"error":null`, `"error":{"code":"server_error","message":"engine died"}`, 1))
			case "incomplete":
				ev("response.incomplete", `,"response":`+respObject("incomplete", respUsage))
			default:
				ev("response.output_text.done", `,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello there"`)
				ev("response.completed", `,"response":`+respObject("completed", respUsage))
			}
		})
	})
	return u, addr
}

// An application on the Responses API (the OpenAI SDKs' default for new code, the
// Agents SDK's) calls the gateway as it calls OpenAI: a chat endpoint serves it, the
// model is rewritten, usage counted and costed, streams passed through event by
// event with their names, and nothing of chat's framing ([DONE]) added.
func TestResponsesAPI(t *testing.T) {
	t.Parallel()
	up, addr := startResponsesUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, pricing: {input_per_million: 1000000, output_per_million: 2000000}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	c := g.client()
	ctx := context.Background()

	res, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
		MaxOutputTokens: openai.Int(64),
	}, option.WithHeader("X-Request-Id", "resp-buffered"))
	if err != nil {
		t.Fatal(err)
	}
	tag := responseTag("up", "http://"+addr+"/v1")
	if res.OutputText() != "Hello there" || res.Usage.InputTokens != 11 || res.Usage.OutputTokens != 2 || res.ID != "resp_0123"+tag {
		t.Fatalf("response %s %q usage %+v", res.ID, res.OutputText(), res.Usage)
	}
	path, body := up.last()
	if path != "/v1/responses" || body["model"] != "up-model" || body["input"] != "Say hello" || body["max_output_tokens"] != float64(64) {
		t.Fatalf("upstream got %s %v", path, body)
	}
	if _, ok := body["stream_options"]; ok {
		t.Fatalf("stream_options added to a Responses call: %v", body)
	}
	line := accessLine(t, g, "resp-buffered")
	if line["input_tokens"] != float64(11) || line["output_tokens"] != float64(2) || line["cached_input_tokens"] != float64(3) || line["status"] != float64(200) {
		t.Fatalf("access line %v", line)
	}
	if cost := line["cost_usd"].(float64); cost < 14.99 || cost > 15.01 {
		// 11 input tokens at $1 each (3 of them cached, priced as input without a
		// cache price) and 2 output at $2.
		t.Fatalf("cost %v, want 15", cost)
	}

	stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
	}, option.WithHeader("X-Request-Id", "resp-stream"))
	var types []string
	var text string
	var final responses.Response
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			text += ev.Delta
		case "response.completed":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := "response.created response.output_item.added response.output_text.delta response.output_text.delta response.output_text.done response.completed"
	if strings.Join(types, " ") != want || text != "Hello there" || final.Usage.OutputTokens != 2 {
		t.Fatalf("events %v text %q final usage %+v", types, text, final.Usage)
	}
	if _, body := up.last(); body["stream"] != true {
		t.Fatalf("upstream got %v", body)
	}
	if final.ID != "resp_0123"+tag {
		t.Fatalf("streamed response ID %s", final.ID)
	}

	// A follow-up names the tagged ID; the upstream gets its own.
	if _, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("And again")},
		PreviousResponseID: openai.String(res.ID),
	}); err != nil {
		t.Fatal(err)
	}
	if _, body := up.last(); body["previous_response_id"] != "resp_0123" || body["input"] != "And again" || body["model"] != "up-model" {
		t.Fatalf("follow-up upstream got %v", body)
	}
	line = accessLine(t, g, "resp-stream")
	if line["input_tokens"] != float64(11) || line["output_tokens"] != float64(2) || line["error"] != "" {
		t.Fatalf("stream access line %v", line)
	}
	if _, ok := line["ttft_ms"]; !ok {
		t.Fatalf("no ttft in %v", line)
	}

	// On the wire: each event keeps its name, and the stream ends with the
	// terminal event.
	raw := rawResponses(t, g, `{"model":"chat","input":"hi","stream":true}`, "")
	if !strings.Contains(raw, "event: response.created\ndata: {\"type\":\"response.created\"") ||
		!strings.HasSuffix(raw, "event: response.completed\ndata: "+`{"type":"response.completed","sequence_number":5,"response":`+respObjectID("resp_0123"+tag, "completed", respUsage)+"}\n\n") ||
		strings.Contains(raw, "[DONE]") {
		t.Fatalf("stream on the wire:\n%s", raw)
	}
}

// rawResponses posts body to /v1/responses and returns the answer's body.
func rawResponses(t *testing.T, g *gw, body, end string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if end != "" {
		req.Header.Set("x-test-end", end)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A Responses stream that ends otherwise: cut by the upstream (the client gets the
// gateway's error event and the request counts upstream_stream_cut), failed (the
// upstream's own response.failed, counted upstream_error), or incomplete (a whole
// stream, counted with its usage).
func TestResponsesStreamEndings(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	for _, c := range []struct {
		end, err, tail string
		output         float64
	}{
		{"cut", "upstream_stream_cut", `"code":"upstream_stream_cut"`, 0},
		{"failed", "upstream_error", "event: response.failed\n", 0},
		{"incomplete", "", "event: response.incomplete\n", 2},
	} {
		t.Run(c.end, func(t *testing.T) {
			id := "resp-" + c.end
			req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(`{"model":"chat","input":"hi","stream":true}`))
			req.Header.Set("x-test-end", c.end)
			req.Header.Set("X-Request-Id", id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(b, []byte(c.tail)) || bytes.Contains(b, []byte("[DONE]")) {
				t.Fatalf("stream:\n%s", b)
			}
			line := accessLine(t, g, id)
			if line["error"] != c.err {
				t.Fatalf("access line %v, want error %q", line, c.err)
			}
			if c.output > 0 && line["output_tokens"] != c.output {
				t.Fatalf("access line %v", line)
			}
		})
	}
}

// The Responses API is a chat endpoint's: an embeddings endpoint refuses it as it
// refuses a chat call, and backends without the API (Anthropic's Messages API,
// Azure's deployment URLs), which serve it through their chat API, refuse a follow-up
// of a stored response, before any upstream is called.
func TestResponsesRefused(t *testing.T) {
	t.Parallel()
	up, addr := startResponsesUpstream(t)
	g := startGateway(t, mockConfig(addr, `
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-x, api_key: k}
  az: {provider: azure, base_url: "http://`+addr+`", deployment: d, api_version: "2024-10-21", api_key: k, model: gpt-x}
`, `
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: az, type: chat, routes: [{backend: az}]}
`))
	for _, c := range []struct{ model, code, msg string }{
		{"embed", "model_not_supported", "call /v1/embeddings"},
		{"claude", "unsupported_operation", "stores no responses"},
		{"az", "unsupported_operation", "stores no responses"},
	} {
		body := `{"model":"` + c.model + `","input":"hi"}`
		if c.model != "embed" {
			// A backend without the Responses API serves it through its chat API
			// (TestResponsesBridge), which stores nothing to continue.
			body = `{"model":"` + c.model + `","input":"hi","previous_response_id":"resp_1"}`
		}
		req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), c.msg) || !strings.Contains(string(b), c.code) {
			t.Fatalf("%s: %d %s", c.model, resp.StatusCode, b)
		}
	}
	up.mu.Lock()
	n := len(up.bodies)
	up.mu.Unlock()
	if n != 0 {
		t.Fatalf("upstream called %d times", n)
	}
}

// A response is stored by the replica that made it (vLLM keeps it in its process): a
// call continuing it (previous_response_id) goes to that replica, whatever the
// balance or the caller's A/B bucket would pick, and an ID the gateway did not tag
// goes as planned, as the client wrote it.
func TestResponsesFollowUpsReachTheirReplica(t *testing.T) {
	t.Parallel()
	ups := map[string]*responsesUpstream{}
	var addrs []string
	for _, id := range []string{"resp_a", "resp_b", "resp_c"} {
		u, addr := startResponsesUpstreamID(t, id)
		ups[id] = u
		addrs = append(addrs, addr)
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+addrs[0]+`/v1", "http://`+addrs[1]+`/v1"], model: m, balance: round_robin}
  other: {provider: openai, base_url: "http://`+addrs[2]+`/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes:
      - {backend: pool, variant: a, weight: 50}
      - {backend: other, variant: b, weight: 50}
`)
	c := g.client()
	ctx := context.Background()
	seen := map[string]bool{}
	for range 40 {
		res, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		if err != nil {
			t.Fatal(err)
		}
		orig, _, ok := strings.Cut(res.ID, "-tg")
		if !ok {
			t.Fatalf("untagged ID %s", res.ID)
		}
		seen[orig] = true
		before := ups[orig].calls()
		if _, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("more")},
			PreviousResponseID: openai.String(res.ID),
		}); err != nil {
			t.Fatal(err)
		}
		if ups[orig].calls() != before+1 {
			t.Fatalf("follow-up of %s went elsewhere", res.ID)
		}
		if _, body := ups[orig].last(); body["previous_response_id"] != orig {
			t.Fatalf("follow-up of %s sent %v", res.ID, body["previous_response_id"])
		}
	}
	if len(seen) != 3 {
		t.Fatalf("responses came from %v only", seen)
	}
	// An ID the gateway did not make goes untouched.
	raw := rawResponses(t, g, `{"model":"chat","input":"x","previous_response_id":"resp_zz-tg0123456789ab"}`, "")
	if !strings.Contains(raw, "Hello there") {
		t.Fatalf("answer %s", raw)
	}
	found := false
	for _, u := range ups {
		if u.calls() > 0 {
			if _, body := u.last(); body["previous_response_id"] == "resp_zz-tg0123456789ab" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("foreign ID not sent as written")
	}
}

// The calls on a stored response (get, delete, cancel, its input items) go to the
// replica that stored it, by the tag of the ID the gateway returned; an ID it cannot
// place, or one whose backend the caller's key may not reach, is not found.
func TestResponsesByID(t *testing.T) {
	t.Parallel()
	upA, addrA := startResponsesUpstreamID(t, "resp_a")
	upB, addrB := startResponsesUpstreamID(t, "resp_b")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: all, key: sk-all}
    - {name: other, key: sk-other, endpoints: [other]}
backends:
  pool: {provider: openai, targets: ["http://`+addrA+`/v1", "http://`+addrB+`/v1"], model: m, balance: round_robin}
  o: {provider: openai, base_url: "http://`+addrA+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
  - {name: other, type: chat, routes: [{backend: o}]}
`)
	c := g.client(option.WithAPIKey("sk-all"))
	ctx := context.Background()
	ids := map[string]string{}
	for range 4 {
		res, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		if err != nil {
			t.Fatal(err)
		}
		orig, _, _ := strings.Cut(res.ID, "-tg")
		ids[orig] = res.ID
	}
	if len(ids) != 2 {
		t.Fatalf("ids %v", ids)
	}
	for orig, id := range ids {
		up := upA
		if orig == "resp_b" {
			up = upB
		}
		got, err := c.Responses.Get(ctx, id, responses.ResponseGetParams{})
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != id || got.OutputText() != "Hello there" {
			t.Fatalf("get %s: %s %q", id, got.ID, got.OutputText())
		}
		if path, _ := up.last(); path != "/v1/responses/"+orig {
			t.Fatalf("get %s went to %s", id, path)
		}
		items, err := c.Responses.InputItems.List(ctx, id, responses.InputItemListParams{Limit: openai.Int(5)})
		if err != nil {
			t.Fatal(err)
		}
		if len(items.Data) != 1 || !strings.Contains(items.RawJSON(), `"query":"limit=5"`) {
			t.Fatalf("input items %s", items.RawJSON())
		}
		var ae *openai.Error
		if _, err := c.Responses.Cancel(ctx, id); !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "background=true") {
			t.Fatalf("cancel: %v", err)
		}
		req, _ := http.NewRequest("DELETE", g.url+"/v1/responses/"+id, nil)
		req.Header.Set("Authorization", "Bearer sk-all")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `{"id":"`+id+`","object":"response","deleted":true}` {
			t.Fatalf("delete: %d %s", resp.StatusCode, b)
		}
	}
	// Not the gateway's, no longer in its config, or not the key's.
	for _, c := range []struct{ key, id string }{
		{"sk-all", "resp_a"},
		{"sk-all", "resp_a-tg0123456789ab"},
		{"sk-other", ids["resp_a"]},
	} {
		kc := g.client(option.WithAPIKey(c.key))
		_, err := kc.Responses.Get(ctx, c.id, responses.ResponseGetParams{})
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 404 || !strings.Contains(ae.Message, "not found") {
			t.Fatalf("%s with %s: %v", c.id, c.key, err)
		}
	}
	// A method is taken whole: "ET" is no GET.
	for _, m := range []string{"PUT", "ET", "DEL"} {
		req, _ := http.NewRequest(m, g.url+"/v1/responses/"+ids["resp_a"], nil)
		req.Header.Set("Authorization", "Bearer sk-all")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, DELETE" {
			t.Fatalf("%s: %d %v", m, resp.StatusCode, resp.Header)
		}
	}
}

// A Responses call is a chat operation in its spans, finished by its response's
// status, its text captured from the response or its stream's deltas; its token
// estimate bounds the answer by max_output_tokens, the endpoint's default without.
func TestResponsesSpansAndLimits(t *testing.T) {
	t.Parallel()
	_, addr := startResponsesUpstream(t)
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    default_max_tokens: 700
    limits: [{per: endpoint, tokens: 100000, window: minute}]
tracing: {exporter: otlp-grpc, sample_ratio: 1, capture_content: true}
logging: {level: info, format: json}
`)
	for _, c := range []struct {
		id, body string
		est      int
		status   string
	}{
		{"sp-buffered", `{"model":"chat","input":"hi","max_output_tokens":5000}`, 5000, "completed"},
		{"sp-stream", `{"model":"chat","input":"hi","stream":true}`, 700, "completed"},
		{"sp-incomplete", `{"model":"chat","input":"hi","stream":true,"max_output_tokens":3}`, 3, "incomplete"},
	} {
		req, _ := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(c.body))
		req.Header.Set("X-Request-Id", c.id)
		if c.status == "incomplete" {
			req.Header.Set("x-test-end", "incomplete")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if err != nil {
			t.Fatal(err)
		}
		// What earlier requests used (13 tokens each) is spent too.
		if used := 100000 - rem; used < c.est || used > c.est+50 {
			t.Fatalf("%s: %d tokens taken, want the estimate %d and a few", c.id, used, c.est)
		}
		spans := requestSpans(t, g, exp, c.id)
		as := spans["chat up-model"]
		if len(as) != 1 {
			t.Fatalf("%s: spans %v", c.id, spans)
		}
		ro := as[0].Snapshot()
		for key, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.response.model": "up-model-2025", "gen_ai.response.id": "resp_0123"} {
			if v, _ := attr(ro, key); v.AsString() != want {
				t.Errorf("%s: %s = %q, want %q", c.id, key, v.AsString(), want)
			}
		}
		if v, _ := attr(ro, "gen_ai.response.finish_reasons"); strings.Join(v.AsStringSlice(), ",") != c.status {
			t.Errorf("%s: finish reasons %v", c.id, v.AsStringSlice())
		}
		if v, _ := attr(ro, "gen_ai.usage.output_tokens"); v.AsInt64() != 2 {
			t.Errorf("%s: output tokens %v", c.id, v)
		}
		if evs := events(as[0]); evs[tracing.EventCompletion].AsString() != "Hello there" {
			t.Errorf("%s: completion %v", c.id, evs)
		}
		if v, _ := attr(spans["POST /v1/responses"][0].Snapshot(), "http.route"); v.AsString() != "/v1/responses" {
			t.Errorf("%s: route %v", c.id, v)
		}
	}
}
