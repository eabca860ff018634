package providers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// toolLoopMessages is a tool-use loop's messages, built from its members in any form
// (keys in another case, escapes, a member given twice): the user's question, then
// each of msgs.
func toolLoopMessages(msgs ...string) string {
	return `{"model":"c","messages":[{"role":"user","content":"What does get_weather say for Paris?"},` +
		strings.Join(msgs, ",") + `],` +
		`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
}

const (
	loopCall   = `"tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]`
	loopCall2  = `"tool_calls":[{"id":"t2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Lyon\"}"}}]`
	loopSigned = `"thinking_blocks":[{"type":"thinking","thinking":"Checking the weather.","signature":"c2ln"}]`
	loopResult = `{"role":"tool","tool_call_id":"t1","content":"sunny"}`
)

// The token estimate's thinking room (ThinkingRoom) and the translation read the same
// tool loop: when a Claude 5 model's default thinking goes disabled because the loop's
// last tool-calling assistant turn has no thinking blocks to send, the backend adds no
// room to max_tokens and the estimate counts none; otherwise both count the room. The
// raw scan (endsUnthoughtToolLoop) answers as unthoughtToolLoop on the decoded messages.
func TestThinkingRoomAgreesWithToolLoopThinking(t *testing.T) {
	const signed = `,` + loopSigned
	for _, tc := range []struct {
		name, model, body string
		// off is set when the translation sends thinking disabled for the tool loop.
		off bool
		// room is what the backend adds to max_tokens, and the estimate counts.
		room int64
	}{
		// The cases of TestAnthropicToolLoopWithoutThinkingBlocksTurnsDefaultThinkingOff.
		{"runTools replay, no thinking_blocks", "claude-opus-5", toolLoopBody("", "", ""), true, 0},
		{"thinking_blocks null", "claude-opus-5", toolLoopBody(`,"thinking_blocks":null`, "", ""), true, 0},
		{"thinking_blocks empty", "claude-opus-5", toolLoopBody(`,"thinking_blocks":[]`, "", ""), true, 0},
		{"unsigned thinking block, never sent", "claude-opus-5",
			toolLoopBody(`,"thinking_blocks":[{"type":"thinking","thinking":"a","signature":""}]`, "", ""), true, 0},
		{"user text after the tool result, one turn with it", "claude-opus-5",
			toolLoopBody("", `,{"role":"user","content":"And in Lyon?"}`, ""), true, 0},
		{"haiku 5.5", "claude-haiku-5-5", toolLoopBody("", "", ""), true, 0},
		{"thinking block sent back", "claude-opus-5", toolLoopBody(signed, "", ""), false, highBudget},
		{"redacted thinking sent back", "claude-opus-5",
			toolLoopBody(`,"thinking_blocks":[{"type":"redacted_thinking","data":"ZGF0YQ=="}]`, "", ""), false, highBudget},
		{"loop ended by an answer", "claude-opus-5",
			toolLoopBody("", `,{"role":"assistant","content":"It is sunny."},{"role":"user","content":"Thanks"}`, ""), false, highBudget},
		{"reasoning_effort asked for", "claude-opus-5", toolLoopBody("", "", `,"reasoning_effort":"high"`), false, highBudget},
		{"thinking object asked for", "claude-opus-5", toolLoopBody("", "", `,"thinking":{"type":"adaptive"}`), false, highBudget},
		{"model that always thinks", "claude-fable-5", toolLoopBody("", "", ""), false, highBudget},
		{"model without default thinking", "claude-sonnet-4-5", toolLoopBody("", "", ""), false, 0},
		// The members as encoding/json reads them.
		{"keys in another case", "claude-opus-5",
			toolLoopMessages(`{"ROLE":"assistant","content":null,"Tool_Calls":`+loopCall[len(`"tool_calls":`):]+`}`,
				`{"Role":"tool","tool_call_id":"t1","content":"sunny"}`), true, 0},
		{"thinking_blocks in another case, sent back", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopCall+`,"Thinking_Blocks":`+loopSigned[len(`"thinking_blocks":`):]+`}`,
				loopResult), false, highBudget},
		{"thinking_blocks with the Kelvin sign, sent back", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopCall+`,"thin\u212aing_blocks":`+loopSigned[len(`"thinking_blocks":`):]+`}`,
				loopResult), false, highBudget},
		{"role escaped", "claude-opus-5",
			toolLoopMessages(`{"role":"assist\u0061nt","content":null,`+loopCall+`}`, `{"role":"\u0074ool","tool_call_id":"t1","content":"sunny"}`), true, 0},
		{"role given twice, the last wins", "claude-opus-5",
			toolLoopMessages(`{"role":"user","content":null,`+loopCall+`,"role":"assistant"}`, loopResult), true, 0},
		{"a null role changes nothing", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopCall+`,"role":null}`, loopResult), true, 0},
		{"thinking_blocks given twice, the last sent back", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,"thinking_blocks":null,`+loopCall+`,`+loopSigned+`}`, loopResult), false, highBudget},
		{"thinking_blocks given twice, the last empty", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopSigned+`,`+loopCall+`,"thinking_blocks":[]}`, loopResult), true, 0},
		{"system message between the call and its result", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopCall+`}`, `{"role":"system","content":"Be brief."}`, loopResult), true, 0},
		{"developer message inside a turn whose first message thought", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":"Let me check.",`+loopSigned+`}`, `{"role":"developer","content":"Be brief."}`,
				`{"role":"assistant","content":null,`+loopCall+`}`, loopResult), false, highBudget},
		{"an earlier turn thought, the last did not", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopSigned+`,`+loopCall+`}`, loopResult,
				`{"role":"assistant","content":null,`+loopCall2+`}`, `{"role":"tool","tool_call_id":"t2","content":"cloudy"}`), true, 0},
		{"the last turn thought, an earlier did not", "claude-opus-5",
			toolLoopMessages(`{"role":"assistant","content":null,`+loopCall+`}`, loopResult,
				`{"role":"assistant","content":null,`+loopSigned+`,`+loopCall2+`}`, `{"role":"tool","tool_call_id":"t2","content":"cloudy"}`), false, highBudget},
		{"Messages in another case", "claude-opus-5", strings.Replace(toolLoopBody("", "", ""), `"messages"`, `"Messages"`, 1), true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, rerr := translateOrRefusal(t, tc.model, tc.body)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if off := string(m["thinking"]) == `{"type":"disabled"}`; off != tc.off {
				t.Errorf("%s: sent thinking %s; want disabled: %v", tc.model, m["thinking"], tc.off)
			}
			added, est := roomAddedAndEstimated(t, tc.model, tc.body)
			if added != tc.room || est != tc.room {
				t.Errorf("%s: the backend adds %d tokens to max_tokens, ThinkingRoom (the estimate) counts %d; want %d",
					tc.model, added, est, tc.room)
			}
			decoded, scanned := toolLoopBothWays(t, []byte(tc.body))
			if decoded != scanned {
				t.Errorf("unthoughtToolLoop %v, endsUnthoughtToolLoop %v", decoded, scanned)
			}
		})
	}
}

