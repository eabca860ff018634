package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// countParams is a Messages API request in a tool loop: a system prompt, a tool, a
// call of it and its result, as Claude Code counts its context.
func countParams() ([]anthropic.TextBlockParam, []anthropic.MessageParam, []anthropic.ToolUnionParam) {
	system := []anthropic.TextBlockParam{{Text: "You are a careful coding assistant. Use the tools you have."}}
	messages := []anthropic.MessageParam{
		anthropic.NewUserMessage(anthropic.NewTextBlock("Which files are in the repository?")),
		anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_01", map[string]any{"path": "."}, "list_files")),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_01", "go.mod\nmain.go\nREADME.md", false)),
	}
	tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
		Name: "list_files", Description: anthropic.String("Lists the files under a path."),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"path": map[string]any{"type": "string"}}},
	}}}
	return system, messages, tools
}

// The Anthropic SDK's count_tokens on a backend served through chat completions: the
// count is the upstream tokenizer's for the chat request the same body becomes
// (mockllm's /tokenize, vLLM's), so it equals the input_tokens of the message the
// same body then gets; it reaches the server's root /tokenize, and no token limit is
// charged for it (a request limit counts it).
func TestMessagesBridgeCountTokens(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	system, messages, tools := countParams()
	var resp *http.Response
	n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model: "tgi", System: anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: system},
		Messages: messages, Tools: []anthropic.MessageCountTokensToolUnionParam{{OfTool: tools[0].OfTool}},
	}, aoption.WithResponseInto(&resp), aoption.WithHeader("X-Request-Id", "count-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := msgRemaining(t, resp); got != 1000000 {
		t.Errorf("x-ratelimit-remaining-tokens %d after a token count; want 1000000 (nothing charged)", got)
	}
	st := up.Stats()
	if st.Requests["/tokenize"] != 1 || st.Requests["/v1/chat/completions"] != 0 || st.LastPath != "/tokenize" {
		t.Fatalf("upstream routes %v", st.Requests)
	}
	sent := string(st.LastBody)
	if !strings.HasPrefix(sent, `{"model":"tgi-up","messages":[{"role":"system","content":"You are a careful coding assistant.`) ||
		!strings.Contains(sent, `"tools":[{"type":"function","function":{"name":"list_files"`) || !strings.HasSuffix(sent, `,"add_generation_prompt":true}`) {
		t.Errorf("tokenize body %s", sent)
	}
	if line := accessLine(t, g, "count-1"); line["status"] != 200.0 || line["attempts"] != 1.0 {
		t.Errorf("access log %v", line)
	}

	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "tgi", MaxTokens: 8, System: system, Messages: messages, Tools: tools,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.InputTokens <= 0 || n.InputTokens != msg.Usage.InputTokens {
		t.Errorf("count_tokens %d, the message's input_tokens %d", n.InputTokens, msg.Usage.InputTokens)
	}
	// The count read what the chat call sent: its messages and tools, up to them.
	chat := string(up.Stats().LastBody)
	if prompt := strings.TrimSuffix(sent, `,"add_generation_prompt":true}`); !strings.HasPrefix(chat, prompt) {
		t.Errorf("the chat call does not begin with the counted prompt:\nchat  %s\ncount %s", chat, sent)
	}
}

// An upstream's refusal of a count comes back in the Messages API's shape, as a
// message call's does, its type by its status.
func TestMessagesBridgeCountTokensUpstreamErrors(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	params := anthropic.MessageCountTokensParams{Model: "tgi", Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	for _, tc := range []struct {
		status int
		typ    string
	}{
		{400, "invalid_request_error"},
		{503, "overloaded_error"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			_, err := c.Messages.CountTokens(context.Background(), params, aoption.WithHeader("x-mock-status", itoa(tc.status)))
			var ae *anthropic.Error
			if !errors.As(err, &ae) || ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || !strings.Contains(ae.RawJSON(), `"request_id":"`) {
				t.Fatalf("error %v", err)
			}
		})
	}
	if st := up.Stats(); st.Requests["/tokenize"] != 2 {
		t.Errorf("upstream routes %v", st.Requests)
	}
}

