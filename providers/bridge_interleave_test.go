package providers

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

// callChunk is a chunk with one tool call delta: index i, with id and name when id is
// not empty, and the arguments piece args (the inside of a JSON string).
func callChunk(i int, id, name, args string) string {
	d := `{"index":` + strconv.Itoa(i)
	if id != "" {
		d += `,"id":"` + id + `","type":"function","function":{"name":"` + name + `","arguments":"` + args + `"}}`
	} else {
		d += `,"function":{"arguments":"` + args + `"}}`
	}
	return delta(`{"tool_calls":[`+d+`]}`, "")
}

// checkItems checks what a stream's events say of its items as a client keeps them:
// each output_item.added takes the next output_index; every event naming an item
// names it by the item_id and output_index it was added with, while it is open;
// each item is done once, its function_call_arguments.done holding the arguments its
// deltas joined and the name it was added with, its output_item.done the same item;
// the terminal response's output holds the items done, in output_index order.
func checkItems(t *testing.T, evs []responses.ResponseStreamEventUnion) {
	t.Helper()
	type item struct {
		id, name string
		args     strings.Builder
		argsDone bool
		done     bool
		final    string
	}
	var items []*item
	for i, e := range evs {
		switch e.Type {
		case "response.created", "response.in_progress":
			continue
		case "response.completed", "response.incomplete", "response.failed":
			out := e.Response.Output
			if len(out) != len(items) {
				t.Fatalf("terminal output has %d items, %d were added: %s", len(out), len(items), e.Response.RawJSON())
			}
			for j, o := range out {
				it := items[j]
				if o.ID != it.id || !it.done || o.RawJSON() != it.final {
					t.Errorf("output[%d] %s; added %s, done %v as %s", j, o.RawJSON(), it.id, it.done, it.final)
				}
				if o.Type == "function_call" && (o.Arguments.OfString != it.args.String() || o.Name != it.name) {
					t.Errorf("output[%d] arguments %q name %q; deltas joined %q, added with %q", j, o.Arguments.OfString, o.Name, it.args.String(), it.name)
				}
			}
			continue
		case "response.output_item.added":
			if e.OutputIndex != int64(len(items)) {
				t.Fatalf("event %d adds output_index %d after %d items", i, e.OutputIndex, len(items))
			}
			it := &item{id: e.Item.ID, name: e.Item.Name}
			if e.Item.Type == "function_call" && (e.Item.Name == "" || e.Item.CallID == "" || e.Item.Status != "in_progress") {
				t.Errorf("event %d adds %s", i, e.Item.RawJSON())
			}
			items = append(items, it)
			continue
		}
		if e.OutputIndex < 0 || e.OutputIndex >= int64(len(items)) {
			t.Fatalf("event %d names output_index %d of %d items", i, e.OutputIndex, len(items))
		}
		it := items[e.OutputIndex]
		if e.Type != "response.output_item.done" && e.ItemID != it.id {
			t.Fatalf("event %d names item %s at output_index %d, which is %s", i, e.ItemID, e.OutputIndex, it.id)
		}
		if it.done {
			t.Fatalf("event %d names item %d after it was done", i, e.OutputIndex)
		}
		switch e.Type {
		case "response.function_call_arguments.delta":
			if it.argsDone {
				t.Fatalf("event %d: a delta after the arguments were done", i)
			}
			it.args.WriteString(e.Delta)
		case "response.function_call_arguments.done":
			it.argsDone = true
			name := e.AsResponseFunctionCallArgumentsDone().JSON.ExtraFields["name"].Raw()
			if e.Arguments != it.args.String() || name != strconv.Quote(it.name) {
				t.Errorf("event %d: arguments %q name %s; deltas joined %q, added with %q", i, e.Arguments, name, it.args.String(), it.name)
			}
		case "response.output_item.done":
			it.done, it.final = true, e.Item.RawJSON()
			if e.Item.ID != it.id || e.Item.Type == "function_call" && (!it.argsDone || e.Item.Arguments.OfString != it.args.String()) {
				t.Errorf("event %d: item done %s; added %s, arguments %q", i, e.Item.RawJSON(), it.id, it.args.String())
			}
		}
	}
}

