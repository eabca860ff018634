package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/valyala/fasthttp"
)

// A completions endpoint served through the upstream's chat completions (MLflow's
// openai, azure and mistral providers) turns each chat choice into a text_completion
// choice. A chat model's refusal (message.refusal or delta.refusal, content null) is
// the text the model generated and was billed for: it is the completion's text, not
// an empty answer a client cannot tell from a model that said nothing.
func TestCompletionsThroughChatKeepRefusal(t *testing.T) {
	const refusal = "I'm sorry, I can't help with that."
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var body map[string]any
		_ = json.Unmarshal(ctx.PostBody(), &body)
		if body["stream"] == true {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"finish_reason\":null}]}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"" + refusal + "\"},\"finish_reason\":null}]}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9,\"total_tokens\":12}}\n\n" +
				"data: [DONE]\n\n")
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"` + refusal + `"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}`)
	})
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: completions
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: sk-test-123456789
        openai_api_base: "http://`+up+`/v1"
`)
	c := g.client()
	prompt := openai.CompletionNewParamsPromptUnion{OfString: openai.String("Write something forbidden")}

	cmp, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: "completions", Prompt: prompt})
	if err != nil || len(cmp.Choices) != 1 {
		t.Fatalf("completion %v, %v", cmp, err)
	}
	if cmp.Choices[0].Text != refusal {
		t.Errorf("non-streamed: text %q (answer %s); want the model's refusal %q, which the 9 completion tokens paid for",
			cmp.Choices[0].Text, cmp.RawJSON(), refusal)
	}

	s := c.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{Model: "completions", Prompt: prompt})
	var text strings.Builder
	for s.Next() {
		for _, ch := range s.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != refusal {
		t.Errorf("streamed: text %q; want the model's refusal %q", text.String(), refusal)
	}
}
