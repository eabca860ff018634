package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/tollgate/tollgate/providers/mockllm"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

// bridgeScript is one answer a chat server gives, buffered and streamed.
type bridgeScript struct {
	message string   // the chat completion's choices[0].message
	finish  string   // its finish_reason
	chunks  []string // the stream's chunks' choices[0].delta, in order
}

// bridgeScripts are the answers the scripted chat server gives, by the word the
// request's input names.
var bridgeScripts = map[string]bridgeScript{
	"text": {
		message: `{"role":"assistant","content":"Hello there, world."}`, finish: "stop",
		chunks: []string{`{"role":"assistant","content":""}`, `{"content":"Hello"}`, `{"content":" there,"}`, `{"content":" world."}`},
	},
	"tools": {
		message: `{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]}`,
		finish: "tool_calls",
		chunks: []string{
			`{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}`,
			`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`,
			`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`,
			`{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]}`,
			`{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}`,
		},
	},
	"interleaved": {
		message: `{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]}`,
		finish: "tool_calls",
		chunks: []string{
			`{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}`,
			`{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]}`,
			`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`,
			`{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}`,
		},
	},
	"text-then-tools": {
		message: `{"role":"assistant","content":"Let me check.","tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`,
		finish: "tool_calls",
		chunks: []string{
			`{"role":"assistant","content":"Let me"}`, `{"content":" check."}`,
			`{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`,
		},
	},
	"refusal": {
		message: `{"role":"assistant","content":null,"refusal":"I can't help with that."}`, finish: "stop",
		chunks: []string{`{"role":"assistant","refusal":"I can't"}`, `{"refusal":" help with that."}`},
	},
	"refusal-after-empty-text": {
		message: `{"role":"assistant","content":"","refusal":"No."}`, finish: "stop",
		chunks: []string{`{"role":"assistant","content":""}`, `{"refusal":"No."}`},
	},
	"tools-after-empty-text": {
		message: `{"role":"assistant","content":"","tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`,
		finish: "tool_calls",
		chunks: []string{
			`{"role":"assistant","content":""}`,
			`{"content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`,
		},
	},
	"text-with-empty-refusal": {
		message: `{"role":"assistant","content":"Hi","refusal":""}`, finish: "stop",
		chunks: []string{`{"role":"assistant","content":"Hi","refusal":""}`},
	},
	"call-without-id": {
		message: `{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`,
		finish:  "tool_calls",
		chunks:  []string{`{"role":"assistant","tool_calls":[{"index":0,"type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`},
	},
	"length-in-reasoning": {
		message: `{"role":"assistant","reasoning_content":"Hmm","content":null}`, finish: "length",
		chunks: []string{`{"role":"assistant","reasoning_content":"Hmm"}`},
	},
	"logprobs": {
		message: `{"role":"assistant","content":"Hi there"}` + "\t" + `,"logprobs":{"content":[{"token":"Hi","logprob":-0.5,"bytes":null,"top_logprobs":[{"token":"Hi","logprob":-0.5,"bytes":null}]},{"token":" there","logprob":-0.5,"bytes":null,"top_logprobs":[{"token":" there","logprob":-0.5,"bytes":null}]}]}`,
		finish:  "stop",
		chunks:  []string{`{"role":"assistant","content":"Hi"}` + "\t" + bridgeScriptLogprob("Hi"), `{"content":" there"}` + "\t" + bridgeScriptLogprob(" there")},
	},
	"annotations": {
		message: `{"role":"assistant","content":"See x.","annotations":[{"type":"url_citation","url_citation":{"start_index":4,"end_index":5,"url":"https://x.example/","title":"X"}}]}`,
		finish:  "stop",
		chunks: []string{`{"role":"assistant","content":"See x."}`,
			`{"annotations":[{"type":"url_citation","url_citation":{"start_index":4,"end_index":5,"url":"https://x.example/","title":"X"}}]}`},
	},
	"length": {
		message: `{"role":"assistant","content":"Once upon a"}`, finish: "length",
		chunks: []string{`{"role":"assistant","content":"Once"}`, `{"content":" upon a"}`},
	},
	"filtered": {
		message: `{"role":"assistant","content":"Partial"}`, finish: "content_filter",
		chunks: []string{`{"role":"assistant","content":"Partial"}`},
	},
	"reasoning": {
		message: `{"role":"assistant","reasoning_content":"Six times seven.","content":"42"}`, finish: "stop",
		chunks: []string{`{"role":"assistant","reasoning_content":"Six times"}`, `{"reasoning_content":" seven."}`, `{"content":"42"}`},
	},
	"length-in-call": {
		message: `{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Pa"}}]}`,
		finish: "length",
		chunks: []string{
			`{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}`,
			`{"tool_calls":[{"index":0,"function":{"arguments":"\"Pa"}}]}`,
		},
	},
}

