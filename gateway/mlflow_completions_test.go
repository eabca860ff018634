package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/valyala/fasthttp"
)

// chatOnlyUpstream is an OpenAI-like upstream whose models are chat models: it answers
// chat completions (streamed or not) and refuses the legacy completions as OpenAI does
// for them. It records each request's path, api-key header and body.
type chatOnlyUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []upRequest
}

type upRequest struct {
	path, query, apiKey, authz string
	body                       map[string]any
}

const (
	chatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	chatStream = "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
		"data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
		"data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
		"data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n" +
		"data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
		"data: [DONE]\n\n"
)

func startChatOnlyUpstream(t *testing.T) *chatOnlyUpstream {
	u := &chatOnlyUpstream{}
	u.addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var body map[string]any
		_ = json.Unmarshal(ctx.PostBody(), &body)
		u.mu.Lock()
		u.reqs = append(u.reqs, upRequest{path: string(ctx.Path()), query: string(ctx.QueryArgs().QueryString()),
			apiKey: string(ctx.Request.Header.Peek("api-key")), authz: string(ctx.Request.Header.Peek("Authorization")), body: body})
		u.mu.Unlock()
		if !strings.HasSuffix(string(ctx.Path()), "/chat/completions") {
			ctx.SetStatusCode(404)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?","type":"invalid_request_error","param":"model","code":null}}`)
			return
		}
		if body["stream"] == true {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(chatStream)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(chatAnswer)
	})
	return u
}

