package mockllm

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// personSchema is the JSON schema LangChain's withStructuredOutput sends for a zod
// object (draft 2020-12, titles on the properties), in response_format's json_schema
// and as a function's parameters.
const personSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",` +
	`"properties":{"name":{"type":"string","title":"extract"},"age":{"type":"number","title":"extract"},` +
	`"tags":{"type":"array","items":{"type":"string"}},"kind":{"type":"string","enum":["a","b"]}},` +
	`"required":["name","age","tags","kind"],"additionalProperties":false,"title":"extract"}`

// person is what the answers must decode into, every member present.
type person struct {
	Name *string   `json:"name"`
	Age  *float64  `json:"age"`
	Tags *[]string `json:"tags"`
	Kind *string   `json:"kind"`
}

func (p person) whole() bool {
	return p.Name != nil && p.Age != nil && p.Tags != nil && p.Kind != nil && (*p.Kind == "a" || *p.Kind == "b")
}

// Like vLLM's guided decoding, a chat request whose response_format is a json_schema
// (what LangChain's withStructuredOutput sends by default, and the OpenAI SDKs'
// parse helpers) is answered with JSON of that schema, json_object with an object,
// plain and streamed alike; max_tokens cuts it short with finish_reason "length".
// Before, mockllm answered its usual words, and every client's parse failed.
func TestChatResponseFormat(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 64})
	client := openai.NewClient(option.WithBaseURL("http://mock.test/v1"), option.WithHTTPClient(h.client), option.WithMaxRetries(0))
	for _, tc := range []struct {
		name, format string
		check        func(content string) bool
	}{
		{"json_schema", `{"type":"json_schema","json_schema":{"name":"extract","strict":true,"schema":` + personSchema + `}}`, func(c string) bool {
			var p person
			return json.Unmarshal([]byte(c), &p) == nil && p.whole()
		}},
		{"json_object", `{"type":"json_object"}`, func(c string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(c), &m) == nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"mock-1","max_tokens":60,"response_format":` + tc.format + `,"messages":[{"role":"user","content":"Describe a person"}]}`
			var p openai.ChatCompletionNewParams
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatal(err)
			}
			plain, err := client.Chat.Completions.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			c := plain.Choices[0]
			if !tc.check(c.Message.Content) || c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 {
				t.Fatalf("plain answer %s", plain.RawJSON())
			}
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := client.Chat.Completions.NewStreaming(context.Background(), p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.Choices[0].Message.Content != c.Message.Content || acc.Choices[0].FinishReason != "stop" ||
				acc.Usage.CompletionTokens != plain.Usage.CompletionTokens {
				t.Errorf("stream joined %q (%s, %d tokens); plain %q (%d tokens)", acc.Choices[0].Message.Content,
					acc.Choices[0].FinishReason, acc.Usage.CompletionTokens, c.Message.Content, plain.Usage.CompletionTokens)
			}
		})
	}
	t.Run("cut by max_tokens", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", `{"model":"mock-1","max_tokens":3,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":`+personSchema+`}},"messages":[{"role":"user","content":"x"}]}`)
		var a openai.ChatCompletion
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		if c := a.Choices[0]; c.FinishReason != "length" || a.Usage.CompletionTokens != 3 || len(c.Message.Content) > 12 || json.Valid([]byte(c.Message.Content)) {
			t.Errorf("answer %s; want 3 tokens of unfinished JSON, finish_reason length", b)
		}
	})
	t.Run("text", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", `{"model":"mock-1","max_tokens":5,"response_format":{"type":"text"},"messages":[{"role":"user","content":"x"}]}`)
		if strings.Contains(string(b), `"content":"{`) {
			t.Errorf("a text response_format answered JSON: %s", b)
		}
	})
}

// forceBody is a chat request with function tools other and extract, LangChain's
// withStructuredOutput(method: "functionCalling") shape, without tool_choice.
const forceBody = `{"model":"mock-1","max_tokens":60,"messages":[{"role":"user","content":"Describe a person"}],` +
	`"tools":[{"type":"function","function":{"name":"other","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}},` +
	`{"type":"function","function":{"name":"extract","parameters":` + personSchema + `}}]`

