package providers

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

const (
	thinkA  = `{"type":"thinking","thinking":"Call \"f\".","signature":"c2lnQQ=="}`
	thinkB  = `{"type":"thinking","thinking":"","signature":"c2lnQg=="}`
	redactR = `{"type":"redacted_thinking","data":"ZGF0YQ=="}`
)

// encThinking is the encrypted_content the bridge gives the thinking blocks of a
// JSON array.
func encThinking(blocks string) string { return base64.StdEncoding.EncodeToString([]byte(blocks)) }

// reasoningItem is a reasoning item whose encrypted_content is the JSON value enc.
func reasoningItem(enc string) string {
	return `{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"t"}],"encrypted_content":` + enc + `}`
}

// A reasoning item's encrypted_content, the thinking blocks the bridge answered, goes
// back as the thinking_blocks of the assistant message after it, first in it; a
// reasoning item without one, or with content that is not the bridge's, is left out,
// refusing nothing.
func TestBridgeRequestThinking(t *testing.T) {
	const (
		user = `{"role":"user","content":"Weather?"}`
		call = `{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"}`
		out  = `{"type":"function_call_output","call_id":"c1","output":"18C"}`
		msg  = `{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]}`

		wantUser  = `{"role":"user","content":"Weather?"}`
		wantCalls = `"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`
		wantOut   = `{"role":"tool","tool_call_id":"c1","content":"18C"}`
	)
	both := `"` + encThinking(`[`+thinkA+`,`+redactR+`]`) + `"`
	cases := []struct{ name, input, want string }{
		{"before function calls",
			user + `,` + reasoningItem(both) + `,` + call + `,` + out,
			wantUser + `,{"role":"assistant","thinking_blocks":[` + thinkA + `,` + redactR + `],"content":null,` + wantCalls + `},` + wantOut},
		{"before a message and its calls",
			user + `,` + reasoningItem(both) + `,` + msg + `,` + call + `,` + out,
			wantUser + `,{"role":"assistant","thinking_blocks":[` + thinkA + `,` + redactR + `],"content":"Checking.",` + wantCalls + `},` + wantOut},
		{"redacted only, an empty text",
			user + `,` + reasoningItem(`"`+encThinking(`[`+redactR+`,`+thinkB+`]`)+`"`) + `,` + msg,
			wantUser + `,{"role":"assistant","thinking_blocks":[` + redactR + `,` + thinkB + `],"content":"Checking."}`},
		{"two reasoning items joined in order",
			user + `,` + reasoningItem(`"`+encThinking(`[`+thinkA+`]`)+`"`) + `,` + reasoningItem(`"`+encThinking(` [ `+redactR+` ] `)+`"`) + `,` + call + `,` + out,
			wantUser + `,{"role":"assistant","thinking_blocks":[` + thinkA + `,` + redactR + `],"content":null,` + wantCalls + `},` + wantOut},
		{"between a message and its calls: the calls go as a message of their own",
			user + `,` + msg + `,` + reasoningItem(both) + `,` + call + `,` + out,
			wantUser + `,{"role":"assistant","content":"Checking."},{"role":"assistant","thinking_blocks":[` + thinkA + `,` + redactR + `],"content":null,` + wantCalls + `},` + wantOut},
		{"slash escaped",
			user + `,` + reasoningItem(strings.ReplaceAll(`"`+encThinking(`[`+thinkA+`]`)+`"`, "/", `\/`)) + `,` + msg,
			wantUser + `,{"role":"assistant","thinking_blocks":[` + thinkA + `],"content":"Checking."}`},
		{"followed by a user message: dropped",
			user + `,` + reasoningItem(both) + `,` + user + `,` + msg,
			wantUser + `,` + wantUser + `,{"role":"assistant","content":"Checking."}`},
		{"no encrypted_content",
			user + `,{"type":"reasoning","id":"rs_1","summary":[]},` + call + `,` + out,
			wantUser + `,{"role":"assistant","content":null,` + wantCalls + `},` + wantOut},
	}
	for _, bad := range []struct{ name, enc string }{
		{"null", `null`},
		{"empty", `""`},
		{"OpenAI's own", `"gAAAAABoMZ8rVb0_Qw-Kd7x1cE3h"`},
		{"not base64", `"not base64!"`},
		{"an object", `"` + encThinking(thinkA) + `"`},
		{"an empty array", `"` + encThinking(`[]`) + `"`},
		{"a text block", `"` + encThinking(`[{"type":"text","text":"x"}]`) + `"`},
		{"thinking not a string", `"` + encThinking(`[{"type":"thinking","thinking":1,"signature":"s"}]`) + `"`},
		{"redacted without data", `"` + encThinking(`[{"type":"redacted_thinking"}]`) + `"`},
		{"trailing bytes", `"` + encThinking(`[`+thinkA+`]x`) + `"`},
		{"a number", `12`},
	} {
		cases = append(cases, struct{ name, input, want string }{"left out: " + bad.name,
			user + `,` + reasoningItem(bad.enc) + `,` + msg + `,` + call + `,` + out,
			wantUser + `,{"role":"assistant","content":"Checking.",` + wantCalls + `},` + wantOut})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr, prev := bridgeChat(`{"model":"chat","input":[`+c.input+`]}`, false)
			if rerr != nil || prev {
				t.Fatalf("refused: %+v %v", rerr, prev)
			}
			sameJSONText(t, got, `{"model":"chat","messages":[`+c.want+`]}`)
			if strings.Count(got, `"thinking_blocks"`) != strings.Count(got, `{"role":"assistant","thinking_blocks":`) {
				t.Errorf("thinking_blocks not first in its message: %s", got)
			}
		})
	}
}

