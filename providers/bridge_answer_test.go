package providers

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

// bridgeAnswer translates a chat completion as the bridge does for the request req.
func bridgeAnswerOf(t *testing.T, req, chat string, u Usage) responses.Response {
	t.Helper()
	var r respRequest
	if err := r.read([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var e bridgeEcho
	e.render(&r)
	out, ok := appendBridgeAnswer(nil, []byte(chat), &e, []byte(`"backend-model"`), &u)
	if !ok {
		t.Fatalf("not translated: %s", chat)
	}
	var resp responses.Response
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("SDK cannot read %s: %v", out, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "object", "created_at", "status", "error", "incomplete_details", "instructions", "max_output_tokens",
		"model", "output", "parallel_tool_calls", "previous_response_id", "reasoning", "service_tier", "store", "temperature", "text",
		"tool_choice", "tools", "top_p", "truncation", "usage", "user", "metadata"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, out)
		}
	}
	return resp
}

// A chat completion comes back as the Responses API's response object: its text,
// reasoning, refusal and tool calls as output items, its finish reason as the status,
// its usage in the Responses API's names, the request's settings echoed.
func TestBridgeAnswer(t *testing.T) {
	const req = `{"model":"chat","instructions":"Be brief.","input":"Hi","max_output_tokens":50,"temperature":0.5,
		"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"metadata":{"k":"v"},"user":"u1"}`
	t.Run("text and usage", func(t *testing.T) {
		chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"claude-x","service_tier":"priority",
			"choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"","annotations":[{"type":"url_citation","url_citation":{"start_index":0,"end_index":5,"url":"https://x.org","title":"X"}}]},"logprobs":null,"finish_reason":"stop"}],
			"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":1}}}`
		resp := bridgeAnswerOf(t, req, chat, Usage{Input: 12, Output: 3, CachedInput: 4})
		if !strings.HasPrefix(resp.ID, "resp_") || len(resp.ID) != 53 || resp.Object != "response" || resp.CreatedAt != 1700000000 {
			t.Errorf("head: %s", resp.RawJSON())
		}
		if resp.Status != "completed" || resp.Model != "claude-x" || resp.ServiceTier != "priority" || resp.JSON.ExtraFields["store"].Raw() != "false" {
			t.Errorf("status %s model %s tier %s", resp.Status, resp.Model, resp.ServiceTier)
		}
		if resp.OutputText() != `Hello "there"` || len(resp.Output) != 1 || resp.Output[0].Type != "message" || resp.Output[0].Status != "completed" {
			t.Errorf("output: %s", resp.RawJSON())
		}
		ann := resp.Output[0].Content[0].Annotations
		if len(ann) != 1 || ann[0].URL != "https://x.org" || ann[0].Title != "X" || ann[0].EndIndex != 5 {
			t.Errorf("annotations %+v", ann)
		}
		u := resp.Usage
		if u.InputTokens != 12 || u.OutputTokens != 3 || u.TotalTokens != 15 || u.InputTokensDetails.CachedTokens != 4 || u.OutputTokensDetails.ReasoningTokens != 1 {
			t.Errorf("usage %s", u.RawJSON())
		}
		if resp.Instructions.OfString != "Be brief." || resp.MaxOutputTokens != 50 || resp.Temperature != 0.5 || resp.Metadata["k"] != "v" ||
			len(resp.Tools) != 1 || resp.Tools[0].Name != "f" || resp.User != "u1" || !resp.ParallelToolCalls || resp.Truncation != "disabled" {
			t.Errorf("echo: %s", resp.RawJSON())
		}
	})
	t.Run("cut by max tokens", func(t *testing.T) {
		chat := `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":50}}`
		resp := bridgeAnswerOf(t, req, chat, Usage{Input: 1, Output: 50})
		if resp.Status != "incomplete" || resp.IncompleteDetails.Reason != "max_output_tokens" || resp.Output[0].Status != "incomplete" {
			t.Errorf("%s", resp.RawJSON())
		}
	})
	t.Run("content filter", func(t *testing.T) {
		chat := `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`
		resp := bridgeAnswerOf(t, req, chat, Usage{})
		if resp.Status != "incomplete" || resp.IncompleteDetails.Reason != "content_filter" || resp.JSON.Usage.Raw() != "null" {
			t.Errorf("%s", resp.RawJSON())
		}
	})
	t.Run("reasoning and tool calls", func(t *testing.T) {
		chat := `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"Think.","reasoning":"Think.",
			"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"call_2","type":"function","function":{"name":"g","arguments":{"b":2}}}]},"finish_reason":"tool_calls"}],
			"usage":{"prompt_tokens":5,"completion_tokens":9}}`
		resp := bridgeAnswerOf(t, req, chat, Usage{Input: 5, Output: 9})
		if len(resp.Output) != 3 {
			t.Fatalf("%s", resp.RawJSON())
		}
		rs, fc, fc2 := resp.Output[0].AsReasoning(), resp.Output[1].AsFunctionCall(), resp.Output[2].AsFunctionCall()
		if rs.Type != "reasoning" || !strings.HasPrefix(rs.ID, "rs_") || len(rs.Content) != 1 || rs.Content[0].Text != "Think." {
			t.Errorf("reasoning %s", resp.Output[0].RawJSON())
		}
		if fc.CallID != "call_1" || fc.Name != "f" || fc.Arguments != `{"a":1}` || fc.Status != "completed" || !strings.HasPrefix(fc.ID, "fc_") {
			t.Errorf("call %s", resp.Output[1].RawJSON())
		}
		if fc2.Arguments != `{"b":2}` {
			t.Errorf("call with object arguments %s", resp.Output[2].RawJSON())
		}
	})
	t.Run("refusal", func(t *testing.T) {
		chat := `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I cannot."},"finish_reason":"stop"}]}`
		resp := bridgeAnswerOf(t, req, chat, Usage{})
		if len(resp.Output) != 1 || len(resp.Output[0].Content) != 1 || resp.Output[0].Content[0].Refusal != "I cannot." {
			t.Errorf("%s", resp.RawJSON())
		}
	})
	t.Run("logprobs", func(t *testing.T) {
		chat := `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop",
			"logprobs":{"content":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.1,"bytes":[72,105]}]}]}}]}`
		resp := bridgeAnswerOf(t, `{"model":"chat","input":"x","top_logprobs":1}`, chat, Usage{})
		lp := resp.Output[0].Content[0].Logprobs
		if len(lp) != 1 || lp[0].Token != "Hi" || len(lp[0].TopLogprobs) != 1 {
			t.Errorf("%s", resp.RawJSON())
		}
	})
	t.Run("not a chat completion", func(t *testing.T) {
		var e bridgeEcho
		e.render(&respRequest{})
		for _, chat := range []string{`{"error":{"message":"x"}}`, `{"choices":[]}`, `[1]`, `{"choices":[{"message":1}]}`} {
			if out, ok := appendBridgeAnswer(nil, []byte(chat), &e, []byte(`"m"`), &Usage{}); ok {
				t.Errorf("%s translated: %s", chat, out)
			}
		}
	})
}

