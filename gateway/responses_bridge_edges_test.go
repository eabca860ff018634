package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// chatSSE writes chunks as a chat completions stream.
func chatSSE(w http.ResponseWriter, chunks ...string) {
	w.Header().Set("content-type", "text/event-stream")
	for _, c := range chunks {
		_, _ = io.WriteString(w, "data: "+c+"\n\n")
	}
}

// postResponsesHeaders posts body to /v1/responses with the extra headers and returns the answer
// read whole.
func postResponsesHeaders(t *testing.T, g *gw, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+"/v1/responses", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// A Responses call streamed from an azure deployment URL (bridged) names the model
// that answered, as the same call buffered does: Azure's chat streams open with a
// prompt_filter_results chunk whose model is "" (and choices []), which the response
// does not begin with.
func TestResponsesBridgeAzureStreamModel(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("content-type", "application/json")
			_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}],"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop","content_filter_results":{}}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}`)
			return
		}
		chatSSE(w,
			`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`,
			`{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`,
			`{"choices":[{"content_filter_results":{},"delta":{"content":"Hi"},"finish_reason":null,"index":0,"logprobs":null}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`,
			`{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`,
			`{"choices":[],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}`,
			"[DONE]")
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  az: {provider: azure, base_url: "`+srv.URL+`", deployment: gpt4o, api_version: "2024-10-21", model: gpt-4o, api_key: azkey, timeout: 5s}
endpoints:
  - {name: az, type: chat, routes: [{backend: az}]}
`)
	c := g.client()
	params := responses.ResponseNewParams{Model: "az", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}}
	buffered, err := c.Responses.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Responses.NewStreaming(context.Background(), params)
	var final responses.Response
	for s.Next() {
		if ev := s.Current(); ev.Type == "response.completed" {
			final = ev.Response
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if final.OutputText() != "Hi" {
		t.Fatalf("no completed response with the text: %s", final.RawJSON())
	}
	if final.Model != buffered.Model {
		t.Fatalf("streamed response.completed model: observed %q; expected %q, the model the deployment answered with (as the buffered response says)", final.Model, buffered.Model)
	}
}

// A Responses call with max_output_tokens on an azure deployment URL with an
// api-version before 2024-09-01 (GA 2024-06-01), which refuses max_completion_tokens
// ("Unrecognized request argument supplied"), is served: the bridge sends the cap as
// max_tokens, as a chat call's.
func TestResponsesBridgeMaxOutputTokensOldAzure(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		for _, arg := range []string{"max_completion_tokens", "stream_options"} {
			if r.URL.Query().Get("api-version") < "2024-09-01" && strings.Contains(string(body), `"`+arg+`"`) {
				w.WriteHeader(400)
				_, _ = io.WriteString(w, `{"error":{"message":"Unrecognized request argument supplied: `+arg+`","type":"invalid_request_error","param":null,"code":null}}`)
				return
			}
		}
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-05-13","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"length"}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}`)
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  az: {provider: azure, base_url: "`+srv.URL+`", deployment: gpt4o, api_version: "2024-06-01", model: gpt-4o, api_key: azkey, timeout: 5s}
endpoints:
  - {name: az, type: chat, routes: [{backend: az}]}
`)
	c := g.client()
	ctx := context.Background()
	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "az", Messages: userMsg("hi"), MaxTokens: openai.Int(2)}); err != nil {
		t.Fatalf("the chat call with the same cap: %v", err)
	}
	res, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "az", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}, MaxOutputTokens: openai.Int(2),
	})
	if err != nil {
		t.Fatalf("Responses call with max_output_tokens: observed %v; expected the deployment's answer cut at 2 tokens (status incomplete), as the chat call with max_tokens gets", err)
	}
	if res.Status != responses.ResponseStatusIncomplete {
		t.Fatalf("observed status %s; expected incomplete", res.Status)
	}
}

// On a bridged backend (responses_api: chat) with drop_params: [max_tokens,
// max_completion_tokens], a Responses call's max_output_tokens goes up as chat's cap
// and is dropped: the token limit is charged default_max_tokens, as a chat call naming
// the same cap is (README, token limits).
func TestResponsesBridgeDroppedCapEstimate(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Model: "tgi-model", MaxTokens: 8, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  tgi: {provider: openai, base_url: "http://`+addr+`/v1", model: tgi-model, responses_api: chat, timeout: 20s,
        drop_params: [max_tokens, max_completion_tokens]}
endpoints:
  - {name: chat, type: chat, routes: [{backend: tgi}], default_max_tokens: 5000, limits: [{per: endpoint, tokens: 100000, window: day}]}
  - {name: resp, type: chat, routes: [{backend: tgi}], default_max_tokens: 5000, limits: [{per: endpoint, tokens: 100000, window: day}]}
`)
	charged := func(resp *http.Response) int {
		n, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if err != nil {
			t.Fatalf("no x-ratelimit-remaining-tokens: %v", resp.Header)
		}
		return 100000 - n
	}
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":16}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if c := charged(resp); c < 5000 {
		t.Fatalf("the chat call, as the reference, was charged %d", c)
	}

	resp, b := postResponsesHeaders(t, g, `{"model":"resp","input":"hi","max_output_tokens":16}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if sent := string(mock.Stats().LastBody); strings.Contains(sent, "max_") {
		t.Fatalf("a cap reached the upstream after all: %s", sent)
	}
	if c := charged(resp); c < 5000 {
		t.Errorf("observed the bridged call charged %d tokens (max_output_tokens and the prompt), though no cap reached the upstream; "+
			"expected at least default_max_tokens (5000), as the chat call naming the same cap is charged", c)
	}
}

