package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startUsageBridge is a gateway whose endpoints serve the Messages API through a
// mockllm's chat completions: ref, cont and cached on backend cont (stream usage on
// every chunk, the default), nocont on backend nocont (stream_usage_continuous:
// false).
func startUsageBridge(t *testing.T) (*gw, *mockllm.Server) {
	t.Helper()
	up, addr := startMock(t, mockllm.Options{Model: "vllm-up", MaxTokens: 12, Seed: 9})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  cont: {provider: openai, base_url: "http://`+addr+`/v1", model: vllm-up, timeout: 5s, messages_api: chat}
  nocont: {provider: openai, base_url: "http://`+addr+`/v1", model: vllm-up, timeout: 5s, messages_api: chat, stream_usage_continuous: false}
endpoints:
  - {name: ref, type: chat, routes: [{backend: cont}]}
  - {name: cont, type: chat, routes: [{backend: cont}]}
  - {name: cached, type: chat, routes: [{backend: cont}]}
  - {name: nocont, type: chat, routes: [{backend: nocont}]}
`)
	return g, up
}

// streamStart streams params through the SDK and returns message_start's usage, the
// message accumulated (its usage the final one, from message_delta) and the
// request's ID.
func streamStart(t *testing.T, c anthropic.Client, params anthropic.MessageNewParams, opts ...aoption.RequestOption) (anthropic.Usage, anthropic.Message, string) {
	t.Helper()
	var resp *http.Response
	s := c.Messages.NewStreaming(context.Background(), params, append(opts, aoption.WithResponseInto(&resp))...)
	var start anthropic.Usage
	var msg anthropic.Message
	starts := 0
	for s.Next() {
		ev := s.Current()
		if ev.Type == "message_start" {
			start = ev.Message.Usage
			starts++
		}
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if starts != 1 || resp == nil {
		t.Fatalf("%d message_start events, response %v", starts, resp)
	}
	return start, msg, resp.Header.Get("X-Request-Id")
}

// A bridged stream's message_start carries the prompt's tokens, as the same body's
// message does (LangChain's ChatAnthropic and LlamaIndex read them there): the chat
// stream asked for usage on every chunk, and message_start is written from the
// first chunk's. message_delta carries the final usage, the one the gateway counts
// (access log, tollgate_tokens_total), never a sum of the chunks'. With
// stream_usage_continuous false the upstream is not asked, and message_start says 0.
func TestMessagesBridgeStreamStartUsage(t *testing.T) {
	g, up := startUsageBridge(t)
	c := bridgeSDK(g)
	params := func(ep string) anthropic.MessageNewParams {
		return msgParams(ep, "Tell me how a gateway counts tokens.", 12)
	}
	ref, err := c.Messages.New(context.Background(), params("ref"))
	if err != nil {
		t.Fatal(err)
	}
	if ref.Usage.InputTokens <= 0 || ref.Usage.OutputTokens <= 1 || ref.Usage.CacheReadInputTokens != 0 {
		t.Fatalf("reference usage %+v", ref.Usage)
	}

	t.Run("usage on every chunk", func(t *testing.T) {
		start, msg, id := streamStart(t, c, params("cont"))
		if start.InputTokens != ref.Usage.InputTokens || start.OutputTokens != 0 || start.CacheReadInputTokens != 0 {
			t.Errorf("message_start usage: %d input, %d output, %d cache read; want %d input, as the message's",
				start.InputTokens, start.OutputTokens, start.CacheReadInputTokens, ref.Usage.InputTokens)
		}
		if msg.Usage.InputTokens != ref.Usage.InputTokens || msg.Usage.OutputTokens != ref.Usage.OutputTokens {
			t.Errorf("final usage %d in %d out, want %d in %d out", msg.Usage.InputTokens, msg.Usage.OutputTokens, ref.Usage.InputTokens, ref.Usage.OutputTokens)
		}
		if b := string(up.Stats().LastBody); !strings.Contains(b, `"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`) {
			t.Errorf("chat body %s", b)
		}
		line := accessLine(t, g, id)
		if line["input_tokens"] != float64(ref.Usage.InputTokens) || line["output_tokens"] != float64(ref.Usage.OutputTokens) || line["cached_input_tokens"] != 0.0 {
			t.Errorf("access log tokens %v in (%v cached), %v out; want %d, %d", line["input_tokens"], line["cached_input_tokens"], line["output_tokens"],
				ref.Usage.InputTokens, ref.Usage.OutputTokens)
		}
		if in, out := tokensCounted(t, g, "cont", "input"), tokensCounted(t, g, "cont", "output"); in != float64(ref.Usage.InputTokens) || out != float64(ref.Usage.OutputTokens) {
			t.Errorf("tollgate_tokens_total %v in, %v out; want %d, %d", in, out, ref.Usage.InputTokens, ref.Usage.OutputTokens)
		}
	})

	t.Run("prompt cache reads", func(t *testing.T) {
		// vLLM names the cache's reads in its usage chunk alone: message_start counts
		// the whole prompt as input, message_delta splits it as the message does.
		cached := aoption.WithHeader("x-mock-cached-tokens", "3")
		want, err := c.Messages.New(context.Background(), params("ref"), cached)
		if err != nil {
			t.Fatal(err)
		}
		if want.Usage.CacheReadInputTokens != 3 || want.Usage.InputTokens != ref.Usage.InputTokens-3 {
			t.Fatalf("message usage %+v", want.Usage)
		}
		start, msg, id := streamStart(t, c, params("cached"), cached)
		if start.InputTokens != ref.Usage.InputTokens || start.CacheReadInputTokens != 0 {
			t.Errorf("message_start usage: %d input, %d cache read; want %d, 0", start.InputTokens, start.CacheReadInputTokens, ref.Usage.InputTokens)
		}
		if msg.Usage.InputTokens != want.Usage.InputTokens || msg.Usage.CacheReadInputTokens != 3 || msg.Usage.OutputTokens != want.Usage.OutputTokens {
			t.Errorf("final usage %d in (%d cache read), %d out; want %d (3), %d", msg.Usage.InputTokens, msg.Usage.CacheReadInputTokens, msg.Usage.OutputTokens,
				want.Usage.InputTokens, want.Usage.OutputTokens)
		}
		line := accessLine(t, g, id)
		if line["input_tokens"] != float64(ref.Usage.InputTokens) || line["cached_input_tokens"] != 3.0 || line["output_tokens"] != float64(want.Usage.OutputTokens) {
			t.Errorf("access log tokens %v in (%v cached), %v out", line["input_tokens"], line["cached_input_tokens"], line["output_tokens"])
		}
	})

	t.Run("stream_usage_continuous false", func(t *testing.T) {
		start, msg, id := streamStart(t, c, params("nocont"))
		if start.InputTokens != 0 || start.OutputTokens != 0 {
			t.Errorf("message_start usage %d in, %d out; want 0", start.InputTokens, start.OutputTokens)
		}
		if msg.Usage.InputTokens != ref.Usage.InputTokens || msg.Usage.OutputTokens != ref.Usage.OutputTokens {
			t.Errorf("final usage %d in %d out, want %d in %d out", msg.Usage.InputTokens, msg.Usage.OutputTokens, ref.Usage.InputTokens, ref.Usage.OutputTokens)
		}
		b := string(up.Stats().LastBody)
		if strings.Contains(b, "continuous_usage_stats") || !strings.Contains(b, `"stream_options":{"include_usage":true}`) {
			t.Errorf("chat body %s", b)
		}
		line := accessLine(t, g, id)
		if line["input_tokens"] != float64(ref.Usage.InputTokens) || line["output_tokens"] != float64(ref.Usage.OutputTokens) {
			t.Errorf("access log tokens %v in, %v out", line["input_tokens"], line["output_tokens"])
		}
	})
}