// chunkEvents is a chat stream's events from their data, read as sseReader reads
// them: "[DONE]" is the end, "!ping" a keep-alive, "!cut" the upstream's cut.
type chunkEvents struct {
	data   [][]byte
	i      int
	closed bool
}

func newChunkEvents(data ...string) *chunkEvents {
	c := &chunkEvents{}
	for _, d := range data {
		c.data = append(c.data, []byte(d))
	}
	return c
}

var errTestCut = errors.Join(ErrStreamCut, errors.New("test: cut"))

func (c *chunkEvents) Next(ev *Event) error {
	*ev = Event{}
	if c.i >= len(c.data) {
		return io.EOF
	}
	d := c.data[c.i]
	c.i++
	switch string(d) {
	case "[DONE]":
		ev.Done = true
	case "!ping":
		ev.KeepAlive = true
	case "!cut":
		return errTestCut
	default:
		ev.Data = d
		if !inspectChunk(ev.Data, ev) {
			return errEventNotJSON
		}
	}
	return nil
}

func (c *chunkEvents) Close() error { c.closed = true; return nil }

// bridgeStreamOf is the bridge's stream over a chat stream of data, for request req.
func bridgeStreamOf(req string, data ...string) *bridgeStream {
	var r respRequest
	_ = r.read([]byte(req))
	s := acquireBridgeStream()
	s.in = newChunkEvents(data...)
	s.chat = bodyPool.Get().(*[]byte)
	s.echo.render(&r)
	s.model = append(s.model[:0], `"backend-model"`...)
	return s
}

