package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// completionsUpstreamLog records what a legacy completions upstream was sent.
type completionsUpstreamLog struct {
	mu    sync.Mutex
	paths []string
	body  [][]byte
}

func (r *completionsUpstreamLog) add(ctx *fasthttp.RequestCtx) {
	r.mu.Lock()
	r.paths = append(r.paths, string(ctx.Path()))
	r.body = append(r.body, append([]byte(nil), ctx.PostBody()...))
	r.mu.Unlock()
}

func (r *completionsUpstreamLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.body)
}

const (
	// legacyCompletionsStream is an OpenAI-compatible legacy completions stream
	// (Together, vLLM, TGI), usage last.
	legacyCompletionsStream = "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"mixtral\",\"choices\":[{\"index\":0,\"text\":\"Hello\",\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
		"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"mixtral\",\"choices\":[{\"index\":0,\"text\":\" there\",\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n" +
		"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"mixtral\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
		"data: [DONE]\n\n"
	// legacyCompletionsAnswer is the same completion, not streamed.
	legacyCompletionsAnswer = `{"id":"cmpl-2","object":"text_completion","created":1,"model":"mixtral","choices":[{"index":0,"text":"Hello there","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
)

// serveLegacyCompletions starts an upstream answering legacy completions, streamed
// (legacyCompletionsStream) or not (legacyCompletionsAnswer), recording each request.
func serveLegacyCompletions(t *testing.T, rec *completionsUpstreamLog) string {
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		rec.add(ctx)
		if bytes.Contains(ctx.PostBody(), []byte(`"stream":true`)) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(legacyCompletionsStream)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(legacyCompletionsAnswer)
	})
}

// legacyCompletionsGateway serves an llm/v1/completions endpoint on up for each MLflow
// provider the plain openai provider serves (legacy completions, not through chat),
// named as the provider.
func legacyCompletionsGateway(t *testing.T, up string) *gw {
	return startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: togetherai
    endpoint_type: llm/v1/completions
    model:
      provider: togetherai
      name: mixtral
      config:
        togetherai_api_key: tk-test-123456
        togetherai_api_base: "http://`+up+`/v1"
  - name: huggingface-text-generation-inference
    endpoint_type: llm/v1/completions
    model:
      provider: huggingface-text-generation-inference
      name: mixtral
      config:
        hf_server_url: "http://`+up+`"
  - name: mlflow-model-serving
    endpoint_type: llm/v1/completions
    model:
      provider: mlflow-model-serving
      name: mixtral
      config:
        model_server_url: "http://`+up+`/v1"
  - name: openai-compatible
    endpoint_type: llm/v1/completions
    model:
      provider: openai-compatible
      name: mixtral
      config:
        api_base: "http://`+up+`/v1"
`)
}

var legacyCompletionsProviders = []string{"togetherai", "huggingface-text-generation-inference", "mlflow-model-serving", "openai-compatible"}