// last is the last request the upstream got.
func (u *chatOnlyUpstream) last(t *testing.T) upRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *chatOnlyUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// TestMLflowCompletionsThroughChat: MLflow's openai provider (and azure, mistral) serves
// an llm/v1/completions endpoint through the upstream's chat completions, the prompt as
// one user message, and answers as a text_completion: MLflow's docs put completions
// endpoints on chat models (gpt-4o-mini), which OpenAI's legacy /v1/completions
// refuses. The invocation streams MLflow's text_completion_chunk (delta.content);
// Tollgate's /v1/completions, OpenAI's form (choices[].text); usage is counted.
func TestMLflowCompletionsThroughChat(t *testing.T) {
	up := startChatOnlyUpstream(t)
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: completions
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: sk-test
        openai_api_base: "http://`+up.addr+`/v1"
`)
	post := func(t *testing.T, path, id, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", g.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, raw
	}

	t.Run("invocation", func(t *testing.T) {
		resp, raw := post(t, "/endpoints/completions/invocations", "mlf-c-1", `{"prompt":"Say hello","max_tokens":5,"stop":["."],"temperature":0.5}`)
		var out struct {
			Object  string
			Choices []struct {
				Index        int
				Text         string
				FinishReason string `json:"finish_reason"`
			}
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		_ = json.Unmarshal(raw, &out)
		if resp.StatusCode != 200 || out.Object != "text_completion" || len(out.Choices) != 1 ||
			out.Choices[0].Text != "Hello there" || out.Choices[0].FinishReason != "stop" || out.Usage.CompletionTokens != 2 {
			t.Fatalf("%d %s; want 200 and a text_completion holding the chat answer", resp.StatusCode, raw)
		}
		r := up.last(t)
		msgs, _ := json.Marshal(r.body["messages"])
		if r.path != "/v1/chat/completions" || string(msgs) != `[{"content":"Say hello","role":"user"}]` ||
			r.body["prompt"] != nil || r.body["model"] != "gpt-4o-mini" || r.body["max_tokens"] != 5.0 || r.body["temperature"] != 0.5 {
			t.Fatalf("upstream got %s %v; want chat completions with the prompt as one user message and the other parameters as sent", r.path, r.body)
		}
		if line := afAccess(t, g, "mlf-c-1"); afNum(line, "input_tokens") != 3 || afNum(line, "output_tokens") != 2 {
			t.Fatalf("access log %v: want the chat answer's usage", line)
		}
	})

	t.Run("invocation stream", func(t *testing.T) {
		resp, raw := post(t, "/endpoints/completions/invocations", "mlf-c-2", `{"prompt":"Say hello","stream":true}`)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
		var text strings.Builder
		chunks := 0
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c struct {
				Object  string
				Choices []struct {
					Text  *string
					Delta struct{ Content *string }
				}
				Usage any
			}
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunk %s: %v", data, err)
			}
			if c.Object != "text_completion_chunk" || c.Usage != nil {
				t.Fatalf("chunk %s: want a text_completion_chunk, without the usage the gateway asked for", data)
			}
			for _, ch := range c.Choices {
				if (ch.Text == nil) != (ch.Delta.Content == nil) || ch.Text != nil && *ch.Text != *ch.Delta.Content {
					t.Fatalf("chunk %s: MLflow streams the text in text (newer) and delta.content (older)", data)
				}
				if ch.Delta.Content != nil {
					text.WriteString(*ch.Delta.Content)
				}
			}
			chunks++
		}
		if chunks != 4 || text.String() != "Hello there" || !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
			t.Fatalf("stream %q: want 4 chunks whose delta.content make \"Hello there\", then [DONE]", raw)
		}
		if r := up.last(t); r.path != "/v1/chat/completions" || r.body["stream_options"] == nil {
			t.Fatalf("upstream got %s %v: want a chat stream asked for usage", r.path, r.body)
		}
		if line := afAccess(t, g, "mlf-c-2"); afNum(line, "input_tokens") != 3 || afNum(line, "output_tokens") != 2 {
			t.Fatalf("access log %v: want the stream's usage", line)
		}
	})

	t.Run("openai route", func(t *testing.T) {
		c := g.client()
		cmp, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
			Model: "completions", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hello")}})
		if err != nil || len(cmp.Choices) != 1 || cmp.Choices[0].Text != "Hello there" || cmp.Usage.TotalTokens != 5 {
			t.Fatalf("completion %+v, %v", cmp, err)
		}
		stream := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
			Model: "completions", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"Say hello"}}})
		var text strings.Builder
		for stream.Next() {
			for _, ch := range stream.Current().Choices {
				text.WriteString(ch.Text)
			}
		}
		if err := stream.Err(); err != nil || text.String() != "Hello there" {
			t.Fatalf("streamed text %q, %v; want OpenAI's choices[].text to make \"Hello there\"", text.String(), err)
		}
	})

	t.Run("several prompts refused", func(t *testing.T) {
		n := up.count()
		resp, raw := post(t, "/v1/completions", "mlf-c-3", `{"model":"completions","prompt":["a","b"]}`)
		var e struct{ Error struct{ Param, Type string } }
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode != 400 || e.Error.Param != "prompt" || e.Error.Type != "invalid_request_error" || up.count() != n {
			t.Fatalf("%d %s: want 400 on param prompt, and no upstream request", resp.StatusCode, raw)
		}
	})
}

// TestMLflowCompletionsThroughChatProviders: azure sends the chat request to the
// deployment's chat completions; mistral halves the temperature, as MLflow's mistral
// provider does (MLflow's range is 0 to 2, Mistral's 0 to 1).
func TestMLflowCompletionsThroughChatProviders(t *testing.T) {
	up := startChatOnlyUpstream(t)
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: azure-completions
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: gpt-35-turbo
      config:
        openai_api_type: azure
        openai_api_key: az-key
        openai_api_base: "http://`+up.addr+`"
        openai_deployment_name: my-deployment
        openai_api_version: "2024-10-21"
  - name: mistral-completions
    endpoint_type: llm/v1/completions
    model:
      provider: mistral
      name: mistral-small-latest
      config:
        mistral_api_key: m-key
        mistral_api_base: "http://`+up.addr+`/v1"
`)
	for _, c := range []struct {
		endpoint, path, query, apiKey, authz string
		temperature                          float64
	}{
		{"azure-completions", "/openai/deployments/my-deployment/chat/completions", "api-version=2024-10-21", "az-key", "", 1.2},
		{"mistral-completions", "/v1/chat/completions", "", "", "Bearer m-key", 0.6},
	} {
		t.Run(c.endpoint, func(t *testing.T) {
			resp, err := http.Post(g.url+"/endpoints/"+c.endpoint+"/invocations", "application/json",
				strings.NewReader(`{"prompt":"Say hello","temperature":1.2}`))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(raw), `"text":"Hello there"`) {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			r := up.last(t)
			if r.path != c.path || r.query != c.query || r.apiKey != c.apiKey || r.authz != c.authz || r.body["temperature"] != c.temperature {
				t.Fatalf("upstream got %s?%s api-key %q Authorization %q temperature %v; want %s?%s %q %q %v",
					r.path, r.query, r.apiKey, r.authz, r.body["temperature"], c.path, c.query, c.apiKey, c.authz, c.temperature)
			}
		})
	}
}
