package providers

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

// lateCall is the chat deltas of tool call i (id id) of name, its arguments in pieces
// (JSON strings), its name coming as a server may send it: with at < 0 in the call's
// head, as OpenAI sends it; else in a delta of its own after the first at pieces (at
// 0: the call's second delta), the head naming none; with with set, in the delta of
// piece at (at >= 1; after the last piece when at is their number), the head carrying
// the first piece and an empty name.
func lateCall(i int, id, name string, pieces []string, at int, with bool) []string {
	head := `{"index":` + strconv.Itoa(i) + `,"id":"` + id + `","type":"function","function":{`
	piece := func(fn string) string {
		return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{`+fn+`}}]}`, "")
	}
	var out []string
	switch {
	case at < 0:
		out = append(out, delta(`{"tool_calls":[`+head+`"name":"`+name+`","arguments":""}}]}`, ""))
	case !with:
		out = append(out, delta(`{"tool_calls":[`+head+`"arguments":""}}]}`, ""))
		for _, p := range pieces[:at] {
			out = append(out, piece(`"arguments":`+p))
		}
		out = append(out, piece(`"name":"`+name+`"`))
		pieces = pieces[at:]
	default:
		out = append(out, delta(`{"tool_calls":[`+head+`"name":"","arguments":`+pieces[0]+`}}]}`, ""))
		for _, p := range pieces[1:at] {
			out = append(out, piece(`"arguments":`+p))
		}
		if at == len(pieces) {
			return append(out, piece(`"name":"`+name+`"`))
		}
		out = append(out, piece(`"name":"`+name+`","arguments":`+pieces[at]))
		pieces = pieces[at+1:]
	}
	for _, p := range pieces {
		out = append(out, piece(`"arguments":`+p))
	}
	return out
}

// maskIDs is s with each ID the bridge makes up ("fc_", "ctc_", "msg_", "rs_" or
// "resp_" and 48 random hex digits, a JSON string) as its prefix and "ID".
func maskIDs(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, `_`)
		if i < 0 || i+49 >= len(s) {
			b.WriteString(s)
			return b.String()
		}
		k := strings.LastIndexByte(s[:i], '"')
		switch p := s[k+1 : i]; {
		case k < 0 || s[i+49] != '"' || strings.Trim(s[i+1:i+49], "0123456789abcdef") != "":
		case p == "fc" || p == "ctc" || p == "msg" || p == "rs" || p == "resp":
			b.WriteString(s[:i+1])
			b.WriteString("ID")
			s = s[i+49:]
			continue
		}
		b.WriteString(s[:i+1])
		s = s[i+1:]
	}
}

// clientEvents is what a client reads in a stream's events, to compare two streams:
// the IDs the bridge makes up (their prefix kept) and the sequence numbers (checked
// to count from 0) left out; with join set, each run of one item's argument or input
// deltas joined into one (where a chat stream cut its pieces says nothing: deltas are
// joined).
func clientEvents(t *testing.T, evs []Event, join bool) []string {
	t.Helper()
	var out []string
	var last struct {
		typ, item string
		index     int64
		delta     string
	}
	seq := 0
	for _, ev := range evs {
		if ev.KeepAlive || ev.Done {
			continue
		}
		head := `{"type":"` + string(ev.Name) + `","sequence_number":` + strconv.Itoa(seq) + `,`
		if !strings.HasPrefix(string(ev.Data), head) {
			t.Fatalf("event %s named %s after %d events", ev.Data, ev.Name, seq)
		}
		seq++
		e := maskIDs(string(ev.Data[len(head):]))
		typ := string(ev.Name)
		if typ != "response.function_call_arguments.delta" && typ != "response.custom_tool_call_input.delta" {
			last.typ = ""
			out = append(out, typ+" "+e)
			continue
		}
		var d struct {
			ItemID      string `json:"item_id"`
			OutputIndex int64  `json:"output_index"`
			Delta       string `json:"delta"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("event %s: %v", ev.Data, err)
		}
		if join && last.typ == typ && last.item == d.ItemID && last.index == d.OutputIndex {
			last.delta += d.Delta
			out = out[:len(out)-1]
		} else {
			last.typ, last.item, last.index, last.delta = typ, d.ItemID, d.OutputIndex, d.Delta
		}
		out = append(out, typ+" "+strconv.FormatInt(last.index, 10)+" "+maskIDs(`"`+last.item+`"`)+" "+strconv.Quote(last.delta))
	}
	return out
}