// bridgeScriptLogprob is a chat logprobs object of one token.
func bridgeScriptLogprob(tok string) string {
	return `,"logprobs":{"content":[{"token":"` + tok + `","logprob":-0.5,"bytes":null,"top_logprobs":[{"token":"` + tok + `","logprob":-0.5,"bytes":null}]}]}`
}

const bridgeScriptUsage = `{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}`

// startScriptedChat is a chat completions server answering each bridgeScripts entry
// by the name the request's body holds ("script:<name>").
func startScriptedChat(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		name := string(body)
		if i := strings.Index(name, "script:"); i >= 0 {
			name = name[i+len("script:"):]
			name = name[:strings.IndexAny(name, `"\ `)]
		}
		sc, ok := bridgeScripts[name]
		if !ok {
			http.Error(w, `{"error":{"message":"no script"}}`, 400)
			return
		}
		if !strings.Contains(string(body), `"stream":true`) {
			w.Header().Set("content-type", "application/json")
			msg, extra, _ := strings.Cut(sc.message, "\t")
			_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":`+
				msg+extra+`,"finish_reason":"`+sc.finish+`"}],"usage":`+bridgeScriptUsage+`}`)
			return
		}
		chunks := make([]string, 0, len(sc.chunks)+3)
		for _, d := range sc.chunks {
			d, extra, _ := strings.Cut(d, "\t")
			chunks = append(chunks, `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":`+d+extra+`,"finish_reason":null}]}`)
		}
		chunks = append(chunks,
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"`+sc.finish+`"}]}`,
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":`+bridgeScriptUsage+`}`,
			`[DONE]`)
		chatSSE(w, chunks...)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// itemSummary is what an output item says, without its ID.
type itemSummary struct {
	Type, Status, Name, CallID, Arguments, Text, Refusal, Reasoning string
	Logprobs, Annotations                                           string
	// Parts are the types of a message's or reasoning item's content parts.
	Parts string
}

type responseSummary struct {
	Status, Incomplete string
	Items              []itemSummary
	In, Out, Total     int64
	Cached, Reasoning  int64
}

func summarize(r *responses.Response) responseSummary {
	s := responseSummary{Status: string(r.Status), Incomplete: r.IncompleteDetails.Reason,
		In: r.Usage.InputTokens, Out: r.Usage.OutputTokens, Total: r.Usage.TotalTokens,
		Cached: r.Usage.InputTokensDetails.CachedTokens, Reasoning: r.Usage.OutputTokensDetails.ReasoningTokens}
	for _, it := range r.Output {
		s.Items = append(s.Items, summarizeItem(it))
	}
	return s
}

func summarizeItem(it responses.ResponseOutputItemUnion) itemSummary {
	is := itemSummary{Type: it.Type, Status: it.Status, Name: it.Name, CallID: it.CallID, Arguments: it.Arguments.OfString}
	if strings.HasPrefix(is.CallID, "call_") && len(is.CallID) == len("call_")+48 {
		// Made by the bridge for a call the server gave no id: each answer its own.
		is.CallID = "call_(made)"
	}
	for _, c := range it.Content {
		is.Parts += c.Type + " "
		switch c.Type {
		case "output_text":
			is.Text += c.Text
			is.Logprobs += c.JSON.Logprobs.Raw()
			is.Annotations += c.JSON.Annotations.Raw()
		case "refusal":
			is.Refusal += c.Refusal
		case "reasoning_text":
			is.Reasoning += c.Text
		}
	}
	return is
}