// streamed is what a bridged stream yielded: its events (copies), and its error.
type streamed struct {
	events []Event
	err    error
}

func readBridged(s Events) streamed {
	var st streamed
	for range 100000 {
		var ev Event
		if err := s.Next(&ev); err != nil {
			if err != io.EOF {
				st.err = err
			}
			return st
		}
		ev.Data = append([]byte(nil), ev.Data...)
		ev.Name = append([]byte(nil), ev.Name...)
		st.events = append(st.events, ev)
	}
	return st
}

// checkEvents checks a Responses API stream as a client reads it: every event is one
// the SDK's union decodes, of the type its name says, numbered from 0 up; it begins
// with response.created and response.in_progress, and its terminal event is followed
// by the end alone. It returns the decoded events (keep-alives and the end left out).
func checkEvents(t *testing.T, evs []Event) []responses.ResponseStreamEventUnion {
	t.Helper()
	var out []responses.ResponseStreamEventUnion
	ended, done := false, false
	for _, ev := range evs {
		switch {
		case ev.KeepAlive:
			continue
		case done:
			t.Fatalf("event after the end: %s", ev.Data)
		case ev.Done:
			if !ended || len(ev.Data) != 0 {
				t.Fatalf("end before the terminal event, or with data")
			}
			done = true
			continue
		case ended:
			t.Fatalf("event after the terminal event: %s", ev.Data)
		}
		if strings.ContainsAny(string(ev.Data), "\n\r") {
			t.Fatalf("event spans lines: %q", ev.Data)
		}
		var u responses.ResponseStreamEventUnion
		if err := json.Unmarshal(ev.Data, &u); err != nil {
			t.Fatalf("SDK cannot read %s: %v", ev.Data, err)
		}
		if u.Type != string(ev.Name) {
			t.Fatalf("event named %s holds %s", ev.Name, ev.Data)
		}
		if u.SequenceNumber != int64(len(out)) {
			t.Fatalf("sequence number %d, want %d: %s", u.SequenceNumber, len(out), ev.Data)
		}
		switch u.Type {
		case "response.completed", "response.incomplete", "response.failed":
			ended = true
		}
		out = append(out, u)
	}
	if len(out) < 3 || out[0].Type != "response.created" || out[1].Type != "response.in_progress" {
		t.Fatalf("stream does not begin with created, in_progress: %d events", len(out))
	}
	if !done {
		t.Fatal("no end")
	}
	return out
}

func types(evs []responses.ResponseStreamEventUnion) string {
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.TrimPrefix(e.Type, "response."))
	}
	return b.String()
}

const chunkHead = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"up-model","choices":[`

func delta(d, finish string) string {
	if finish == "" {
		finish = "null"
	} else {
		finish = `"` + finish + `"`
	}
	return chunkHead + `{"index":0,"delta":` + d + `,"logprobs":null,"finish_reason":` + finish + `}]}`
}

const usageChunk = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"up-model","service_tier":"flex","choices":[],` +
	`"usage":{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":2}}}`

