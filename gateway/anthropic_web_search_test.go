package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestAnthropicWebSearchThroughGateway sends OpenAI's web_search_options through the
// gateway to mockllm --api anthropic with the OpenAI SDK as the client, buffered and
// streamed: the upstream gets its web search tool and searches (mockllm refuses a tool
// the API would refuse), and the client gets the text with url_citation annotations
// over the cited text in code points, in message.annotations or as an annotations
// delta when the cited block ends. The answer sent back as the SDK gave it,
// annotations and all, is answered again; a web_search_options the translation cannot
// read is a 400 naming it that never reaches the upstream.
func TestAnthropicWebSearchThroughGateway(t *testing.T) {
	mock, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 32, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
`)
	c := g.client()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "claude",
		Messages: userMsg("What changed in Zürich today?"),
		WebSearchOptions: openai.ChatCompletionNewParamsWebSearchOptions{
			SearchContextSize: "medium",
			UserLocation: openai.ChatCompletionNewParamsWebSearchOptionsUserLocation{
				Approximate: openai.ChatCompletionNewParamsWebSearchOptionsUserLocationApproximate{
					City: openai.String("Zürich"), Country: openai.String("CH"),
				},
			},
		},
	}

	cc, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	var sent struct{ Tools []map[string]any }
	if err := json.Unmarshal(mock.Stats().LastBody, &sent); err != nil || len(sent.Tools) != 1 || sent.Tools[0]["max_uses"] != 5.0 ||
		sent.Tools[0]["type"] != "web_search_20250305" {
		t.Fatalf("upstream got tools %v (%v)", sent.Tools, err)
	}
	msg := cc.Choices[0].Message
	if len(msg.Annotations) != 2 || len(msg.ToolCalls) != 0 || cc.Choices[0].FinishReason != "stop" {
		t.Fatalf("answer %s", msg.RawJSON())
	}
	for _, a := range msg.Annotations {
		r := []rune(msg.Content)
		if int(a.URLCitation.EndIndex) > len(r) || !strings.HasPrefix(string(r[a.URLCitation.StartIndex:a.URLCitation.EndIndex]), "Résumé ☕ 🌍: ") ||
			!strings.HasPrefix(a.URLCitation.URL, "https://example.com/") {
			t.Errorf("annotation %s over %q", a.RawJSON(), msg.Content)
		}
	}

	sp := params
	sp.StreamOptions.IncludeUsage = openai.Bool(true)
	s := c.Chat.Completions.NewStreaming(ctx, sp)
	var acc openai.ChatCompletionAccumulator
	var streamed []openai.ChatCompletionMessageAnnotation
	for s.Next() {
		ch := s.Current()
		if !acc.AddChunk(ch) {
			t.Fatalf("accumulator refused %s", ch.RawJSON())
		}
		if len(ch.Choices) == 0 {
			continue
		}
		if f, ok := ch.Choices[0].Delta.JSON.ExtraFields["annotations"]; ok {
			var as []openai.ChatCompletionMessageAnnotation
			if err := json.Unmarshal([]byte(f.Raw()), &as); err != nil {
				t.Fatal(err)
			}
			streamed = append(streamed, as...)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != msg.Content || len(streamed) != len(msg.Annotations) {
		t.Fatalf("streamed %q with %d annotations, buffered %q with %d", acc.Choices[0].Message.Content, len(streamed), msg.Content, len(msg.Annotations))
	}
	for i, a := range streamed {
		if a.URLCitation.StartIndex != msg.Annotations[i].URLCitation.StartIndex || a.URLCitation.EndIndex != msg.Annotations[i].URLCitation.EndIndex ||
			a.URLCitation.URL != msg.Annotations[i].URLCitation.URL || a.URLCitation.Title != msg.Annotations[i].URLCitation.Title {
			t.Errorf("streamed annotation %s, buffered %s", a.RawJSON(), msg.Annotations[i].RawJSON())
		}
	}
	if acc.Usage.CompletionTokens != cc.Usage.CompletionTokens || acc.Usage.PromptTokens != cc.Usage.PromptTokens {
		t.Errorf("streamed usage %+v, buffered %+v", acc.Usage, cc.Usage)
	}

	t.Run("the answer sent back with its annotations", func(t *testing.T) {
		next := params
		next.Messages = append(append([]openai.ChatCompletionMessageParamUnion(nil), params.Messages...), msg.ToParam(), openai.UserMessage("And tomorrow?"))
		again, err := c.Chat.Completions.New(ctx, next, option.WithJSONSet("messages.1.annotations", json.RawMessage(msg.JSON.Annotations.Raw())))
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Choices[0].Message.Annotations) != 2 || strings.Contains(string(mock.Stats().LastBody), "url_citation") {
			t.Errorf("answer %s, upstream got %s", again.Choices[0].Message.RawJSON(), mock.Stats().LastBody)
		}
	})

	t.Run("malformed options refused before the upstream", func(t *testing.T) {
		before := mock.Stats().Requests["/v1/messages"]
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("x")},
			option.WithJSONSet("web_search_options", map[string]any{"user_location": map[string]any{"type": "exact"}}))
		var e *openai.Error
		if !errors.As(err, &e) || e.StatusCode != 400 || e.Type != "invalid_request_error" || e.Param != "web_search_options.user_location.type" {
			t.Fatalf("err = %v", err)
		}
		if n := mock.Stats().Requests["/v1/messages"]; n != before {
			t.Errorf("upstream called %d times", n-before)
		}
	})
}
