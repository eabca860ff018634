package providers

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/valyala/fasthttp"
)

// wsStreamed is a streamed answer as a client puts it together: the SDK's
// accumulator, and the annotations deltas the SDK has no field for.
type wsStreamed struct {
	acc         openai.ChatCompletionAccumulator
	annotations []wsAnnotation
	usage       Usage
}

func streamWebSearch(t *testing.T, b *Backend, body string) wsStreamed {
	t.Helper()
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(body, true), &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	defer res.Stream.Close()
	var s wsStreamed
	streamed := 0
	for range 10000 {
		var ev Event
		err := res.Stream.Next(&ev)
		if err == io.EOF {
			return s
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Done || ev.KeepAlive {
			continue
		}
		if ev.HasUsage {
			s.usage = ev.Usage
		}
		var chunk openai.ChatCompletionChunk
		if err := json.Unmarshal(ev.Data, &chunk); err != nil || !s.acc.AddChunk(chunk) {
			t.Fatalf("SDK cannot read %s: %v", ev.Data, err)
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		streamed += utf8.RuneCountInString(chunk.Choices[0].Delta.Content)
		if f, ok := chunk.Choices[0].Delta.JSON.ExtraFields["annotations"]; ok {
			var as []wsAnnotation
			if err := json.Unmarshal([]byte(f.Raw()), &as); err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.URLCitation.EndIndex != streamed {
					t.Errorf("annotation ends at %d, %d code points streamed", a.URLCitation.EndIndex, streamed)
				}
			}
			s.annotations = append(s.annotations, as...)
		}
	}
	t.Fatal("stream does not end")
	return s
}

// TestAnthropicWebSearchAgainstMockllm runs web_search_options through the translation
// to mockllm's Messages API, which searches as the API does when the request declares
// its web search tool (refusing one the API would refuse), streamed and not: the
// answer is the text, its citations url_citation annotations over the cited text in
// code points (multi-byte and astral characters in it), the searches neither content
// nor tool calls, web_search_requests no tokens, and the stream says the same as the
// buffered answer.
func TestAnthropicWebSearchAgainstMockllm(t *testing.T) {
	b, srv := startMockAnthropic(t)
	ask := `{"model":"chat","messages":[{"role":"user","content":"What is new in gateway routing?"}]%s}`
	plain, plainUsage := sendChat(t, b, fmtBody(ask, ""))

	cases := []struct {
		name, options, tool string
		cites               int
	}{
		{"low: one search", `{"search_context_size":"low"}`, `{"type":"web_search_20250305","name":"web_search","max_uses":1}`, 1},
		{"high, with a location", `{"search_context_size":"high","user_location":{"type":"approximate","approximate":{"city":"Zürich","country":"CH","timezone":"Europe/Zurich"}}}`,
			`{"type":"web_search_20250305","name":"web_search","max_uses":10,"user_location":{"type":"approximate","city":"Zürich","country":"CH","timezone":"Europe/Zurich"}}`, 2},
		{"no options", `{}`, `{"type":"web_search_20250305","name":"web_search"}`, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := fmtBody(ask, `,"web_search_options":`+c.options)
			cc, u := sendChat(t, b, body)
			var sent struct{ Tools []json.RawMessage }
			if err := json.Unmarshal(srv.Stats().LastBody, &sent); err != nil || len(sent.Tools) != 1 || !sameJSON(t, sent.Tools[0], []byte(c.tool)) {
				t.Fatalf("mockllm got tools %s (%v)", sent.Tools, err)
			}
			msg := cc.Choices[0].Message
			if !strings.HasPrefix(msg.Content, "Résumé ☕ 🌍: ") || !strings.HasSuffix(msg.Content, plain.Choices[0].Message.Content) ||
				len(msg.ToolCalls) != 0 || cc.Choices[0].FinishReason != "stop" {
				t.Fatalf("answer %s", msg.RawJSON())
			}
			cited := strings.TrimSuffix(msg.Content, plain.Choices[0].Message.Content)
			if len(msg.Annotations) != c.cites {
				t.Fatalf("annotations %s", msg.JSON.Annotations.Raw())
			}
			for _, a := range msg.Annotations {
				uc := a.URLCitation
				if runeSpan(t, msg.Content, int(uc.StartIndex), int(uc.EndIndex)) != cited || !strings.HasPrefix(uc.URL, "https://example.com/") ||
					!strings.HasPrefix(uc.Title, "Résumé: ") {
					t.Errorf("annotation %s over %q", a.RawJSON(), cited)
				}
			}
			// The cited text is output; the searches themselves are priced apart, not
			// in tokens: one a citation here. The tool's definition is input, as
			// Anthropic counts tools. mockllm's standard tier is OpenAI's default.
			if u.Input <= plainUsage.Input || u.Output != plainUsage.Output+6 || cc.Usage.TotalTokens != u.Input+u.Output ||
				u.WebSearches != int64(c.cites) || plainUsage.WebSearches != 0 {
				t.Errorf("usage %+v, without searching %+v", u, plainUsage)
			}
			if cc.ServiceTier != "default" || u.Tier.String() != "default" {
				t.Errorf("service_tier %q, usage's %q", cc.ServiceTier, u.Tier.String())
			}

			s := streamWebSearch(t, b, fmtBody(ask, `,"web_search_options":`+c.options+`,"stream":true`))
			if got := s.acc.Choices[0].Message; got.Content != msg.Content || len(got.ToolCalls) != 0 || s.acc.Choices[0].FinishReason != "stop" {
				t.Errorf("streamed %+v", s.acc.Choices[0])
			}
			var want []wsAnnotation
			if err := json.Unmarshal([]byte(msg.JSON.Annotations.Raw()), &want); err != nil {
				t.Fatal(err)
			}
			if len(s.annotations) != len(want) {
				t.Fatalf("streamed annotations %+v, buffered %+v", s.annotations, want)
			}
			for i := range want {
				if s.annotations[i] != want[i] {
					t.Errorf("streamed annotation %+v, buffered %+v", s.annotations[i], want[i])
				}
			}
			if s.usage != u {
				t.Errorf("streamed usage %+v, buffered %+v", s.usage, u)
			}
		})
	}

	t.Run("with a function, called after the searches", func(t *testing.T) {
		const options = `,"web_search_options":{"search_context_size":"medium"}`
		cc, _ := sendChat(t, b, fmtBody(toolsBody, options))
		msg := cc.Choices[0].Message
		if cc.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" ||
			len(msg.Annotations) != 2 || !strings.HasPrefix(msg.Content, "Résumé") {
			t.Fatalf("answer %s", msg.RawJSON())
		}
		s := streamWebSearch(t, b, fmtBody(toolsBody, options+`,"stream":true`))
		if sc := s.acc.Choices[0].Message.ToolCalls; len(sc) != 1 || sc[0].Function.Name != "get_weather" || len(s.annotations) != 2 {
			t.Errorf("streamed %+v, annotations %+v", s.acc.Choices[0].Message, s.annotations)
		}
	})

	t.Run("tool_choice none leaves the search unused", func(t *testing.T) {
		cc, _ := sendChat(t, b, strings.Replace(fmtBody(toolsBody, `,"web_search_options":{}`), `"tool_choice":"auto"`, `"tool_choice":"none"`, 1))
		if msg := cc.Choices[0].Message; len(msg.Annotations) != 0 || len(msg.ToolCalls) != 0 || strings.Contains(msg.Content, "Résumé") {
			t.Errorf("answer %s", msg.RawJSON())
		}
	})

	t.Run("tool_choice none without functions: no search", func(t *testing.T) {
		body := fmtBody(ask, `,"tool_choice":"none","web_search_options":{"search_context_size":"high"}`)
		cc, u := sendChat(t, b, body)
		var sent struct {
			ToolChoice json.RawMessage `json:"tool_choice"`
		}
		if err := json.Unmarshal(srv.Stats().LastBody, &sent); err != nil || !sameJSON(t, sent.ToolChoice, []byte(`{"type":"none"}`)) {
			t.Fatalf("mockllm got tool_choice %s (%v)", sent.ToolChoice, err)
		}
		if msg := cc.Choices[0].Message; msg.Content != plain.Choices[0].Message.Content || len(msg.Annotations) != 0 || u.WebSearches != 0 {
			t.Errorf("answer %s, usage %+v", msg.RawJSON(), u)
		}
		s := streamWebSearch(t, b, fmtBody(ask, `,"tool_choice":"none","web_search_options":{},"stream":true`))
		if s.acc.Choices[0].Message.Content != plain.Choices[0].Message.Content || len(s.annotations) != 0 || s.usage.WebSearches != 0 {
			t.Errorf("streamed %q, annotations %+v, usage %+v", s.acc.Choices[0].Message.Content, s.annotations, s.usage)
		}
	})

	t.Run("the answer sent back as it came", func(t *testing.T) {
		first, _ := sendChat(t, b, fmtBody(ask, `,"web_search_options":{}`))
		asst := first.Choices[0].Message.RawJSON()
		if !strings.Contains(asst, `"annotations"`) {
			t.Fatalf("first answer %s", asst)
		}
		body := `{"model":"chat","messages":[{"role":"user","content":"What is new in gateway routing?"},` + asst +
			`,{"role":"user","content":"And in rate limiting?"}],"web_search_options":{}}`
		cc, _ := sendChat(t, b, body)
		if len(cc.Choices[0].Message.Annotations) != 2 {
			t.Errorf("answer %s", cc.Choices[0].Message.RawJSON())
		}
		if sent := srv.Stats().LastBody; bytes.Contains(sent, []byte("annotations")) || bytes.Contains(sent, []byte("url_citation")) {
			t.Errorf("mockllm got %s", sent)
		}
	})
}