// postJSON posts body to url and returns the answer's status and body.
func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// MLflow's invocation route streams an llm/v1/completions endpoint as MLflow's
// text_completion_chunk objects, the text in choices[].delta.content, whatever the
// provider: as Tollgate does for the providers it serves through chat (openai, azure,
// mistral; README, "streamed, the invocation route sends MLflow's
// text_completion_chunks"), so for those whose upstream streams OpenAI's legacy chunks
// (object text_completion, choices[].text), which an MLflow client reading
// delta.content would find empty.
func TestMLflowInvocationStreamsLegacyCompletionsAsMLflowChunks(t *testing.T) {
	var rec completionsUpstreamLog
	g := legacyCompletionsGateway(t, serveLegacyCompletions(t, &rec))
	for _, provider := range legacyCompletionsProviders {
		t.Run(provider, func(t *testing.T) {
			n := rec.count()
			status, raw := postJSON(t, g.url+"/endpoints/"+provider+"/invocations", `{"prompt":"Hi","max_tokens":5,"stream":true}`)
			if status != 200 {
				t.Fatalf("status %d %s", status, raw)
			}
			var text strings.Builder
			chunks := 0
			sc := bufio.NewScanner(bytes.NewReader(raw))
			for sc.Scan() {
				data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
				if !ok || string(data) == "[DONE]" {
					continue
				}
				var c struct {
					Object  string `json:"object"`
					Choices []struct {
						Text  *string `json:"text"`
						Delta *struct {
							Content *string `json:"content"`
						} `json:"delta"`
						FinishReason *string `json:"finish_reason"`
					} `json:"choices"`
				}
				if err := json.Unmarshal(data, &c); err != nil {
					t.Fatalf("chunk %s: %v", data, err)
				}
				chunks++
				if c.Object != "text_completion_chunk" {
					t.Errorf("chunk %s: object %q, want MLflow's text_completion_chunk", data, c.Object)
				}
				for _, ch := range c.Choices {
					// Newer MLflow reads text, older delta.content: both hold it.
					if ch.Text == nil || ch.Delta == nil || ch.Delta.Content == nil || *ch.Text != *ch.Delta.Content {
						t.Errorf("chunk %s: want the text in choices[].text and choices[].delta.content, MLflow's completions stream forms", data)
						continue
					}
					text.WriteString(*ch.Delta.Content)
				}
			}
			if chunks == 0 || text.String() != "Hello there" || !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
				t.Errorf("stream %q: %d chunks, delta.content %q; want the text \"Hello there\" in MLflow's form, then [DONE]", raw, chunks, text.String())
			}
			if rec.count() != n+1 {
				t.Fatalf("%d upstream requests, want 1", rec.count()-n)
			}
		})
	}
}

// The same endpoints answer an invocation that is not streamed with MLflow's
// completions ResponsePayload (object text_completion, choices[].index, text and
// finish_reason, usage), which is OpenAI's legacy answer: it passes as the upstream
// sent it. And Tollgate's /v1/completions streams OpenAI's chunks byte for byte as
// the upstream sent them: only the invocation route speaks MLflow's stream form.
func TestMLflowLegacyCompletionsAnswerAndOpenAIRoute(t *testing.T) {
	var rec completionsUpstreamLog
	g := legacyCompletionsGateway(t, serveLegacyCompletions(t, &rec))
	for _, provider := range legacyCompletionsProviders {
		t.Run(provider+" invocation", func(t *testing.T) {
			status, raw := postJSON(t, g.url+"/endpoints/"+provider+"/invocations", `{"prompt":"Hi","max_tokens":5}`)
			var out struct {
				Object  string
				Created *int64
				Model   string
				Choices []struct {
					Index        *int
					Text         *string
					FinishReason *string `json:"finish_reason"`
				}
				Usage struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				}
			}
			if err := json.Unmarshal(raw, &out); err != nil || status != 200 {
				t.Fatalf("%d %s: %v", status, raw, err)
			}
			if out.Object != "text_completion" || out.Created == nil || out.Model == "" || len(out.Choices) != 1 ||
				out.Choices[0].Index == nil || out.Choices[0].Text == nil || *out.Choices[0].Text != "Hello there" ||
				out.Choices[0].FinishReason == nil || out.Usage.TotalTokens != 5 || out.Usage.CompletionTokens != 2 {
				t.Fatalf("answer %s: want MLflow's completions response (text_completion, choices[].text, usage)", raw)
			}
			if string(raw) != legacyCompletionsAnswer {
				t.Fatalf("answer %s: want the upstream's %s as it is", raw, legacyCompletionsAnswer)
			}
		})
		t.Run(provider+" /v1/completions stream", func(t *testing.T) {
			status, raw := postJSON(t, g.url+"/v1/completions", `{"model":"`+provider+`","prompt":"Hi","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`)
			if status != 200 || string(raw) != legacyCompletionsStream {
				t.Fatalf("%d %q\nwant the upstream's stream byte for byte %q", status, raw, legacyCompletionsStream)
			}
		})
	}
}