// Like vLLM, a tool_choice naming a function is answered with that function's call,
// its arguments JSON of the function's parameters and finish_reason "stop" (vLLM's,
// for a named choice), content ""; "required" calls a tool (the first) with
// finish_reason "tool_calls". A stream sends the call's id and name with its first
// piece of arguments. x-mock-tool-calls still answers as it says.
func TestChatForcedToolChoice(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 64})
	client := openai.NewClient(option.WithBaseURL("http://mock.test/v1"), option.WithHTTPClient(h.client), option.WithMaxRetries(0))
	for _, tc := range []struct {
		name, fn, finish string
		choice           openai.ChatCompletionToolChoiceOptionUnionParam
		args             func(string) bool
	}{
		{"named", "extract", "stop", openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
			Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "extract"}}}, func(a string) bool {
			var p person
			return json.Unmarshal([]byte(a), &p) == nil && p.whole()
		}},
		{"required", "other", "tool_calls", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, func(a string) bool {
			var q struct{ Q *string }
			return json.Unmarshal([]byte(a), &q) == nil && q.Q != nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p openai.ChatCompletionNewParams
			if err := json.Unmarshal([]byte(forceBody+`}`), &p); err != nil {
				t.Fatal(err)
			}
			p.ToolChoice = tc.choice
			plain, err := client.Chat.Completions.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			c := plain.Choices[0]
			if len(c.Message.ToolCalls) != 1 || c.FinishReason != tc.finish || c.Message.Content != "" {
				t.Fatalf("plain answer %s", plain.RawJSON())
			}
			call := c.Message.ToolCalls[0]
			if call.Function.Name != tc.fn || !tc.args(call.Function.Arguments) || !strings.HasPrefix(call.ID, "chatcmpl-tool-") || call.Type != "function" {
				t.Fatalf("call %s", call.RawJSON())
			}
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := client.Chat.Completions.NewStreaming(context.Background(), p)
			var acc openai.ChatCompletionAccumulator
			heads := 0
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				for _, c := range ch.Choices {
					for _, d := range c.Delta.ToolCalls {
						if d.ID != "" {
							heads++
						}
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			got := acc.Choices[0]
			if len(got.Message.ToolCalls) != 1 || heads != 1 || got.FinishReason != tc.finish ||
				got.Message.ToolCalls[0].Function.Name != tc.fn || got.Message.ToolCalls[0].Function.Arguments != call.Function.Arguments ||
				acc.Usage.CompletionTokens != plain.Usage.CompletionTokens {
				t.Errorf("stream joined %+v (%d heads, finish %s, %d tokens); plain %s", got.Message.ToolCalls, heads, got.FinishReason,
					acc.Usage.CompletionTokens, c.RawJSON())
			}
		})
	}
	t.Run("not forced", func(t *testing.T) {
		for _, tc := range []struct{ name, body string }{
			{"auto", forceBody + `,"tool_choice":"auto"}`},
			{"none", forceBody + `,"tool_choice":"none"}`},
			{"no choice", forceBody + `}`},
			{"a function not in tools", forceBody + `,"tool_choice":{"type":"function","function":{"name":"missing"}}}`},
		} {
			_, b := h.must("POST", "/v1/chat/completions", tc.body)
			if !strings.Contains(string(b), `"tool_calls":[]`) {
				t.Errorf("%s: %s", tc.name, b)
			}
		}
	})
	t.Run("x-mock-tool-calls first", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", forceBody+`,"tool_choice":"required"}`, "x-mock-tool-calls", "2")
		if !strings.Contains(string(b), `"arguments":"{\"n\":1}"`) || !strings.Contains(string(b), `"finish_reason":"tool_calls"`) {
			t.Errorf("answer %s; want x-mock-tool-calls' two calls", b)
		}
	})
}

// The Responses API's text.format json_schema (LangChain's withStructuredOutput with
// useResponsesApi, the SDKs' responses.parse) makes the output text JSON of the schema,
// as vLLM's Responses API answers it, streamed deltas and the plain answer alike.
func TestResponsesTextFormat(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 64})
	client := h.sdk("")
	body := `{"model":"mock-1","input":"Describe a person","max_output_tokens":60,` +
		`"text":{"format":{"type":"json_schema","name":"extract","strict":true,"schema":` + personSchema + `}}}`
	var p responses.ResponseNewParams
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	plain, err := client.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var who person
	if err := json.Unmarshal([]byte(plain.OutputText()), &who); err != nil || !who.whole() || plain.Status != "completed" {
		t.Fatalf("answer %s", plain.RawJSON())
	}
	s := readStream(t, client, p)
	if s.err != nil || s.text != plain.OutputText() || s.final.OutputText() != plain.OutputText() ||
		s.final.Usage.OutputTokens != plain.Usage.OutputTokens {
		t.Errorf("stream %q (final %q, %d tokens, %v); plain %q (%d tokens)", s.text, s.final.OutputText(),
			s.final.Usage.OutputTokens, s.err, plain.OutputText(), plain.Usage.OutputTokens)
	}
	cut := strings.Replace(body, `"max_output_tokens":60`, `"max_output_tokens":2`, 1)
	_, b := h.must("POST", "/v1/responses", cut)
	var r responses.Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != "incomplete" || r.Usage.OutputTokens != 2 || json.Valid([]byte(r.OutputText())) {
		t.Errorf("cut answer %s; want 2 tokens of unfinished JSON, incomplete", b)
	}
}
