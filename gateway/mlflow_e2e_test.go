package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestMLflowEndToEnd serves an MLflow AI Gateway config (OpenAI-compatible and
// Anthropic upstreams) and calls it on MLflow's routes and on the OpenAI ones.
func TestMLflowEndToEnd(t *testing.T) {
	_, oaddr := startMock(t, mockllm.Options{Model: "gpt-4o-mini", MaxTokens: 8, EmbeddingDim: 4})
	_, aaddr := startMock(t, mockllm.Options{Model: "claude-3-5-haiku-latest", API: "anthropic", MaxTokens: 8, APIKey: "sk-ant"})
	cfg := `
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: $OKEY, openai_api_base: "http://` + oaddr + `/v1"}}
    limit: {renewal_period: minute, calls: 1000}
  - name: completions
    endpoint_type: llm/v1/completions
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: $OKEY, openai_api_base: "http://` + oaddr + `/v1"}}
  - name: embeddings
    endpoint_type: llm/v1/embeddings
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: $OKEY, openai_api_base: "http://` + oaddr + `/v1"}}
  - name: claude
    endpoint_type: llm/v1/chat
    model: {provider: anthropic, name: claude-3-5-haiku-latest, config: {anthropic_api_key: $AKEY, anthropic_api_base: "http://` + aaddr + `/v1"}}
`
	t.Setenv("OKEY", "sk-o")
	t.Setenv("AKEY", "sk-ant")
	// Tollgate's own server section may sit beside MLflow's endpoints: here it moves
	// the listeners to free ports.
	g := startGateway(t, strings.Replace(cfg, "endpoints:", "server: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}\nendpoints:", 1))

	post := func(path, body string) (int, map[string]any) {
		resp, err := http.Post(g.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: not JSON: %s", path, raw)
		}
		return resp.StatusCode, out
	}
	cases := []struct{ path, body, object string }{
		{"/endpoints/chat/invocations", `{"messages":[{"role":"user","content":"hi"}],"temperature":0.1}`, "chat.completion"},
		{"/endpoints/completions/invocations", `{"prompt":"Once","max_tokens":4}`, "text_completion"},
		{"/endpoints/embeddings/invocations", `{"input":["a","b"]}`, "list"},
		{"/endpoints/claude/invocations", `{"messages":[{"role":"user","content":"hi"}]}`, "chat.completion"},
		{"/gateway/chat/invocations", `{"messages":[{"role":"user","content":"hi"}]}`, "chat.completion"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			code, out := post(c.path, c.body)
			if code != 200 || out["object"] != c.object {
				t.Fatalf("%d %v", code, out)
			}
		})
	}
	if code, _ := post("/endpoints/nope/invocations", `{}`); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
	if code, _ := post("/endpoints/chat/invocations", `{"model":"x","messages":[]}`); code != 400 {
		t.Fatalf("model in an invocation: %d", code)
	}

	resp, err := http.Get(g.url + "/api/2.0/endpoints/")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Endpoints []struct {
			Name, EndpointType, EndpointURL string
			Model                           struct{ Name, Provider string }
			Limit                           *struct {
				Calls         int
				RenewalPeriod string `json:"renewal_period"`
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Endpoints) != 4 || list.Endpoints[0].Limit == nil || list.Endpoints[0].Limit.Calls != 1000 || list.Endpoints[3].Model.Provider != "anthropic" {
		t.Fatalf("listing = %+v", list)
	}

	// The same endpoints on the OpenAI routes, Anthropic streamed through the SDK.
	c := g.client()
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi")})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil || acc.Choices[0].Message.Content == "" {
		t.Fatalf("anthropic stream through the SDK: %v %+v", err, acc.Choices)
	}
	plain, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("hi")})
	if err != nil || plain.Choices[0].Message.Content != acc.Choices[0].Message.Content {
		t.Fatalf("anthropic non-stream %v differs from stream: %q vs %q", err, plain.Choices[0].Message.Content, acc.Choices[0].Message.Content)
	}
}