// A chat answer's thinking_blocks, all of them in order, go in its reasoning item's
// encrypted_content, which is made even when no reasoning text came; an answer
// without them has none.
func TestBridgeAnswerThinking(t *testing.T) {
	answer := func(msg string) string {
		return `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant"` + msg + `},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":9}}`
	}
	calls := `,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`
	cases := []struct {
		name, msg, text, blocks string
	}{
		{"thinking and redacted", `,"content":null,"reasoning_content":"Call \"f\".","thinking_blocks":[` + thinkA + `,` + redactR + `]` + calls,
			`Call "f".`, `[` + thinkA + `,` + redactR + `]`},
		{"redacted only", `,"content":null,"thinking_blocks":[` + redactR + `]` + calls, "", `[` + redactR + `]`},
		{"text left out", `,"content":null,"thinking_blocks":[` + thinkB + `]` + calls, "", `[` + thinkB + `]`},
		{"no blocks", `,"content":null,"reasoning_content":"Think."` + calls, "Think.", ""},
		{"blocks empty", `,"content":null,"reasoning_content":"Think.","thinking_blocks":[]` + calls, "Think.", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := bridgeAnswerOf(t, `{"model":"chat","input":"x"}`, answer(c.msg), Usage{Input: 5, Output: 9})
			if len(resp.Output) != 2 || resp.Output[0].Type != "reasoning" || resp.Output[1].Type != "function_call" {
				t.Fatalf("%s", resp.RawJSON())
			}
			rs := resp.Output[0].AsReasoning()
			if c.text == "" && len(rs.Content) != 0 || c.text != "" && (len(rs.Content) != 1 || rs.Content[0].Text != c.text) {
				t.Errorf("content %s", resp.Output[0].RawJSON())
			}
			checkEncrypted(t, resp.Output[0], c.blocks)
			if c.blocks == "" {
				return
			}
			// Sent back with the call's output, the blocks go up as they came.
			items := []string{`{"role":"user","content":"x"}`, resp.Output[0].RawJSON(), resp.Output[1].RawJSON(),
				`{"type":"function_call_output","call_id":"c1","output":"r"}`}
			got, _, rerr, _ := bridgeChat(`{"model":"chat","input":[`+strings.Join(items, ",")+`]}`, false)
			if rerr != nil {
				t.Fatal(rerr)
			}
			var body struct {
				Messages []struct {
					ThinkingBlocks json.RawMessage `json:"thinking_blocks"`
				} `json:"messages"`
			}
			if err := json.Unmarshal([]byte(got), &body); err != nil || len(body.Messages) != 3 {
				t.Fatalf("%s (%v)", got, err)
			}
			if string(body.Messages[1].ThinkingBlocks) != c.blocks {
				t.Errorf("sent back %s, want %s", body.Messages[1].ThinkingBlocks, c.blocks)
			}
		})
	}
}