// Every answer the bridge gives is one the official SDK reads alike buffered and
// streamed: the response a stream ends with (and the SDK's own accumulator's view of
// the stream's events) says what the same call buffered says, text, refusals (beside
// an empty content string too), function calls one after the other, interleaved, after
// text or without an id, reasoning, logprobs, annotations, an answer cut by
// max_output_tokens (while it reasoned too) or a content filter, and the usage with
// its details; each item's deltas add up to what its done events and the final
// response hold.
func TestResponsesBridgeSDKStreamMatchesBuffered(t *testing.T) {
	t.Parallel()
	up := startScriptedChat(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  raw: {provider: openai, base_url: "`+up+`/v1", model: m, responses_api: chat, timeout: 5s}
endpoints:
  - {name: raw, type: chat, routes: [{backend: raw}]}
`)
	c := g.client()
	ctx := context.Background()
	tools := []responses.ToolUnionParam{
		responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}, false),
		responses.ToolParamOfFunction("get_time", map[string]any{"type": "object", "properties": map[string]any{"tz": map[string]any{"type": "string"}}}, false),
	}
	for name := range bridgeScripts {
		t.Run(name, func(t *testing.T) {
			params := responses.ResponseNewParams{
				Model: "raw", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("script:" + name)}, Tools: tools,
			}
			res, err := c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			want := summarize(res)
			if want.In != 11 || want.Out != 7 || want.Total != 18 || want.Cached != 4 || want.Reasoning != 2 || len(want.Items) == 0 {
				t.Fatalf("buffered: %s", res.RawJSON())
			}

			stream := c.Responses.NewStreaming(ctx, params)
			var acc responses.ResponseAccumulator
			var before responses.ResponseAccumulatorSnapshot
			var final *responses.Response
			done := map[int64]responses.ResponseOutputItemUnion{}
			added := map[int64]string{}
			deltas := map[string]*strings.Builder{}
			add := func(id, d string) {
				if deltas[id] == nil {
					deltas[id] = &strings.Builder{}
				}
				deltas[id].WriteString(d)
			}
			for n := int64(0); stream.Next(); n++ {
				ev := stream.Current()
				if ev.SequenceNumber != n {
					t.Fatalf("event %d (%s) numbered %d", n, ev.Type, ev.SequenceNumber)
				}
				var sev responses.ResponsesServerEventUnion
				if err := json.Unmarshal([]byte(ev.RawJSON()), &sev); err != nil {
					t.Fatalf("%s: %v", ev.RawJSON(), err)
				}
				switch ev.Type {
				case "response.completed", "response.incomplete", "response.failed":
					before = acc.Snapshot()
					r := ev.Response
					final = &r
				case "response.output_item.added":
					if _, ok := added[ev.OutputIndex]; ok {
						t.Errorf("item %d added twice", ev.OutputIndex)
					}
					added[ev.OutputIndex] = ev.Item.ID
				case "response.output_item.done":
					if added[ev.OutputIndex] != ev.Item.ID {
						t.Errorf("item %d done as %q, added as %q", ev.OutputIndex, ev.Item.ID, added[ev.OutputIndex])
					}
					done[ev.OutputIndex] = ev.Item
				case "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta", "response.reasoning_text.delta":
					if added[ev.OutputIndex] != ev.ItemID {
						t.Errorf("%s for item %q at %d, added %q", ev.Type, ev.ItemID, ev.OutputIndex, added[ev.OutputIndex])
					}
					add(ev.ItemID+ev.Type[:len(ev.Type)-len(".delta")], ev.Delta)
				case "response.output_text.done":
					if got := deltas[ev.ItemID+"response.output_text"]; got == nil || got.String() != ev.Text {
						t.Errorf("text deltas %v, done %q", got, ev.Text)
					}
				case "response.refusal.done":
					if got := deltas[ev.ItemID+"response.refusal"]; got == nil || got.String() != ev.Refusal {
						t.Errorf("refusal deltas %v, done %q", got, ev.Refusal)
					}
				case "response.function_call_arguments.done":
					if got := deltas[ev.ItemID+"response.function_call_arguments"]; got == nil || got.String() != ev.Arguments {
						t.Errorf("argument deltas %v, done %q", got, ev.Arguments)
					}
				}
				if err := acc.AddEvent(sev); err != nil {
					t.Fatalf("the SDK's accumulator refused %s: %v", ev.RawJSON(), err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if final == nil {
				t.Fatal("no terminal event")
			}
			if got := summarize(final); !reflect.DeepEqual(got, want) {
				t.Errorf("streamed  %+v\nbuffered %+v\n%s\n%s", got, want, final.RawJSON(), res.RawJSON())
			}
			for i, it := range final.Output {
				d, ok := done[int64(i)]
				if !ok || d.ID != it.ID || !reflect.DeepEqual(summarizeItem(d), summarizeItem(it)) {
					t.Errorf("item %d: done %s, final %s", i, d.RawJSON(), it.RawJSON())
				}
			}
			if len(done) != len(final.Output) {
				t.Errorf("%d items done, %d in the final response", len(done), len(final.Output))
			}
			after := acc.Snapshot()
			if len(before.Output) != len(after.Output) {
				t.Fatalf("accumulated %+v, final %+v", before.Output, after.Output)
			}
			for i := range after.Output {
				b, a := before.Output[i], after.Output[i]
				if b.ItemID != a.ItemID || b.Type != a.Type || b.Name != a.Name || b.CallID != a.CallID || b.Arguments != a.Arguments || !reflect.DeepEqual(b.Text, a.Text) {
					t.Errorf("item %d accumulated %+v, final %+v", i, b, a)
				}
			}
			if rr, err := acc.ReconstructedResponse(); err != nil || !reflect.DeepEqual(summarize(rr), want) {
				t.Errorf("reconstructed %v", err)
			}
		})
	}
}

// A chat stream that fails partway (an error object after some text and a call's
// first arguments, as vLLM sends one) reaches the official SDK as the API's
// response.failed, with no stream error: the message that the call ended is
// completed, the call under way done incomplete, both in the failed response's
// output, its error naming the upstream's code (or type) and message; the SDK's
// accumulator takes every event.
func TestResponsesBridgeSDKStreamFailed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chatSSE(w,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Checking"},"finish_reason":null}]}`,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]},"finish_reason":null}]}`,
			`{"error":{"object":"error","message":"The engine died.","type":"InternalServerError","param":null,"code":500}}`)
	}))
	t.Cleanup(srv.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  raw: {provider: openai, base_url: "`+srv.URL+`/v1", model: m, responses_api: chat, timeout: 5s}
endpoints:
  - {name: raw, type: chat, routes: [{backend: raw}]}
`)
	c := g.client()
	stream := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "raw", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		Tools: []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object"}, false)},
	})
	var acc responses.ResponseAccumulator
	var final *responses.Response
	var last string
	for stream.Next() {
		ev := stream.Current()
		last = ev.Type
		var sev responses.ResponsesServerEventUnion
		if err := json.Unmarshal([]byte(ev.RawJSON()), &sev); err != nil {
			t.Fatal(err)
		}
		if err := acc.AddEvent(sev); err != nil {
			t.Fatalf("the SDK's accumulator refused %s: %v", ev.RawJSON(), err)
		}
		if ev.Type == "response.failed" {
			r := ev.Response
			final = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if final == nil || last != "response.failed" {
		t.Fatalf("ended with %s", last)
	}
	if final.Status != "failed" || final.Error.Code != "InternalServerError" || final.Error.Message != "The engine died." {
		t.Errorf("%s", final.RawJSON())
	}
	if len(final.Output) != 2 || final.Output[0].Type != "message" || final.Output[0].Status != "completed" || final.Output[0].Content[0].Text != "Checking" ||
		final.Output[1].Type != "function_call" || final.Output[1].Status != "incomplete" || final.Output[1].Arguments.OfString != `{"ci` {
		t.Errorf("output %s", final.RawJSON())
	}
	rr, err := acc.ReconstructedResponse()
	if err != nil || rr.Status != "failed" || len(rr.Output) != 2 {
		t.Errorf("reconstructed %v %+v", err, rr)
	}
}

// sdkResponseStream reads a Responses API stream with the official SDK, feeding every
// event to the SDK's accumulator, and returns the response its terminal event holds.
func sdkResponseStream(t *testing.T, stream interface {
	Next() bool
	Current() responses.ResponseStreamEventUnion
	Err() error
}) (*responses.Response, *responses.ResponseAccumulator) {
	t.Helper()
	acc := &responses.ResponseAccumulator{}
	var final *responses.Response
	for n := int64(0); stream.Next(); n++ {
		ev := stream.Current()
		if ev.SequenceNumber != n {
			t.Fatalf("event %d (%s) numbered %d", n, ev.Type, ev.SequenceNumber)
		}
		var sev responses.ResponsesServerEventUnion
		if err := json.Unmarshal([]byte(ev.RawJSON()), &sev); err != nil {
			t.Fatal(err)
		}
		if err := acc.AddEvent(sev); err != nil {
			t.Fatalf("the SDK's accumulator refused %s: %v", ev.RawJSON(), err)
		}
		switch ev.Type {
		case "response.completed", "response.incomplete", "response.failed":
			r := ev.Response
			final = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if final == nil {
		t.Fatal("no terminal event")
	}
	return final, acc
}

// Served natively (vLLM-like replicas storing their responses), a stream's events
// carry one tagged ID from response.created to response.completed, which the SDK's
// accumulator binds the whole stream to; the streamed and buffered answers agree, a
// stream continues a buffered response and the reverse, a max_output_tokens cut is
// incomplete alike, and a response made with store: false cannot be continued (the
// replica's 404 previous_response_not_found, passed on).
func TestResponsesNativeSDKStreamMatchesBuffered(t *testing.T) {
	t.Parallel()
	_, a := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	_, b := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  pool: {provider: openai, targets: ["http://`+a+`/v1", "http://`+b+`/v1"], model: up-model, balance: round_robin}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
`)
	c := g.client()
	ctx := context.Background()
	prev := ""
	for turn := range 6 {
		p := responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("turn " + strings.Repeat("x", turn))},
		}
		if turn%3 == 2 {
			p.MaxOutputTokens = openai.Int(2)
		}
		if prev != "" {
			p.PreviousResponseID = openai.String(prev)
		}
		var res *responses.Response
		if turn%2 == 0 {
			r, err := c.Responses.New(ctx, p)
			if err != nil {
				t.Fatalf("turn %d: %v", turn, err)
			}
			res = r
		} else {
			r, acc := sdkResponseStream(t, c.Responses.NewStreaming(ctx, p))
			snap := acc.Snapshot()
			if snap.ResponseID != r.ID || snap.OutputText() != r.OutputText() {
				t.Fatalf("turn %d: accumulated %+v, final %s", turn, snap, r.RawJSON())
			}
			res = r
		}
		if !strings.Contains(res.ID, "-tg") || res.OutputText() == "" || (turn > 0) != (res.PreviousResponseID == prev && prev != "") {
			t.Fatalf("turn %d: %s", turn, res.RawJSON())
		}
		if turn%3 == 2 && (res.Status != "incomplete" || res.IncompleteDetails.Reason != "max_output_tokens") ||
			turn%3 != 2 && res.Status != "completed" {
			t.Fatalf("turn %d: %s", turn, res.RawJSON())
		}
		got, err := c.Responses.Get(ctx, res.ID, responses.ResponseGetParams{})
		if err != nil || got.ID != res.ID || got.OutputText() != res.OutputText() || got.Status != res.Status {
			t.Fatalf("turn %d: get %v %v", turn, got, err)
		}
		prev = res.ID
	}

	unstored, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("forget me")}, Store: openai.Bool(false),
	})
	if err != nil || strings.Contains(unstored.RawJSON(), `"store":true`) || !strings.Contains(unstored.ID, "-tg") {
		t.Fatalf("%v %v", unstored, err)
	}
	for range 2 { // pinned: the same replica every time, never the other one by chance
		_, err = c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("again")}, PreviousResponseID: openai.String(unstored.ID),
		})
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "previous_response_not_found" || ae.Param != "previous_response_id" {
			t.Fatalf("follow-up of an unstored response: %v", err)
		}
	}
}