// A chat stream comes back as the Responses API's events, in OpenAI's order; its
// deltas join into the done text and the completed response's output, whose usage is
// the usage chunk's.
func TestBridgeStream(t *testing.T) {
	s := bridgeStreamOf(`{"model":"chat","input":"Hi","instructions":"Be brief."}`,
		delta(`{"role":"assistant","content":""}`, ""), "!ping",
		delta(`{"content":"Hel"}`, ""), delta(`{"content":"lo \"you\""}`, ""), delta(`{}`, "stop"), usageChunk, "[DONE]", "[DONE]")
	got := readBridged(s)
	if got.err != nil {
		t.Fatal(got.err)
	}
	evs := checkEvents(t, got.events)
	want := "created in_progress output_item.added content_part.added output_text.delta output_text.delta output_text.done content_part.done output_item.done completed"
	if types(evs) != want {
		t.Fatalf("events %s\nwant   %s", types(evs), want)
	}
	var deltas strings.Builder
	for _, e := range evs {
		if e.Type == "response.output_text.delta" {
			deltas.WriteString(e.Delta)
		}
	}
	final := evs[len(evs)-1].Response
	if deltas.String() != `Hello "you"` || evs[6].Text != deltas.String() || final.OutputText() != deltas.String() {
		t.Errorf("deltas %q, done %q, final %q", deltas.String(), evs[6].Text, final.OutputText())
	}
	if final.Status != "completed" || final.Model != "up-model" || final.ServiceTier != "flex" || final.Usage.InputTokens != 7 ||
		final.Usage.OutputTokens != 4 || final.Usage.InputTokensDetails.CachedTokens != 2 || final.Usage.OutputTokensDetails.ReasoningTokens != 2 {
		t.Errorf("final %s", final.RawJSON())
	}
	if evs[0].Response.ID != final.ID || evs[0].Response.Status != "in_progress" || evs[0].Response.JSON.Usage.Raw() != "null" ||
		evs[0].Response.Instructions.OfString != "Be brief." || evs[0].Response.CreatedAt != 1700000000 {
		t.Errorf("created %s", evs[0].Response.RawJSON())
	}
	// The events the gateway reads: keep-alive, content, usage on the terminal event.
	var keepAlive, content int
	var term Event
	for _, ev := range got.events {
		if ev.KeepAlive {
			keepAlive++
		}
		if ev.Content {
			content++
		}
		if string(ev.Name) == "response.completed" {
			term = ev
		}
	}
	if keepAlive != 1 || content != 2 || !term.HasUsage || term.Usage.Input != 7 || term.Usage.Output != 4 || term.Usage.Tier.String() != "flex" || term.Error {
		t.Errorf("keep-alives %d, content %d, terminal %+v", keepAlive, content, term)
	}
	for _, ev := range got.events {
		if ev.IDEnds != (IDEnds{}) {
			t.Errorf("IDEnds on %s", ev.Data)
		}
	}
	in := s.in.(*chunkEvents)
	if err := s.Close(); err != nil || !in.closed {
		t.Errorf("close: %v, inner closed %v", err, in.closed)
	}
}