// A server with chat completions and no tokenizer (OpenAI's API, TGI, Ollama)
// answers /tokenize 404: the count is 400 unsupported_operation in the Messages API's
// shape, saying the upstream has no tokenizer, without a retry. The upstream was
// asked, so the attempt counts, as the upstream's 4xx; the target stays in service,
// and no "upstream failed" warning names a failure. An endpoint with a fallback whose
// server counts gets its count (through a backend of its own: gpt, found without a
// tokenizer, is not asked again for a while, TestCountTokensNoTokenizerRemembered).
func TestMessagesBridgeCountTokensNoTokenizer(t *testing.T) {
	counter, counterAddr := startMock(t, mockllm.Options{Model: "vllm-up", Seed: 3})
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		if string(ctx.Path()) != "/v1/chat/completions" {
			ctx.SetStatusCode(404)
			ctx.SetBodyString(`{"error":{"message":"Invalid URL (POST ` + string(ctx.Path()) + `)","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		ctx.SetBody(benchChatResp)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  gpt: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 5s, messages_api: chat}
  gpt-2: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 5s, messages_api: chat}
  vllm: {provider: openai, base_url: "http://`+counterAddr+`/v1", model: vllm-up, timeout: 5s, messages_api: chat}
endpoints:
  - {name: gpt, type: chat, routes: [{backend: gpt}], retries: 2}
  - {name: gpt-fb, type: chat, routes: [{backend: gpt-2}], retries: 2, fallbacks: [vllm]}
`)
	resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`, "X-Request-Id", "count-404")
	if resp.StatusCode != 400 || !strings.HasPrefix(body, `{"type":"error","error":{"type":"invalid_request_error","message":"This model is served through a chat completions API whose server has no tokenizer API`) ||
		!strings.Contains(body, `"request_id":"count-404"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	line := accessLine(t, g, "count-404")
	if line["error"] != "unsupported_operation" || line["attempts"] != 1.0 || line["backend"] != "gpt" {
		t.Errorf("access log error %v attempts %v backend %v; want unsupported_operation, 1 (no retry), gpt", line["error"], line["attempts"], line["backend"])
	}
	if n, sum := seriesWith(scrapeAdmin(t, g), "tollgate_upstream_attempts_total", "backend", "gpt", "outcome", "status_4xx"); n != 1 || sum != 1 {
		t.Errorf("attempts counted as status_4xx: %d series, %v", n, sum)
	}
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(l, "count-404") && strings.Contains(l, `"upstream failed"`) {
			t.Errorf("warning for an upstream that answered: %s", l)
		}
	}
	// The target served on: a message through the same backend is answered.
	if resp, body := msgPostTo(t, g, "/v1/messages", `{"model":"gpt","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Errorf("message after the count: %d %s", resp.StatusCode, body)
	}

	resp, body = msgPostTo(t, g, "/v1/messages/count_tokens", `{"model":"gpt-fb","messages":[{"role":"user","content":"hi"}]}`, "X-Request-Id", "count-fb")
	if resp.StatusCode != 200 || body != `{"input_tokens":1}` || resp.Header.Get("X-Tollgate-Backend") != "vllm" {
		t.Fatalf("with a fallback: %d %s (backend %s)", resp.StatusCode, body, resp.Header.Get("X-Tollgate-Backend"))
	}
	if line := accessLine(t, g, "count-fb"); line["attempts"] != 2.0 || line["backend"] != "vllm" {
		t.Errorf("access log attempts %v backend %v; want 2, vllm", line["attempts"], line["backend"])
	}
	if st := counter.Stats(); st.Requests["/tokenize"] != 1 {
		t.Errorf("fallback upstream routes %v", st.Requests)
	}
}