// outputIndexes is, for each event of a type, the output_index it names.
func outputIndexes(evs []responses.ResponseStreamEventUnion, typ string) string {
	var b []string
	for _, e := range evs {
		if e.Type == typ {
			b = append(b, strconv.FormatInt(e.OutputIndex, 10))
		}
	}
	return strings.Join(b, " ")
}

// A chat stream whose parallel tool calls interleave by index is served as the
// Responses API serves parallel calls: each index its own function_call item, added
// as it first appears, its argument deltas naming it, and done in output_index order
// once the calls end; a call whose arguments are whole when the next begins is done
// then, as in a stream of calls one after the other.
func TestBridgeStreamInterleavedCalls(t *testing.T) {
	const req = `{"model":"chat","input":"Weather in Paris and Rome?","tools":[{"type":"function","name":"get_weather","parameters":{}}]}`
	for _, tc := range []struct {
		name   string
		chunks []string
		// want are the events' types; adds, deltas and dones the output_index of each
		// output_item.added, function_call_arguments.delta and output_item.done.
		want, adds, deltas, dones string
		status                    string
		// args are the terminal output's function calls' arguments, calls' statuses
		// their status.
		args, statuses []string
	}{
		{
			name: "heads first, then the arguments by index, after text",
			chunks: []string{delta(`{"role":"assistant","content":"Checking."}`, ""),
				callChunk(0, "call_a", "get_weather", ""), callChunk(1, "call_b", "get_weather", ""),
				callChunk(0, "", "", `{\"city\":`), callChunk(1, "", "", `{\"city\":`),
				callChunk(0, "", "", `\"Paris\"}`), callChunk(1, "", "", `\"Rome\"}`),
				delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
			want: "created in_progress output_item.added content_part.added output_text.delta output_text.done content_part.done output_item.done " +
				"output_item.added output_item.added function_call_arguments.delta function_call_arguments.delta function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done completed",
			adds: "0 1 2", deltas: "1 2 1 2", dones: "0 1 2", status: "completed",
			args: []string{`{"city":"Paris"}`, `{"city":"Rome"}`}, statuses: []string{"completed", "completed"},
		},
		{
			name: "three calls' pieces in turn, the finish with the usage",
			chunks: []string{callChunk(0, "call_a", "get_weather", `{\"city\":`), callChunk(1, "call_b", "get_weather", `{\"city\":`),
				callChunk(2, "call_c", "get_time", `{`), callChunk(0, "", "", `\"Paris\"}`), callChunk(1, "", "", `\"Rome\"}`), callChunk(2, "", "", `}`),
				strings.Replace(delta(`{}`, "tool_calls"), `}]}`, `}],"usage":{"prompt_tokens":7,"completion_tokens":4}}`, 1), "[DONE]"},
			want: "created in_progress output_item.added function_call_arguments.delta output_item.added function_call_arguments.delta " +
				"output_item.added function_call_arguments.delta function_call_arguments.delta function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done function_call_arguments.done output_item.done completed",
			adds: "0 1 2", deltas: "0 1 2 0 1 2", dones: "0 1 2", status: "completed",
			args: []string{`{"city":"Paris"}`, `{"city":"Rome"}`, `{}`}, statuses: []string{"completed", "completed", "completed"},
		},
		{
			name: "cut by max tokens: the call cut short incomplete, the whole one completed",
			chunks: []string{callChunk(0, "call_a", "get_weather", ""), callChunk(1, "call_b", "get_weather", ""),
				callChunk(1, "", "", `{\"city\":\"Rome\"}`), callChunk(0, "", "", `{\"city\":\"Pa`), delta(`{}`, "length"), "[DONE]"},
			want: "created in_progress output_item.added output_item.added function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done incomplete",
			adds: "0 1", deltas: "1 0", dones: "0 1", status: "incomplete",
			args: []string{`{"city":"Pa`, `{"city":"Rome"}`}, statuses: []string{"incomplete", "completed"},
		},
		{
			name: "a call whole when the next begins is done then, the others at the end",
			chunks: []string{callChunk(0, "call_a", "get_time", `{}`), callChunk(1, "call_b", "get_weather", ""), callChunk(2, "call_c", "get_weather", ""),
				callChunk(2, "", "", `{\"city\":\"Rome\"}`), callChunk(1, "", "", `{\"city\":\"Paris\"}`), callChunk(0, "", "", ``),
				delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
			want: "created in_progress output_item.added function_call_arguments.delta function_call_arguments.done output_item.done " +
				"output_item.added output_item.added function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done completed",
			adds: "0 1 2", deltas: "0 2 1", dones: "0 1 2", status: "completed",
			args: []string{`{}`, `{"city":"Paris"}`, `{"city":"Rome"}`}, statuses: []string{"completed", "completed", "completed"},
		},
		{
			name: "text while calls are open: the calls are done first",
			chunks: []string{callChunk(0, "call_a", "get_weather", ""), callChunk(1, "call_b", "get_weather", `{}`),
				callChunk(0, "", "", `{}`), delta(`{"content":"Done."}`, ""), delta(`{}`, "stop"), "[DONE]"},
			want: "created in_progress output_item.added output_item.added function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done " +
				"output_item.added content_part.added output_text.delta output_text.done content_part.done output_item.done completed",
			adds: "0 1 2", deltas: "1 0", dones: "0 1 2", status: "completed",
			args: []string{`{}`, `{}`}, statuses: []string{"completed", "completed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bridgeStreamOf(req, tc.chunks...)
			defer s.Close()
			got := readBridged(s)
			if got.err != nil {
				t.Fatal(got.err)
			}
			evs := checkEvents(t, got.events)
			if types(evs) != tc.want {
				t.Fatalf("events %s\nwant   %s", types(evs), tc.want)
			}
			checkItems(t, evs)
			if a := outputIndexes(evs, "response.output_item.added"); a != tc.adds {
				t.Errorf("items added at %s; want %s", a, tc.adds)
			}
			if d := outputIndexes(evs, "response.function_call_arguments.delta"); d != tc.deltas {
				t.Errorf("argument deltas of items %s; want %s", d, tc.deltas)
			}
			if d := outputIndexes(evs, "response.output_item.done"); d != tc.dones {
				t.Errorf("items done %s; want %s", d, tc.dones)
			}
			final := evs[len(evs)-1].Response
			if string(final.Status) != tc.status {
				t.Errorf("status %s; want %s", final.Status, tc.status)
			}
			var args, statuses []string
			for _, o := range final.Output {
				if o.Type == "function_call" {
					args = append(args, o.Arguments.OfString)
					statuses = append(statuses, string(o.Status))
				}
			}
			if strings.Join(args, " ") != strings.Join(tc.args, " ") || strings.Join(statuses, " ") != strings.Join(tc.statuses, " ") {
				t.Errorf("calls' arguments %q statuses %q; want %q %q", args, statuses, tc.args, tc.statuses)
			}
		})
	}
}

// A stream that adds to a call once it is done (after text, or after its arguments
// were whole and another call began) or opens more than 128 calls at once ends with
// the stream's error, a bad answer; an empty piece for a done call is no addition.
func TestBridgeStreamInterleavedCallsRefused(t *testing.T) {
	const req = `{"model":"chat","input":"x"}`
	heads := func(n int) []string {
		var c []string
		for i := range n {
			c = append(c, callChunk(i, "call_"+strconv.Itoa(i), "f", ""))
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		chunks []string
		err    error
	}{
		{"a call resumed after text", []string{callChunk(0, "a", "f", ""), callChunk(1, "b", "f", ""), delta(`{"content":"x"}`, ""),
			callChunk(0, "", "", `{}`), "[DONE]"}, errToolReopened},
		{"a whole call resumed after the next began", []string{callChunk(0, "a", "f", `{}`), callChunk(1, "b", "f", ""),
			callChunk(0, "", "", ` `), "[DONE]"}, errToolReopened},
		{"129 calls open", append(heads(129), "[DONE]"), errTooManyCalls},
		{"an empty piece for a done call", []string{callChunk(0, "a", "f", `{}`), callChunk(1, "b", "f", "{}"),
			callChunk(0, "", "", ``), "[DONE]"}, nil},
		{"128 calls open", append(heads(128), "[DONE]"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bridgeStreamOf(req, tc.chunks...)
			defer s.Close()
			got := readBridged(s)
			if got.err != tc.err || tc.err != nil && !errors.Is(got.err, ErrBadResponse) {
				t.Fatalf("error %v; want %v", got.err, tc.err)
			}
			if tc.err == nil {
				evs := checkEvents(t, got.events)
				checkItems(t, evs)
			}
		})
	}
}

// The response a stream of interleaved calls ends with holds the items the buffered
// answer of the same chat completion holds, and so does the stream of the same calls
// one after the other: a client gets the same output whichever way it asks.
func TestBridgeStreamInterleavedMatchesAnswer(t *testing.T) {
	const req = `{"model":"chat","input":"Weather?","tools":[{"type":"function","name":"get_weather","parameters":{}}]}`
	head := []string{delta(`{"role":"assistant","reasoning_content":"Both."}`, ""), delta(`{"content":"Checking both."}`, "")}
	end := []string{delta(`{}`, "tool_calls"), usageChunk, "[DONE]"}
	interleaved := append(append(append([]string{}, head...),
		callChunk(0, "call_a", "get_weather", ""), callChunk(1, "call_b", "get_weather", ""), callChunk(2, "call_c", "get_time", ""),
		callChunk(2, "", "", `{}`), callChunk(0, "", "", `{\"city\":`), callChunk(1, "", "", `{\"city\":\"Ro`),
		callChunk(0, "", "", `\"Paris\"}`), callChunk(1, "", "", `me\"}`)), end...)
	sequential := append(append(append([]string{}, head...),
		callChunk(0, "call_a", "get_weather", `{\"city\":\"Paris\"}`), callChunk(1, "call_b", "get_weather", `{\"city\":\"Rome\"}`),
		callChunk(2, "call_c", "get_time", `{}`)), end...)
	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant",` +
		`"content":"Checking both.","reasoning_content":"Both.","tool_calls":[` +
		`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
		`{"id":"call_b","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}},` +
		`{"id":"call_c","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":"tool_calls"}],` +
		`"usage":{"prompt_tokens":7,"completion_tokens":4}}`
	// items is a response's output with the IDs the bridge makes up left out.
	items := func(resp responses.Response) string {
		var out []map[string]any
		if err := json.Unmarshal([]byte(resp.JSON.Output.Raw()), &out); err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			delete(o, "id")
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	buffered := items(bridgeAnswerOf(t, req, chat, Usage{Input: 7, Output: 4}))
	for name, chunks := range map[string][]string{"interleaved": interleaved, "one after the other": sequential} {
		s := bridgeStreamOf(req, chunks...)
		got := readBridged(s)
		s.Close()
		if got.err != nil {
			t.Fatalf("%s: %v", name, got.err)
		}
		evs := checkEvents(t, got.events)
		checkItems(t, evs)
		if streamed := items(evs[len(evs)-1].Response); streamed != buffered {
			t.Errorf("%s stream's output\n%s\nbuffered answer's\n%s", name, streamed, buffered)
		}
	}
}