// Reasoning, text and tool calls each become their own output item, each done as
// the next begins; a stream cut by max_tokens ends response.incomplete, its last
// item incomplete.
func TestBridgeStreamItems(t *testing.T) {
	s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`,
		delta(`{"role":"assistant","reasoning_content":"Let me "}`, ""), delta(`{"reasoning_content":"think.","reasoning":"think."}`, ""),
		delta(`{"content":"Calling."}`, ""),
		delta(`{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}`, ""),
		delta(`{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]}`, ""),
		delta(`{}`, "length"), usageChunk, "[DONE]")
	got := readBridged(s)
	defer s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	evs := checkEvents(t, got.events)
	want := "created in_progress " +
		"output_item.added content_part.added reasoning_text.delta reasoning_text.delta reasoning_text.done content_part.done output_item.done " +
		"output_item.added content_part.added output_text.delta output_text.done content_part.done output_item.done " +
		"output_item.added function_call_arguments.delta function_call_arguments.delta function_call_arguments.done output_item.done " +
		"output_item.added function_call_arguments.delta function_call_arguments.done output_item.done incomplete"
	if types(evs) != want {
		t.Fatalf("events %s\nwant   %s", types(evs), want)
	}
	final := evs[len(evs)-1].Response
	if final.Status != "incomplete" || final.IncompleteDetails.Reason != "max_output_tokens" || len(final.Output) != 4 {
		t.Fatalf("final %s", final.RawJSON())
	}
	rs, msg, fa, fb := final.Output[0].AsReasoning(), final.Output[1], final.Output[2].AsFunctionCall(), final.Output[3].AsFunctionCall()
	if len(rs.Content) != 1 || rs.Content[0].Text != "Let me think." || msg.Content[0].Text != "Calling." || msg.Status != "completed" {
		t.Errorf("reasoning, message: %s", final.RawJSON())
	}
	if fa.CallID != "call_a" || fa.Name != "f" || fa.Arguments != `{"x":1}` || fa.Status != "completed" || fb.CallID != "call_b" || fb.Status != "incomplete" {
		t.Errorf("calls: %s", final.RawJSON())
	}
	for i, e := range evs {
		if e.Type == "response.function_call_arguments.done" && e.ItemID != final.Output[2].ID && e.ItemID != final.Output[3].ID {
			t.Errorf("event %d names item %s", i, e.ItemID)
		}
		if e.Type == "response.output_item.added" && e.OutputIndex != int64(strings.Count(types(evs[:i]), "output_item.added")) {
			t.Errorf("event %d output_index %d", i, e.OutputIndex)
		}
	}
}

// A stream without a usage chunk still ends with its terminal event, its usage null;
// an error object in the middle ends it with response.failed; the upstream's cut is
// the stream's error, as it came.
func TestBridgeStreamEnds(t *testing.T) {
	t.Run("no usage", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`, delta(`{"content":"Hi"}`, "stop"), "[DONE]")
		defer s.Close()
		got := readBridged(s)
		evs := checkEvents(t, got.events)
		term := got.events[len(got.events)-2]
		if final := evs[len(evs)-1].Response; final.JSON.Usage.Raw() != "null" || final.Status != "completed" || term.HasUsage {
			t.Errorf("%s %+v", final.RawJSON(), term)
		}
	})
	t.Run("nothing but the end", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`, "[DONE]")
		defer s.Close()
		evs := checkEvents(t, readBridged(s).events)
		if types(evs) != "created in_progress completed" || evs[0].Response.Model != "backend-model" {
			t.Errorf("%s", types(evs))
		}
	})
	t.Run("error object", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`, delta(`{"content":"Hi"}`, ""),
			`{"error":{"message":"engine died","type":"internal_error","code":"engine_dead"}}`, "[DONE]")
		defer s.Close()
		got := readBridged(s)
		evs := checkEvents(t, got.events)
		last := evs[len(evs)-1]
		if last.Type != "response.failed" || last.Response.Status != "failed" || last.Response.Error.Message != "engine died" || string(last.Response.Error.Code) != "engine_dead" {
			t.Fatalf("%s: %s", types(evs), last.Response.RawJSON())
		}
		if !got.events[len(got.events)-2].Error {
			t.Error("response.failed without Event.Error")
		}
		// The message begun is ended, incomplete, and is in the failed response's output.
		if ty := types(evs); !strings.HasSuffix(ty, "output_text.delta output_text.done content_part.done output_item.done failed") {
			t.Errorf("events %s", ty)
		}
		if out := last.Response.Output; len(out) != 1 || out[0].Type != "message" || out[0].Status != "incomplete" || len(out[0].Content) != 1 || out[0].Content[0].Text != "Hi" {
			t.Errorf("output %s", last.Response.JSON.Output.Raw())
		}
	})
	// Calls under way at an error: the one whose arguments are not whole is the one cut.
	t.Run("error object in tool calls", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`,
			delta(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}},{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}`, ""),
			`{"error":{"message":"engine died"}}`, "[DONE]")
		defer s.Close()
		evs := checkEvents(t, readBridged(s).events)
		last := evs[len(evs)-1]
		out := last.Response.Output
		if last.Type != "response.failed" || len(out) != 2 || out[0].Status != "incomplete" || out[0].Arguments.OfString != `{"x":` || out[1].Status != "completed" {
			t.Errorf("%s: %s", types(evs), last.Response.JSON.Output.Raw())
		}
	})
	t.Run("cut", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`, delta(`{"content":"Hi"}`, ""), "!cut")
		defer s.Close()
		if got := readBridged(s); got.err != errTestCut {
			t.Fatalf("error %v", got.err)
		}
	})
	t.Run("tool call resumed", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`,
			delta(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}`, ""),
			delta(`{"content":"x"}`, ""),
			delta(`{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}`, ""), "[DONE]")
		defer s.Close()
		if got := readBridged(s); !errors.Is(got.err, ErrBadResponse) {
			t.Fatalf("error %v", got.err)
		}
	})
	t.Run("refusal and annotations", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"Hi"}`, delta(`{"content":"See x."}`, ""),
			delta(`{"annotations":[{"type":"url_citation","url_citation":{"start_index":4,"end_index":5,"url":"https://x.org","title":"X"}}]}`, ""),
			delta(`{"refusal":"But no."}`, "stop"), "[DONE]")
		defer s.Close()
		evs := checkEvents(t, readBridged(s).events)
		want := "created in_progress output_item.added content_part.added output_text.delta output_text.annotation.added " +
			"output_text.done content_part.done content_part.added refusal.delta refusal.done content_part.done output_item.done completed"
		if types(evs) != want {
			t.Fatalf("events %s\nwant   %s", types(evs), want)
		}
		msg := evs[len(evs)-1].Response.Output[0]
		if len(msg.Content) != 2 || msg.Content[0].Annotations[0].URL != "https://x.org" || msg.Content[1].Refusal != "But no." {
			t.Errorf("%s", msg.RawJSON())
		}
	})
}