// bridgedEvents is the bridge's stream of chat chunks data for Codex's turn (its
// function, custom and namespaced custom tools), with check set checked as a client
// reads it.
func bridgedEvents(t *testing.T, data []string, check bool) []Event {
	t.Helper()
	s := customStreamOf(t, codexCustomTurn, data...)
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	if check {
		checkItems(t, checkEvents(t, got.events))
	}
	return got.events
}

// quoteJSON is s as a JSON string.
func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// A server that sends a tool call's name after its id or its first arguments (the
// head naming none, or an empty name; the name alone in a later delta, or with a
// piece) gets the events it would get naming the call in its head: the item added
// once its name says its kind (a custom tool's call a custom_tool_call, ctc_ ID,
// its input streamed as custom_tool_call_input deltas; a function's a function_call
// with its name), the pieces held until then sent as that kind's deltas. Whatever
// the size of the pieces (1 to 64 bytes, as TestBridgeCustomToolStream cuts them)
// and wherever the name comes; for a call alone, one cut short, one before another
// call and one after (the stream naming the call first is checked as a client reads
// it; the others must equal it). Before, such a call was added as a function_call
// without a name, and a custom tool's then went on with input deltas under an fc_
// ID, the input of the pieces before its name missing from them.
func TestBridgeLateNamedCall(t *testing.T) {
	tools := []struct{ name, tool, args string }{
		{"custom tool", "apply_patch", chatArguments(patchInput)},
		{"custom tool of a namespace", "functions__exec", quoteJSON(`{"input":"text(await tools.ls({}))"}`)},
		{"custom tool, arguments of another shape", "apply_patch", quoteJSON(`{"patch":"x é"}`)},
		{"function", "shell_command", quoteJSON(`{"command":"ls \"a b\" é"}`)},
	}
	start := []string{delta(`{"role":"assistant","content":""}`, "")}
	end := []string{delta(`{}`, "tool_calls"), usageChunk, "[DONE]"}
	other := func(i int) []string {
		return lateCall(i, "call_"+strconv.Itoa(i), "shell_command", []string{quoteJSON(`{"command":"pwd"}`)}, -1, false)
	}
	scenarios := []struct {
		name string
		// stream is the chat stream with the call's deltas, call(i) for the call of
		// index i.
		stream func(call func(i int) []string) []string
		// cut leaves the call's last piece out.
		cut bool
	}{
		{"alone", func(call func(int) []string) []string { return join(start, call(0), end) }, false},
		{"cut short", func(call func(int) []string) []string {
			return join(start, call(0), []string{delta(`{}`, "length"), usageChunk, "[DONE]"})
		}, true},
		{"before another call", func(call func(int) []string) []string { return join(start, call(0), other(1), end) }, false},
		{"after another call", func(call func(int) []string) []string { return join(start, other(0), call(1), end) }, false},
	}
	for _, tool := range tools {
		for _, sc := range scenarios {
			t.Run(tool.name+", "+sc.name, func(t *testing.T) {
				t.Parallel()
				for _, size := range []int{1, 2, 3, 5, 7, 64} {
					pieces := splitArguments(tool.args, size)
					if sc.cut {
						if len(pieces) < 2 {
							continue
						}
						pieces = pieces[:len(pieces)-1]
					}
					call := func(at int, with bool) func(int) []string {
						return func(i int) []string { return lateCall(i, "call_"+strconv.Itoa(i), tool.tool, pieces, at, with) }
					}
					named := bridgedEvents(t, sc.stream(call(-1, false)), true)
					want, wantJoined := clientEvents(t, named, false), clientEvents(t, named, true)
					for at := 0; at <= len(pieces); at++ {
						for _, with := range []bool{false, true} {
							if with && at == 0 {
								continue
							}
							evs := bridgedEvents(t, sc.stream(call(at, with)), false)
							// The name after one piece at most: the piece held is one
							// delta, as when named first; after more, they go as one.
							w, joined := want, false
							if at > 1 {
								w, joined = wantJoined, true
							}
							if got := clientEvents(t, evs, joined); strings.Join(got, "\n") != strings.Join(w, "\n") {
								i := 0
								for i < min(len(got), len(w)) && got[i] == w[i] {
									i++
								}
								t.Fatalf("pieces of %d bytes, name after %d (with a piece %v): %d events, %d the same; event %d\n%s\nwant (the name first) %d events, event %d\n%s",
									size, at, with, len(got), i, i, at0(got, i), len(w), i, at0(w, i))
							}
						}
					}
				}
			})
		}
	}
}