// checkEncrypted checks that item's encrypted_content holds blocks (absent for none).
func checkEncrypted(t *testing.T, item responses.ResponseOutputItemUnion, blocks string) {
	t.Helper()
	f := item.JSON.EncryptedContent
	if blocks == "" {
		if f.Valid() || strings.Contains(item.RawJSON(), "encrypted_content") {
			t.Errorf("encrypted_content without blocks: %s", item.RawJSON())
		}
		return
	}
	raw, err := base64.StdEncoding.DecodeString(item.EncryptedContent)
	if err != nil || string(raw) != blocks {
		t.Errorf("encrypted_content holds %s (%v), want %s", raw, err, blocks)
	}
}

// A stream's thinking_blocks deltas (each block once it ends) go in its reasoning
// item's encrypted_content, in output_item.done and the terminal response alike; a
// block that comes with no reasoning text before it begins a reasoning item.
func TestBridgeStreamThinking(t *testing.T) {
	call := delta(`{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}`, "")
	cases := []struct {
		name   string
		chunks []string
		events string
		text   string
		blocks string
	}{
		{"text, its block, a redacted one",
			[]string{delta(`{"role":"assistant","reasoning_content":"Call "}`, ""), delta(`{"reasoning_content":"\"f\"."}`, ""),
				delta(`{"thinking_blocks":[`+thinkA+`]}`, ""), delta(`{"thinking_blocks":[`+redactR+`]}`, ""), call},
			"output_item.added content_part.added reasoning_text.delta reasoning_text.delta reasoning_text.done content_part.done output_item.done",
			`Call "f".`, `[` + thinkA + `,` + redactR + `]`},
		{"text left out",
			[]string{delta(`{"role":"assistant","content":""}`, ""), delta(`{"thinking_blocks":[`+thinkB+`]}`, ""), call},
			"output_item.added output_item.done", "", `[` + thinkB + `]`},
		{"redacted first, then text",
			[]string{delta(`{"thinking_blocks":[`+redactR+`]}`, ""), delta(`{"reasoning_content":"Call \"f\"."}`, ""),
				delta(`{"thinking_blocks":[`+thinkA+`]}`, ""), call},
			"output_item.added content_part.added reasoning_text.delta reasoning_text.done content_part.done output_item.done",
			`Call "f".`, `[` + redactR + `,` + thinkA + `]`},
		{"no blocks",
			[]string{delta(`{"reasoning_content":"Think."}`, ""), call},
			"output_item.added content_part.added reasoning_text.delta reasoning_text.done content_part.done output_item.done",
			"Think.", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := bridgeStreamOf(`{"model":"chat","input":"x"}`, append(c.chunks, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")...)
			defer s.Close()
			got := readBridged(s)
			if got.err != nil {
				t.Fatal(got.err)
			}
			evs := checkEvents(t, got.events)
			want := "created in_progress " + c.events +
				" output_item.added function_call_arguments.delta function_call_arguments.done output_item.done completed"
			if types(evs) != want {
				t.Fatalf("events %s\nwant   %s", types(evs), want)
			}
			final := evs[len(evs)-1].Response
			if len(final.Output) != 2 {
				t.Fatalf("%s", final.RawJSON())
			}
			rs := final.Output[0].AsReasoning()
			if c.text == "" && len(rs.Content) != 0 || c.text != "" && (len(rs.Content) != 1 || rs.Content[0].Text != c.text) {
				t.Errorf("content %s", final.Output[0].RawJSON())
			}
			checkEncrypted(t, final.Output[0], c.blocks)
			var done responses.ResponseStreamEventUnion
			for _, e := range evs {
				if e.Type == "response.output_item.done" && e.Item.Type == "reasoning" {
					done = e
				}
			}
			if done.Item.RawJSON() != final.Output[0].RawJSON() {
				t.Errorf("output_item.done %s\nresponse      %s", done.Item.RawJSON(), final.Output[0].RawJSON())
			}
			// The reasoning item's first event is content when it has no text, so that
			// the thinking counts as the answer's beginning.
			for _, ev := range got.events {
				if string(ev.Name) == "response.output_item.added" {
					if !ev.Content && c.text == "" {
						t.Errorf("reasoning item opened by its block: not content")
					}
					break
				}
			}
		})
	}
}

// The usage chunk, after the finish chunk, is the last a chat stream sends: the
// terminal event goes at it, with its usage, and the stream ends cleanly whether
// [DONE] or a cut follows, the inner stream read to its end (not aborted). A stream
// whose usage comes otherwise still ends at [DONE].
func TestBridgeStreamUsageLast(t *testing.T) {
	for _, c := range []struct {
		name, last string
	}{
		{"then [DONE]", "[DONE]"},
		{"then a cut", "!cut"},
		{"then a keep-alive and more, then [DONE]", "!ping\n" + delta(`{"content":"late"}`, "") + "\n[DONE]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			chunks := append([]string{delta(`{"content":"Hi"}`, ""), delta(`{}`, "stop"), usageChunk}, strings.Split(c.last, "\n")...)
			s := bridgeStreamOf(`{"model":"chat","input":"x"}`, chunks...)
			defer s.Close()
			in := s.in.(*chunkEvents)
			// The terminal event comes before the inner stream's end is read.
			var ev Event
			for !ev.HasUsage {
				if err := s.Next(&ev); err != nil {
					t.Fatal(err)
				}
			}
			if string(ev.Name) != "response.completed" || ev.Usage.Input != 7 || ev.Usage.Output != 4 || in.i != 3 {
				t.Fatalf("terminal %s %+v after %d chunks", ev.Name, ev.Usage, in.i)
			}
			if err := s.Next(&ev); err != nil || !ev.Done {
				t.Fatalf("after the terminal event: %+v %v", ev, err)
			}
			if in.i != len(in.data) {
				t.Errorf("inner stream read to %d of %d", in.i, len(in.data))
			}
		})
	}
	for _, c := range []struct {
		name   string
		chunks []string
	}{
		{"usage before the finish", []string{delta(`{"content":"Hi"}`, ""), usageChunk, delta(`{}`, "stop"), "[DONE]"}},
		{"usage on the finish chunk", []string{delta(`{"content":"Hi"}`, ""),
			strings.TrimSuffix(delta(`{}`, "stop"), "}") + `,"usage":{"prompt_tokens":7,"completion_tokens":4}}`, "[DONE]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := bridgeStreamOf(`{"model":"chat","input":"x"}`, c.chunks...)
			defer s.Close()
			got := readBridged(s)
			evs := checkEvents(t, got.events)
			term := got.events[len(got.events)-2]
			if final := evs[len(evs)-1].Response; final.Status != "completed" || final.OutputText() != "Hi" || !term.HasUsage || term.Usage.Output != 4 {
				t.Errorf("%s %+v", final.RawJSON(), term)
			}
		})
	}
	t.Run("cut before the usage", func(t *testing.T) {
		s := bridgeStreamOf(`{"model":"chat","input":"x"}`, delta(`{"content":"Hi"}`, ""), delta(`{}`, "stop"), "!cut")
		defer s.Close()
		if got := readBridged(s); got.err != errTestCut {
			t.Fatalf("error %v", got.err)
		}
	})
}
