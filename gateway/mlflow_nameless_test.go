package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestMLflowNamelessLoads: an endpoint without model.name loads on every provider, as
// MLflow loads it, its calls going without a model (MLflow sends "model": null, which
// an OpenAI-style server reads as none); anthropic's with "model": "", the member
// its Messages API requires. MLflow lists the model's name as null. Where the
// upstream is the provider's own API, which refuses such calls, the config earns a
// warning naming the key; another upstream (a server of one model) none.
func TestMLflowNamelessLoads(t *testing.T) {
	conf := `endpoints:
  - name: openai
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      config: {openai_api_key: k}
  - name: anthropic
    endpoint_type: llm/v1/chat
    model:
      provider: anthropic
      config: {anthropic_api_key: k}
  - name: mistral
    endpoint_type: llm/v1/completions
    model:
      provider: mistral
      config: {mistral_api_key: k}
  - name: together
    endpoint_type: llm/v1/embeddings
    model:
      provider: togetherai
      config: {togetherai_api_key: k}
  - name: azure-openai-type
    endpoint_type: llm/v1/chat
    model:
      provider: azure
      config: {openai_api_key: k, openai_api_type: openai}
  - name: vllm
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      config: {openai_api_key: k, openai_api_base: "http://127.0.0.1:8000/v1"}
  - name: own
    endpoint_type: llm/v1/chat
    model:
      provider: openai-compatible
      config: {api_base: "http://127.0.0.1:8000/v1"}
  - name: claude-proxy
    endpoint_type: llm/v1/chat
    model:
      provider: anthropic
      config: {anthropic_api_key: k, anthropic_api_base: "http://127.0.0.1:8001/v1"}
`
	cfg, err := ParseConfig("ml.yaml", []byte(conf), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct{ provider, baseURL string }{
		"openai":            {"openai", "https://api.openai.com/v1"},
		"anthropic":         {"anthropic", "https://api.anthropic.com/v1"},
		"mistral":           {"openai", "https://api.mistral.ai/v1"},
		"together":          {"openai", "https://api.together.xyz/v1"},
		"azure-openai-type": {"openai", "https://api.openai.com/v1"},
		"vllm":              {"openai", "http://127.0.0.1:8000/v1"},
		"own":               {"openai", "http://127.0.0.1:8000/v1"},
		"claude-proxy":      {"anthropic", "http://127.0.0.1:8001/v1"},
	} {
		b := cfg.Backends[name]
		if b.Model != "" || !b.NoModel || b.Provider != want.provider || b.BaseURL != want.baseURL {
			t.Errorf("backend %s: provider %s, base %s, model %q, NoModel %v; want %s, %s, no model",
				name, b.Provider, b.BaseURL, b.Model, b.NoModel, want.provider, want.baseURL)
		}
	}
	if got, want := string(appendMLflowEndpoint(nil, &cfg.Endpoints[0], cfg)), `"model":{"name":null,"provider":"openai"}`; !strings.Contains(got, want) {
		t.Errorf("listing %s, want %s", got, want)
	}

	path := filepath.Join(t.TempDir(), "ml.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	warnings, err := CheckConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, at := range []string{"4: endpoints[0]", "9: endpoints[1]", "14: endpoints[2]", "19: endpoints[3]", "24: endpoints[4]"} {
		want = append(want, path+":"+at+".model.name: warning: "+warnMLflowNameless)
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}

// namelessUpstream records what it gets and answers each API's call; under /hosted
// it refuses a call without a model, as OpenAI's and Anthropic's APIs do.
type namelessUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []upRequest
}

const (
	namelessRefusal          = "you must provide a model parameter"
	namelessAnthropicRefusal = "model: String should have at least 1 character"
)

func startNamelessUpstream(t *testing.T) *namelessUpstream {
	u := &namelessUpstream{}
	u.addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var body map[string]any
		_ = json.Unmarshal(ctx.PostBody(), &body)
		path := string(ctx.Path())
		u.mu.Lock()
		u.reqs = append(u.reqs, upRequest{path: path, body: body})
		u.mu.Unlock()
		messages := strings.HasSuffix(path, "/messages")
		ctx.SetContentType("application/json")
		if model, _ := body["model"].(string); strings.HasPrefix(path, "/hosted/") && model == "" {
			ctx.SetStatusCode(400)
			if messages {
				ctx.SetBodyString(`{"type":"error","error":{"type":"invalid_request_error","message":"` + namelessAnthropicRefusal + `"}}`)
			} else {
				ctx.SetBodyString(`{"error":{"message":"` + namelessRefusal + `","type":"invalid_request_error","param":null,"code":null}}`)
			}
			return
		}
		switch {
		case messages:
			ctx.SetBodyString(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-served","content":[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)
		case strings.HasSuffix(path, "/chat/completions") && body["stream"] == true:
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(chatStream)
		case strings.HasSuffix(path, "/chat/completions"):
			ctx.SetBodyString(chatAnswer)
		case strings.HasSuffix(path, "/completions"):
			ctx.SetBodyString(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"served","choices":[{"index":0,"text":"Hello there","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
		case strings.HasSuffix(path, "/embeddings"):
			ctx.SetBodyString(`{"object":"list","data":[{"object":"embedding","embedding":[0.5,0.25],"index":0}],"model":"served","usage":{"prompt_tokens":2,"total_tokens":2}}`)
		default:
			ctx.SetStatusCode(404)
		}
	})
	return u
}

func (u *namelessUpstream) last(t *testing.T) upRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// TestMLflowNamelessUpstream: the calls of an endpoint without model.name go up
// without a model on providers openai, mistral and togetherai (chat, completions,
// which openai and mistral send to chat, and embeddings), through MLflow's
// invocation route and Tollgate's OpenAI route alike, and with "model": "" on
// anthropic. A server of one model answers them; the provider's own API refuses
// them, and its answer reaches the client.
func TestMLflowNamelessUpstream(t *testing.T) {
	up := startNamelessUpstream(t)
	base := "http://" + up.addr
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: openai-chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, config: {openai_api_key: k, openai_api_base: "`+base+`/v1"}}
  - name: openai-completions
    endpoint_type: llm/v1/completions
    model: {provider: openai, config: {openai_api_key: k, openai_api_base: "`+base+`/v1"}}
  - name: openai-embeddings
    endpoint_type: llm/v1/embeddings
    model: {provider: openai, config: {openai_api_key: k, openai_api_base: "`+base+`/v1"}}
  - name: mistral-chat
    endpoint_type: llm/v1/chat
    model: {provider: mistral, config: {mistral_api_key: k, mistral_api_base: "`+base+`/v1"}}
  - name: mistral-completions
    endpoint_type: llm/v1/completions
    model: {provider: mistral, config: {mistral_api_key: k, mistral_api_base: "`+base+`/v1"}}
  - name: together-chat
    endpoint_type: llm/v1/chat
    model: {provider: togetherai, config: {togetherai_api_key: k, togetherai_api_base: "`+base+`/v1"}}
  - name: together-completions
    endpoint_type: llm/v1/completions
    model: {provider: togetherai, config: {togetherai_api_key: k, togetherai_api_base: "`+base+`/v1"}}
  - name: together-embeddings
    endpoint_type: llm/v1/embeddings
    model: {provider: togetherai, config: {togetherai_api_key: k, togetherai_api_base: "`+base+`/v1"}}
  - name: anthropic-chat
    endpoint_type: llm/v1/chat
    model: {provider: anthropic, config: {anthropic_api_key: k, anthropic_api_base: "`+base+`/v1"}}
  - name: openai-hosted
    endpoint_type: llm/v1/chat
    model: {provider: openai, config: {openai_api_key: k, openai_api_base: "`+base+`/hosted/v1"}}
  - name: anthropic-hosted
    endpoint_type: llm/v1/chat
    model: {provider: anthropic, config: {anthropic_api_key: k, anthropic_api_base: "`+base+`/hosted/v1"}}
`)
	const (
		chat        = `{"messages":[{"role":"user","content":"hi"}]}`
		completions = `{"prompt":"hi","max_tokens":8}`
		embeddings  = `{"input":"hi"}`
	)
	for _, c := range []struct {
		name, route, body string
		status            int
		path              string
		// model is the model member the upstream gets: nil for none.
		model any
		// answer is a part of the answer the client gets.
		answer string
	}{
		{"openai chat", "/endpoints/openai-chat/invocations", chat, 200, "/v1/chat/completions", nil, "Hello there"},
		{"openai chat, OpenAI route", "/v1/chat/completions", `{"model":"openai-chat","messages":[{"role":"user","content":"hi"}]}`, 200, "/v1/chat/completions", nil, "Hello there"},
		{"openai chat streamed", "/endpoints/openai-chat/invocations", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`, 200, "/v1/chat/completions", nil, "[DONE]"},
		{"openai completions through chat", "/endpoints/openai-completions/invocations", completions, 200, "/v1/chat/completions", nil, "Hello there"},
		{"openai embeddings", "/endpoints/openai-embeddings/invocations", embeddings, 200, "/v1/embeddings", nil, "0.25"},
		{"mistral chat", "/endpoints/mistral-chat/invocations", chat, 200, "/v1/chat/completions", nil, "Hello there"},
		{"mistral completions through chat", "/endpoints/mistral-completions/invocations", completions, 200, "/v1/chat/completions", nil, "Hello there"},
		{"togetherai chat", "/endpoints/together-chat/invocations", chat, 200, "/v1/chat/completions", nil, "Hello there"},
		{"togetherai completions", "/endpoints/together-completions/invocations", completions, 200, "/v1/completions", nil, "Hello there"},
		{"togetherai embeddings", "/endpoints/together-embeddings/invocations", embeddings, 200, "/v1/embeddings", nil, "0.25"},
		{"anthropic chat", "/endpoints/anthropic-chat/invocations", chat, 200, "/v1/messages", "", "Hello there"},
		{"openai's API refuses", "/endpoints/openai-hosted/invocations", chat, 400, "/hosted/v1/chat/completions", nil, namelessRefusal},
		{"anthropic's API refuses", "/endpoints/anthropic-hosted/invocations", chat, 400, "/hosted/v1/messages", "", namelessAnthropicRefusal},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Post(g.url+c.route, "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(raw), c.answer) {
				t.Fatalf("%d %s; want %d with %q", resp.StatusCode, raw, c.status, c.answer)
			}
			r := up.last(t)
			model, has := r.body["model"]
			if r.path != c.path || r.body == nil || has != (c.model != nil) || has && model != c.model {
				t.Fatalf("upstream got %s %v; want %s with model %#v", r.path, r.body, c.path, c.model)
			}
		})
	}
}