// at0 is s[i], or nothing past s's end.
func at0(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// join is the slices one after the other.
func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// outputOf is a stream's terminal response.
func outputOf(t *testing.T, evs []Event) responses.Response {
	t.Helper()
	decoded := checkEvents(t, evs)
	return decoded[len(decoded)-1].Response
}

// Parallel calls interleaved by index (0, 1, 0, 1), call 0 named after call 1 began
// (call 1 named in its head, or later but before call 0): call 1 waits for call 0's
// item (items are added in output_index order, and call 0's is first), then both go
// on; the output holds the items of the same stream naming both calls first.
func TestBridgeLateNamedCallInterleaved(t *testing.T) {
	for _, tool := range []string{"apply_patch", "shell_command"} {
		for _, late1 := range []bool{false, true} {
			t.Run(tool+", call 1 named late "+strconv.FormatBool(late1), func(t *testing.T) {
				stream := func(named bool) []string {
					head0 := lateCall(0, "call_0", tool, nil, -1, false)[0]
					head1 := callChunk(1, "call_1", "shell_command", `{\"comm`)
					if !named {
						head0 = lateCall(0, "call_0", tool, nil, 0, false)[0]
					}
					if !named && late1 {
						head1 = delta(`{"tool_calls":[{"index":1,"id":"call_1","function":{"arguments":"{\"comm"}}]}`, "")
					}
					data := []string{delta(`{"role":"assistant","content":""}`, ""), head0, head1, callChunk(0, "", "", `{\"input\":\"a`)}
					if !named && late1 {
						data = append(data, delta(`{"tool_calls":[{"index":1,"function":{"name":"shell_command"}}]}`, ""))
					}
					if !named {
						data = append(data, delta(`{"tool_calls":[{"index":0,"function":{"name":"`+tool+`"}}]}`, ""))
					}
					return append(data, callChunk(1, "", "", `and\":\"ls\"}`), callChunk(0, "", "", `b\"}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
				}
				want := outputOf(t, bridgedEvents(t, stream(true), true))
				evs := bridgedEvents(t, stream(false), true)
				if g, w := maskIDs(outputOf(t, evs).JSON.Output.Raw()), maskIDs(want.JSON.Output.Raw()); g != w {
					t.Errorf("output %s; want (named first) %s", g, w)
				}
				if e := checkEvents(t, evs)[2]; e.Type != "response.output_item.added" || e.OutputIndex != 0 || e.Item.Name != tool {
					t.Errorf("event before call 0's item: %s", e.RawJSON())
				}
			})
		}
	}
}

// A call that never gets a name ends as it always did: a function_call with an empty
// name and its arguments, added when it ends (another call begins after its arguments
// are whole, text follows, the stream ends), its pieces held till then in one delta;
// a call named after it waits for it, and goes on as soon as it is done.
func TestBridgeUnnamedCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string // type:name=arguments, in output_index order
		events string // the events' types, when given
	}{
		{"alone", []string{lateCall(0, "call_0", "", nil, 0, false)[0], callChunk(0, "", "", `{\"a\":`), callChunk(0, "", "", `1}`),
			delta(`{}`, "tool_calls")}, `function_call:={"a":1}`, ""},
		{"another call after it", []string{lateCall(0, "call_0", "", nil, 0, false)[0], callChunk(0, "", "", `{}`),
			callChunk(1, "call_1", "apply_patch", `{\"input\":\"x\"}`), delta(`{}`, "tool_calls")}, `function_call:={} custom_tool_call:apply_patch=x`, ""},
		{"text after it", []string{lateCall(0, "call_0", "", nil, 0, false)[0], callChunk(0, "", "", `{\"a\":`), delta(`{"content":"ok"}`, ""),
			delta(`{}`, "stop")}, `function_call:={"a": message:=`, ""},
		{"interleaved with a named call", []string{lateCall(0, "call_0", "", nil, 0, false)[0], callChunk(0, "", "", `{\"a\":`),
			callChunk(1, "call_1", "shell_command", `{}`), callChunk(0, "", "", `2}`), delta(`{}`, "tool_calls")},
			`function_call:={"a":2} function_call:shell_command={}`, ""},
		{"done while a named call waits for it", []string{lateCall(0, "call_0", "", nil, 0, false)[0], callChunk(0, "", "", `{\"a\":`),
			callChunk(1, "call_1", "shell_command", `{`), callChunk(0, "", "", `1}`), callChunk(2, "call_2", "shell_command", `{}`),
			callChunk(1, "", "", `}`), delta(`{}`, "tool_calls")},
			`function_call:={"a":1} function_call:shell_command={} function_call:shell_command={}`,
			"created in_progress output_item.added function_call_arguments.delta function_call_arguments.done output_item.done " +
				"output_item.added function_call_arguments.delta output_item.added function_call_arguments.delta function_call_arguments.delta " +
				"function_call_arguments.done output_item.done function_call_arguments.done output_item.done completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := customStreamOf(t, codexCustomTurn, join(tc.chunks, []string{usageChunk, "[DONE]"})...)
			got := readBridged(s)
			_ = s.Close()
			if got.err != nil {
				t.Fatal(got.err)
			}
			evs := checkEvents(t, got.events)
			var have []string
			for _, o := range evs[len(evs)-1].Response.Output {
				have = append(have, o.Type+":"+o.Name+"="+o.Arguments.OfString+o.Input)
			}
			if strings.Join(have, " ") != tc.want {
				t.Errorf("output %v; want %s", have, tc.want)
			}
			if tc.events != "" && types(evs) != tc.events {
				t.Errorf("events %s; want %s", types(evs), tc.events)
			}
			// Each item's events come between its added and its done, in order.
			open := -1
			for _, e := range evs {
				switch {
				case e.Type == "response.output_item.added":
					if int(e.OutputIndex) != open+1 {
						t.Fatalf("item %d added after %d: %s", e.OutputIndex, open, types(evs))
					}
					open++
				case strings.HasPrefix(e.Type, "response.function_call_arguments") || strings.HasPrefix(e.Type, "response.custom_tool_call_input"):
					if e.OutputIndex > int64(open) {
						t.Fatalf("%s of item %d before it was added: %s", e.Type, e.OutputIndex, types(evs))
					}
				}
			}
		})
	}
}

// Calls held for their names count against the calls a stream may keep open: 128 are
// served (each a function_call without a name at the end), the 129th ends the stream
// with a bad answer.
func TestBridgeLateNamedCallsBounded(t *testing.T) {
	heads := func(n int) []string {
		var c []string
		for i := range n {
			c = append(c, delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"id":"call_`+strconv.Itoa(i)+`","function":{"arguments":"{"}}]}`, ""))
		}
		return c
	}
	for _, tc := range []struct {
		n   int
		err error
	}{{128, nil}, {129, errTooManyCalls}} {
		s := customStreamOf(t, codexCustomTurn, append(heads(tc.n), "[DONE]")...)
		got := readBridged(s)
		_ = s.Close()
		if got.err != tc.err || tc.err != nil && !errors.Is(got.err, ErrBadResponse) {
			t.Fatalf("%d calls: error %v; want %v", tc.n, got.err, tc.err)
		}
		if tc.err == nil {
			evs := checkEvents(t, got.events)
			out := evs[len(evs)-1].Response.Output
			if len(out) != tc.n {
				t.Fatalf("%d calls: output of %d", tc.n, len(out))
			}
			for _, o := range out {
				if o.Type != "function_call" || o.Name != "" || o.Arguments.OfString != "{" {
					t.Fatalf("%d calls: %s", tc.n, o.RawJSON())
				}
			}
		}
	}
}