// toolLoopBothWays is unthoughtToolLoop on body's messages decoded as the translation
// decodes them, and endsUnthoughtToolLoop on them raw.
func toolLoopBothWays(t *testing.T, body []byte) (decoded, scanned bool) {
	t.Helper()
	var r oaRequest
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	raw, n := messagesMember(body)
	if n != 1 {
		t.Fatalf("messages given %d times: %s", n, body)
	}
	return unthoughtToolLoop(r.Messages), endsUnthoughtToolLoop(raw)
}

// messagesMember is the body's messages member, as ThinkingRoom finds it, and how many
// times the body gives it.
func messagesMember(body []byte) (raw []byte, n int) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return nil, 0
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return raw, n
		}
		if foldedKey(k, "messages") {
			raw, n = v, n+1
		}
	}
}

// Messages given twice decode into each other's elements, which the scan does not
// follow: the estimate counts the room then, as it did before it read messages (more
// than is sent, never less).
func TestThinkingRoomCountsRoomForMessagesGivenTwice(t *testing.T) {
	body := toolLoopBody("", "", "")
	msgs, _ := messagesMember([]byte(body))
	twice := strings.Replace(body, `"model":"c",`, `"model":"c","messages":`+string(msgs)+`,`, 1)
	if _, est := roomAddedAndEstimated(t, "claude-opus-5", twice); est != highBudget {
		t.Errorf("ThinkingRoom %d, want the default room %d", est, highBudget)
	}
}

// The raw scan of a tool loop answers as unthoughtToolLoop on the messages the
// translation decodes, for any body it decodes with messages given once.
func FuzzEndsUnthoughtToolLoop(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/request_*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(toolLoopBody("", "", "")))
	f.Add([]byte(toolLoopBody(`,"thinking_blocks":[{"type":"redacted_thinking","data":"ZGF0YQ=="}]`, "", "")))
	f.Add([]byte(toolLoopMessages(`{"ROLE":"assist\u0061nt","content":null,`+loopCall+`,"role":null}`,
		`{"role":"developer","content":"x"}`, loopResult)))
	f.Add([]byte(`{"messages":[null,{"role":"assistant","tool_calls":[{}]},{"role":"tool"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r oaRequest
		if json.Unmarshal(body, &r) != nil {
			return
		}
		raw, n := messagesMember(body)
		if n != 1 {
			return
		}
		if decoded, scanned := unthoughtToolLoop(r.Messages), endsUnthoughtToolLoop(raw); decoded != scanned {
			t.Fatalf("unthoughtToolLoop %v, endsUnthoughtToolLoop %v:\n%s", decoded, scanned, body)
		}
	})
}

func BenchmarkThinkingRoom(b *testing.B) {
	for _, c := range []struct{ name, model, body string }{
		{"tool loop replayed", "claude-opus-5", toolLoopBody("", "", "")},
		{"tool loop with thinking_blocks", "claude-opus-5", toolLoopBody(`,`+loopSigned, "", "")},
		{"long tool loop", "claude-opus-5", longToolLoop},
	} {
		b.Run(c.name, func(b *testing.B) {
			be, err := New("bench", Config{Provider: "anthropic", BaseURL: "http://127.0.0.1:1/v1", Model: c.model, APIKey: "k", MaxTokens: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			body := []byte(c.body)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				be.ThinkingRoom(body)
			}
		})
	}
}

// longToolLoop is a tool loop of 40 turns, each with a 2 KB tool result.
var longToolLoop = func() string {
	turns := make([]string, 0, 80)
	for range 40 {
		turns = append(turns, `{"role":"assistant","content":null,`+loopCall+`}`,
			`{"role":"tool","tool_call_id":"t1","content":"`+strings.Repeat("sunny, 18C ", 186)+`"}`)
	}
	return toolLoopMessages(turns...)
}()