// A bridged backend's target answering 200 with a JSON object that is no chat
// completion (choices empty: a misrouted path, a proxy's own JSON) is judged by that
// invalid answer, as one answering HTML is: ejected after eject_after (README, Health),
// the bridge reading the answer before the attempt is judged.
func TestResponsesBridgeInvalidAnswerJudged(t *testing.T) {
	t.Parallel()
	var bad atomic.Int64
	addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
		body := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
		if strings.HasPrefix(req.URL.Path, "/bad/") {
			bad.Add(1)
			body = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}`
			if req.Header.Get("X-Fault") == "html" {
				body = `<html>bad gateway</html>`
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	})
	cfg := func(backend string) string {
		return `  ` + backend + `: {provider: openai, targets: ["http://` + addr + `/good/v1", "http://` + addr + `/bad/v1"], model: m, responses_api: chat, timeout: 5s, health: {eject_after: 1, eject_for: 60s}}
`
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
`+cfg("html")+cfg("nochoice")+`
endpoints:
  - {name: html, type: chat, routes: [{backend: html}], retries: 0}
  - {name: nochoice, type: chat, routes: [{backend: nochoice}], retries: 0}
`)
	run := func(model, fault string) (hits int64, codes []int) {
		bad.Store(0)
		for range 8 {
			resp, _ := postResponsesHeaders(t, g, `{"model":"`+model+`","input":"hi"}`, map[string]string{"X-Fault": fault})
			codes = append(codes, resp.StatusCode)
		}
		return bad.Load(), codes
	}
	// The reference: an HTML answer is invalid, and ejects its target at once.
	if hits, codes := run("html", "html"); hits != 1 {
		t.Fatalf("the HTML-answering target got %d of 8 calls (%v); expected 1", hits, codes)
	}
	if hits, codes := run("nochoice", ""); hits != 1 {
		t.Errorf("observed the target answering 200 with no chat completion get %d of 8 calls (%v); "+
			"expected it ejected after its first invalid answer (eject_after: 1), as for an HTML answer", hits, codes)
	}
}

// Thinking blocks an Anthropic model answered with, sent back in a reasoning item's
// encrypted_content, go only to a backend whose chat API takes them (the Anthropic
// translation's thinking_blocks): an OpenAI-compatible server behind the bridge gets
// the history without them, as the member may be refused there.
func TestResponsesBridgeThinkingOnlyToAnthropic(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Model: "tgi-model", MaxTokens: 8, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  tgi: {provider: openai, base_url: "http://`+addr+`/v1", model: tgi-model, responses_api: chat}
endpoints:
  - {name: tgi, type: chat, routes: [{backend: tgi}]}
`)
	blocks := base64.StdEncoding.EncodeToString([]byte(`[{"type":"thinking","thinking":"Let me look.","signature":"EqSig"}]`))
	resp, body := postResponsesHeaders(t, g, `{"model":"tgi","input":[`+
		`{"role":"user","content":"Weather in Paris?"},`+
		`{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"`+blocks+`"},`+
		`{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},`+
		`{"type":"function_call_output","call_id":"call_1","output":"18C"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	sent := string(mock.Stats().LastBody)
	if strings.Contains(sent, "thinking") || !strings.Contains(sent, `"tool_calls"`) || !strings.Contains(sent, `"tool_call_id":"call_1"`) {
		t.Fatalf("sent upstream: %s", sent)
	}
}

// Through the official SDK: a Responses call with tool_choice allowed_tools to a
// backend bridged to chat reaches the upstream with only the allowed function among its
// tools and chat's required, and its forced call comes back as the response's.
func TestResponsesBridgeAllowedTools(t *testing.T) {
	t.Parallel()
	sent := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case sent <- body:
		default:
		}
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}`)
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "`+srv.URL+`/v1", model: m, responses_api: chat, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	fn := func(name string) responses.ToolUnionParam {
		return responses.ToolUnionParam{OfFunction: &responses.FunctionToolParam{Name: name, Parameters: map[string]any{"type": "object"}}}
	}
	c := g.client()
	resp, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "chat",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("what time is it?")},
		Tools: []responses.ToolUnionParam{fn("get_weather"), fn("get_time")},
		ToolChoice: responses.ResponseNewParamsToolChoiceUnion{OfAllowedTools: &responses.ToolChoiceAllowedParam{
			Mode: responses.ToolChoiceAllowedModeRequired, Tools: []map[string]any{{"type": "function", "name": "get_time"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
		ToolChoice json.RawMessage `json:"tool_choice"`
	}
	body := <-sent
	if err := json.Unmarshal(body, &up); err != nil {
		t.Fatal(err)
	}
	if len(up.Tools) != 1 || up.Tools[0].Function.Name != "get_time" || string(up.ToolChoice) != `"required"` {
		t.Fatalf("upstream got tools %+v, tool_choice %s; want get_time alone, required: %s", up.Tools, up.ToolChoice, body)
	}
	if len(resp.Output) != 1 || resp.Output[0].Type != "function_call" || resp.Output[0].Name != "get_time" {
		t.Fatalf("response output %s, want the get_time call", resp.RawJSON())
	}
}
