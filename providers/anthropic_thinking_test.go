package providers

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tollgate/tollgate/internal/jsonscan"
)

// thinkingRequest translates body (messages added) with the default max_tokens 1024.
func thinkingRequest(t *testing.T, fields string) []byte {
	t.Helper()
	return anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}]`+fields+`}`)
}

// thinkingRefusal translates a request that must be refused and returns the refusal.
func thinkingRefusal(t *testing.T, fields string) *requestError {
	t.Helper()
	out, rerr := appendAnthropicRequest(nil, []byte(`{"model":"chat","messages":[{"role":"user","content":"Hi"}]`+fields+`}`), quoteModel("claude-x"), 1024, claudeModel{}, false)
	if rerr == nil {
		t.Fatalf("translated %s", out)
	}
	return rerr
}

// OpenAI's reasoning_effort turns on extended thinking with LiteLLM's budgets (minimal
// as low: the API's least budget is 1024); none is off. Without a max_tokens from the
// client, the backend's default is the answer's room on top of the budget.
func TestAnthropicReasoningEffort(t *testing.T) {
	for _, c := range []struct {
		effort   string
		thinking string
		max      string
	}{
		{`"none"`, "", "1024"},
		{`null`, "", "1024"},
		{`"minimal"`, `{"type":"enabled","budget_tokens":1024}`, "2048"},
		{`"low"`, `{"type":"enabled","budget_tokens":1024}`, "2048"},
		{`"medium"`, `{"type":"enabled","budget_tokens":2048}`, "3072"},
		{`"high"`, `{"type":"enabled","budget_tokens":4096}`, "5120"},
		{`"xhigh"`, `{"type":"enabled","budget_tokens":8192}`, "9216"},
		{`"max"`, `{"type":"enabled","budget_tokens":16384}`, "17408"},
	} {
		t.Run(c.effort, func(t *testing.T) {
			out := thinkingRequest(t, `,"reasoning_effort":`+c.effort)
			if got, _ := jsonscan.Field(out, "thinking"); string(got) != c.thinking {
				t.Errorf("thinking %s, want %s", got, c.thinking)
			}
			if got, _ := jsonscan.Field(out, "max_tokens"); string(got) != c.max {
				t.Errorf("max_tokens %s, want %s", got, c.max)
			}
			out = thinkingRequest(t, `,"reasoning_effort":`+c.effort+`,"max_completion_tokens":20000`)
			if got, _ := jsonscan.Field(out, "max_tokens"); string(got) != "20000" {
				t.Errorf("the client's max_completion_tokens 20000 sent as %s", got)
			}
		})
	}
	for _, bad := range []string{`"extreme"`, `"HIGH"`, `1`, `{"effort":"low"}`} {
		t.Run("refused "+bad, func(t *testing.T) {
			if rerr := thinkingRefusal(t, `,"reasoning_effort":`+bad); rerr.param != "reasoning_effort" {
				t.Errorf("param %q: %s", rerr.param, rerr.msg)
			}
		})
	}
}

// Every reasoning_effort the official OpenAI SDK offers is taken.
func TestAnthropicReasoningEffortSDKValues(t *testing.T) {
	for _, effort := range []openai.ReasoningEffort{
		openai.ReasoningEffortNone, openai.ReasoningEffortMinimal, openai.ReasoningEffortLow,
		openai.ReasoningEffortMedium, openai.ReasoningEffortHigh, openai.ReasoningEffortXhigh,
		openai.ReasoningEffortMax,
	} {
		t.Run(string(effort), func(t *testing.T) {
			body := `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"` + string(effort) + `"}`
			if _, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false); rerr != nil {
				t.Errorf("refused: %s: %s", rerr.param, rerr.msg)
			}
		})
	}
}

// The client's own thinking object (an extra field of the OpenAI SDKs) goes as it is
// and wins over reasoning_effort; one that is not an object is refused.
func TestAnthropicThinkingPassthrough(t *testing.T) {
	for _, c := range []struct{ name, fields, thinking, max string }{
		{"enabled", `,"thinking":{"type":"enabled","budget_tokens":1500},"max_tokens":3000`, `{"type":"enabled","budget_tokens":1500}`, "3000"},
		{"wins over reasoning_effort", `,"reasoning_effort":"high","thinking":{"type":"enabled", "budget_tokens":2000}`, `{"type":"enabled", "budget_tokens":2000}`, "3024"},
		{"disabled wins over reasoning_effort", `,"reasoning_effort":"high","thinking":{"type":"disabled"}`, `{"type":"disabled"}`, "1024"},
		{"adaptive keeps the room of the default effort", `,"thinking":{"type":"adaptive"}`, `{"type":"adaptive"}`, "5120"},
		{"null is none", `,"thinking":null,"reasoning_effort":"low"`, `{"type":"enabled","budget_tokens":1024}`, "2048"},
		{"a budget too large for the API is its to refuse", `,"thinking":{"type":"enabled","budget_tokens":9223372036854775807}`, `{"type":"enabled","budget_tokens":9223372036854775807}`, "1024"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := thinkingRequest(t, c.fields)
			if got, _ := jsonscan.Field(out, "thinking"); string(got) != c.thinking {
				t.Errorf("thinking %s, want %s", got, c.thinking)
			}
			if got, _ := jsonscan.Field(out, "max_tokens"); string(got) != c.max {
				t.Errorf("max_tokens %s, want %s", got, c.max)
			}
		})
	}
	for _, bad := range []string{`"enabled"`, `true`, `[{"type":"enabled"}]`} {
		t.Run("refused "+bad, func(t *testing.T) {
			if rerr := thinkingRefusal(t, `,"thinking":`+bad); rerr.param != "thinking" {
				t.Errorf("param %q: %s", rerr.param, rerr.msg)
			}
		})
	}
}

// A client's max_tokens (or max_completion_tokens) bounds thinking too, as OpenAI's
// does reasoning: one that leaves the budget no room is refused, naming the field the
// client sent, rather than raised behind its back.
func TestAnthropicThinkingMaxTokens(t *testing.T) {
	for _, c := range []struct{ fields, param, source string }{
		{`,"reasoning_effort":"high","max_tokens":4096`, "max_tokens", `reasoning_effort "high"`},
		{`,"reasoning_effort":"low","max_completion_tokens":500`, "max_completion_tokens", `reasoning_effort "low"`},
		{`,"reasoning_effort":"low","max_tokens":2000,"max_completion_tokens":1024`, "max_completion_tokens", `reasoning_effort "low"`},
		{`,"thinking":{"type":"enabled","budget_tokens":5000},"max_tokens":5000`, "max_tokens", "thinking.budget_tokens"},
	} {
		t.Run(c.fields, func(t *testing.T) {
			rerr := thinkingRefusal(t, c.fields)
			if rerr.param != c.param || !strings.Contains(rerr.msg, c.source) || !strings.HasPrefix(rerr.msg, c.param+" must be greater than the thinking budget") {
				t.Errorf("refused %q: %s", rerr.param, rerr.msg)
			}
		})
	}
	out := thinkingRequest(t, `,"reasoning_effort":"high","max_tokens":4097`)
	if got, _ := jsonscan.Field(out, "max_tokens"); string(got) != "4097" {
		t.Errorf("max_tokens 4097 sent as %s", got)
	}
}

// With thinking on, the API refuses a temperature but 1, any top_k, and a top_p under
// 0.95: temperature and top_k are not sent (thinking samples at temperature 1), top_p
// goes up to 0.95. Without thinking, nothing changes.
func TestAnthropicThinkingSampling(t *testing.T) {
	for _, c := range []struct{ name, fields, temperature, topP, topK string }{
		{"temperature and top_k dropped", `,"reasoning_effort":"low","temperature":0.2,"top_k":40`, "", "", ""},
		{"temperature 1 dropped too", `,"reasoning_effort":"low","temperature":1`, "", "", ""},
		{"top_p raised to 0.95", `,"reasoning_effort":"low","top_p":0.5`, "", "0.95", ""},
		{"top_p in range kept", `,"reasoning_effort":"low","top_p":0.97`, "", "0.97", ""},
		{"top_p beside a temperature still left out", `,"reasoning_effort":"low","temperature":0.5,"top_p":1`, "", "", ""},
		{"thinking disabled keeps them", `,"thinking":{"type":"disabled"},"temperature":0.2,"top_k":40`, "0.2", "", "40"},
		{"no thinking keeps them", `,"top_p":0.5,"top_k":40`, "", "0.5", "40"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := thinkingRequest(t, c.fields)
			for _, f := range []struct{ key, want string }{{"temperature", c.temperature}, {"top_p", c.topP}, {"top_k", c.topK}} {
				if got, _ := jsonscan.Field(out, f.key); string(got) != f.want {
					t.Errorf("%s sent as %q, want %q: %s", f.key, got, f.want, out)
				}
			}
		})
	}
	if rerr := thinkingRefusal(t, `,"reasoning_effort":"low","temperature":"hot"`); rerr.param != "temperature" {
		t.Errorf("a malformed temperature is refused as %q", rerr.param)
	}
}

// Forced tool use and thinking cannot go together on the Messages API: the request is
// refused naming tool_choice before any upstream; auto and none go.
func TestAnthropicThinkingToolChoice(t *testing.T) {
	const tools = `,"tools":[{"type":"function","function":{"name":"f"}}]`
	for _, c := range []struct {
		name, fields string
		refused      bool
	}{
		{"required", `,"reasoning_effort":"low","tool_choice":"required"`, true},
		{"named function", `,"thinking":{"type":"enabled","budget_tokens":1024},"max_tokens":2000,"tool_choice":{"type":"function","function":{"name":"f"}}`, true},
		{"adaptive and required", `,"thinking":{"type":"adaptive"},"tool_choice":"required"`, true},
		{"auto", `,"reasoning_effort":"low","tool_choice":"auto"`, false},
		{"none", `,"reasoning_effort":"low","tool_choice":"none"`, false},
		{"required without thinking", `,"tool_choice":"required"`, false},
		{"required with thinking disabled", `,"thinking":{"type":"disabled"},"tool_choice":"required"`, false},
		{"reasoning_effort none", `,"reasoning_effort":"none","tool_choice":"required"`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"model":"chat","messages":[{"role":"user","content":"Hi"}]` + tools + c.fields + `}`
			out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
			switch {
			case c.refused && (rerr == nil || rerr.param != "tool_choice"):
				t.Errorf("not refused naming tool_choice: %v %s", rerr, out)
			case !c.refused && rerr != nil:
				t.Errorf("refused: %s: %s", rerr.param, rerr.msg)
			}
		})
	}
}

// An assistant message's thinking_blocks go back first in its turn, as the API wants
// in a tool-use loop; a thinking block without a signature, and reasoning_content,
// cannot be checked by the API and are left out.
func TestAnthropicThinkingBlocksSentBack(t *testing.T) {
	assistant := func(fields string) string {
		return `{"model":"chat","reasoning_effort":"low","messages":[{"role":"user","content":"Weather?"},` +
			`{"role":"assistant","content":"Checking."` + fields + `,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},` +
			`{"role":"tool","tool_call_id":"t1","content":"18C"}],"tools":[{"type":"function","function":{"name":"f"}}]}`
	}
	for _, c := range []struct{ name, fields, want string }{
		{"thinking and redacted", `,"thinking_blocks":[{"type":"thinking","thinking":"Hm \"x\"","signature":"c2ln"},{"type":"redacted_thinking","data":"ZGF0YQ=="}]`,
			`[{"type":"thinking","thinking":"Hm \"x\"","signature":"c2ln"},{"type":"redacted_thinking","data":"ZGF0YQ=="},{"type":"text","text":"Checking."},{"type":"tool_use","id":"t1","name":"f","input":{}}]`},
		{"extra members left behind", `,"thinking_blocks":[{"type":"thinking","thinking":"a","signature":"s","index":0,"cache_control":{"type":"ephemeral"}}]`,
			`[{"type":"thinking","thinking":"a","signature":"s"},{"type":"text","text":"Checking."},{"type":"tool_use","id":"t1","name":"f","input":{}}]`},
		{"no signature", `,"thinking_blocks":[{"type":"thinking","thinking":"a"},{"type":"thinking","thinking":"b","signature":""},{"type":"thinking","thinking":"c","signature":null}]`,
			`[{"type":"text","text":"Checking."},{"type":"tool_use","id":"t1","name":"f","input":{}}]`},
		{"reasoning_content alone", `,"reasoning_content":"I should call f."`,
			`[{"type":"text","text":"Checking."},{"type":"tool_use","id":"t1","name":"f","input":{}}]`},
		{"null", `,"thinking_blocks":null`,
			`[{"type":"text","text":"Checking."},{"type":"tool_use","id":"t1","name":"f","input":{}}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := anthropicRequest(t, assistant(c.fields))
			var req struct {
				Messages []struct {
					Role    string          `json:"role"`
					Content json.RawMessage `json:"content"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(out, &req); err != nil || len(req.Messages) != 3 {
				t.Fatalf("%v: %s", err, out)
			}
			if got := string(req.Messages[1].Content); got != c.want {
				t.Errorf("assistant turn\n%s\nwant\n%s", got, c.want)
			}
		})
	}
	for _, c := range []struct{ name, fields, param string }{
		{"not an array", `,"thinking_blocks":{"type":"thinking"}`, "messages[1].thinking_blocks"},
		{"unknown type", `,"thinking_blocks":[{"type":"text","text":"x"}]`, "messages[1].thinking_blocks[0].type"},
		{"thinking not a string", `,"thinking_blocks":[{"type":"thinking","thinking":1,"signature":"s"}]`, "messages[1].thinking_blocks[0].thinking"},
		{"redacted without data", `,"thinking_blocks":[{"type":"redacted_thinking"}]`, "messages[1].thinking_blocks[0].data"},
	} {
		t.Run("refused "+c.name, func(t *testing.T) {
			_, rerr := appendAnthropicRequest(nil, []byte(assistant(c.fields)), quoteModel("claude-x"), 1024, claudeModel{}, false)
			if rerr == nil || rerr.param != c.param {
				t.Errorf("refusal %v, want param %s", rerr, c.param)
			}
		})
	}
}

// assistantTurns translates body and returns its messages, each content array raw.
func assistantTurns(t *testing.T, body string) []string {
	t.Helper()
	out := anthropicRequest(t, body)
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(out, &req); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	turns := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		turns[i] = m.Role + " " + string(m.Content)
	}
	return turns
}

// An assistant message of thinking alone (the gateway answers so when max_tokens runs
// out while Claude thinks, or when its text was blank) is left out: the API refuses a
// turn ending with a thinking block ("The final block in an assistant message cannot
// be `thinking`"), and a message's cache mark goes on its last other block, never on a
// thinking block ("thinking.cache_control: Extra inputs are not permitted").
func TestAnthropicThinkingOnlyTurnLeftOut(t *testing.T) {
	const (
		thought  = `{"type":"thinking","thinking":"Let me think.","signature":"c2ln"}`
		blocks   = `"thinking_blocks":[` + thought + `]`
		question = `{"type":"text","text":"Hard question"}`
		goOn     = `{"type":"text","text":"Go on"}`
	)
	for _, c := range []struct {
		name, assistant string
		want            []string
	}{
		{"content null", `{"role":"assistant","content":null,` + blocks + `}`,
			[]string{"user [" + question + "," + goOn + "]"}},
		{"blank content", `{"role":"assistant","content":"\n\n",` + blocks + `}`,
			[]string{"user [" + question + "," + goOn + "]"}},
		{"redacted only", `{"role":"assistant","content":"","thinking_blocks":[{"type":"redacted_thinking","data":"ZGF0YQ=="}]}`,
			[]string{"user [" + question + "," + goOn + "]"}},
		{"with a message cache mark", `{"role":"assistant","content":null,"cache_control":{"type":"ephemeral"},` + blocks + `}`,
			[]string{"user [" + question + "," + goOn + "]"}},
		{"cache mark on the text after the thinking", `{"role":"assistant","content":"Answer.","cache_control":{"type":"ephemeral"},` + blocks + `}`,
			[]string{"user [" + question + "]", "assistant [" + thought + `,{"type":"text","text":"Answer.","cache_control":{"type":"ephemeral"}}]`, "user [" + goOn + "]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"model":"chat","reasoning_effort":"low","messages":[{"role":"user","content":"Hard question"},` +
				c.assistant + `,{"role":"user","content":"Go on"}]}`
			if got := assistantTurns(t, body); !slices.Equal(got, c.want) {
				t.Errorf("messages\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// With thinking off (no reasoning_effort or thinking, reasoning_effort none, thinking
// disabled) thinking_blocks are left out: the API refuses them in the last assistant
// turn ("When thinking is disabled, an `assistant` message in the final position cannot
// contain `thinking`"), as when a client turns reasoning off for the next step of a
// tool-use loop.
func TestAnthropicThinkingBlocksLeftOutWhenOff(t *testing.T) {
	for _, c := range []struct{ name, fields string }{
		{"no reasoning fields", ``},
		{"reasoning_effort none", `,"reasoning_effort":"none"`},
		{"thinking disabled", `,"thinking":{"type":"disabled"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"model":"chat"` + c.fields + `,"messages":[{"role":"user","content":"Weather in Paris?"},` +
				`{"role":"assistant","content":null,"thinking_blocks":[{"type":"thinking","thinking":"Call f.","signature":"c2ln"},{"type":"redacted_thinking","data":"ZGF0YQ=="}],` +
				`"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"t1","content":"18C"}],"tools":[{"type":"function","function":{"name":"f"}}]}`
			turns := assistantTurns(t, body)
			if len(turns) != 3 || turns[1] != `assistant [{"type":"tool_use","id":"t1","name":"f","input":{}}]` {
				t.Errorf("messages\n%s", strings.Join(turns, "\n"))
			}
		})
	}
	t.Run("malformed blocks still refused", func(t *testing.T) {
		body := `{"model":"chat","messages":[{"role":"user","content":"Hi"},` +
			`{"role":"assistant","content":"Hello.","thinking_blocks":[{"type":"text","text":"x"}]},{"role":"user","content":"Go on"}]}`
		_, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
		if rerr == nil || rerr.param != "messages[1].thinking_blocks[0].type" {
			t.Errorf("refusal %v, want param messages[1].thinking_blocks[0].type", rerr)
		}
	})
}

// Consecutive assistant messages merge into one turn, and the thinking blocks of any of
// them go first in it, in order, before the other blocks: the API wants the last
// assistant turn of a tool-use loop to begin with its thinking ("Expected `thinking` or
// `redacted_thinking`, but found `text`").
func TestAnthropicThinkingMergedTurnStartsWithThinking(t *testing.T) {
	const (
		thinkA  = `{"type":"thinking","thinking":"A.","signature":"c2lnQQ=="}`
		thinkB  = `{"type":"thinking","thinking":"B.","signature":"c2lnQg=="}`
		redact  = `{"type":"redacted_thinking","data":"ZGF0YQ=="}`
		check   = `{"type":"text","text":"Let me check."}`
		toolUse = `{"type":"tool_use","id":"t1","name":"f","input":{}}`
		call    = `"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]`
	)
	for _, c := range []struct{ name, assistants, want string }{
		{"thinking of the second", `{"role":"assistant","content":"Let me check."},` +
			`{"role":"assistant","content":null,"thinking_blocks":[` + thinkB + `],` + call + `}`,
			"[" + thinkB + "," + check + "," + toolUse + "]"},
		{"thinking of both, in order", `{"role":"assistant","content":"Let me check.","thinking_blocks":[` + thinkA + `]},` +
			`{"role":"assistant","content":null,"thinking_blocks":[` + thinkB + "," + redact + `],` + call + `}`,
			"[" + thinkA + "," + thinkB + "," + redact + "," + check + "," + toolUse + "]"},
		{"a message of thinking alone between", `{"role":"assistant","content":"Let me check.","thinking_blocks":[` + thinkA + `]},` +
			`{"role":"assistant","content":null,"thinking_blocks":[` + redact + `]},` +
			`{"role":"assistant","content":null,"thinking_blocks":[` + thinkB + `],` + call + `}`,
			"[" + thinkA + "," + thinkB + "," + check + "," + toolUse + "]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"model":"chat","reasoning_effort":"low","messages":[{"role":"user","content":"Weather in Paris?"},` +
				c.assistants + `,{"role":"tool","tool_call_id":"t1","content":"18C"}],"tools":[{"type":"function","function":{"name":"f"}}]}`
			turns := assistantTurns(t, body)
			if len(turns) != 3 || turns[1] != "assistant "+c.want {
				t.Errorf("messages\n%s\nwant the assistant turn\n%s", strings.Join(turns, "\n"), c.want)
			}
		})
	}
	t.Run("prefill after the thinking moves", func(t *testing.T) {
		// The prefill's trailing whitespace is trimmed where its block ends up.
		body := `{"model":"chat","reasoning_effort":"low","messages":[{"role":"user","content":"Hi"},` +
			`{"role":"assistant","content":"Sure."},{"role":"assistant","content":"Answer: ","thinking_blocks":[` + thinkA + `]}]}`
		want := "assistant [" + thinkA + `,{"type":"text","text":"Sure."},{"type":"text","text":"Answer:"}]`
		if turns := assistantTurns(t, body); len(turns) != 2 || turns[1] != want {
			t.Errorf("messages\n%s\nwant the assistant turn\n%s", strings.Join(turns, "\n"), want)
		}
	})
}

// TestAnthropicThinkingAnswerSDK reads a translated answer with thinking through the
// OpenAI SDK as a client does: reasoning_content and thinking_blocks as extra fields.
func TestAnthropicThinkingAnswerSDK(t *testing.T) {
	body, err := os.ReadFile("testdata/anthropic/response_thinking_tool_use.json")
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	out, ok := appendChatCompletion(nil, body, 1, &u, nil)
	if !ok {
		t.Fatal("refused the answer")
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(out, &cc); err != nil {
		t.Fatal(err)
	}
	msg := cc.Choices[0].Message
	var reasoning string
	if err := json.Unmarshal([]byte(msg.JSON.ExtraFields["reasoning_content"].Raw()), &reasoning); err != nil {
		t.Fatalf("reasoning_content: %v", err)
	}
	if reasoning != "The user wants Paris weather.\nI should call \"get_weather\"." {
		t.Errorf("reasoning_content %q", reasoning)
	}
	var blocks []map[string]string
	if err := json.Unmarshal([]byte(msg.JSON.ExtraFields["thinking_blocks"].Raw()), &blocks); err != nil {
		t.Fatalf("thinking_blocks: %v", err)
	}
	if len(blocks) != 2 || blocks[0]["type"] != "thinking" || blocks[0]["thinking"] != reasoning || blocks[0]["signature"] == "" ||
		blocks[1]["type"] != "redacted_thinking" || blocks[1]["data"] == "" {
		t.Errorf("thinking_blocks %v", blocks)
	}
	if msg.Content != "Let me check." || len(msg.ToolCalls) != 1 || u.Output != 120 {
		t.Errorf("message %+v, usage %+v", msg, u)
	}
}

// TestAnthropicThinkingStreamSDK puts a translated stream with thinking together as a
// client does: reasoning_content deltas join into the thinking text, and the
// thinking_blocks deltas are the blocks whole, the same as the buffered answer's.
func TestAnthropicThinkingStreamSDK(t *testing.T) {
	raw, err := os.ReadFile("testdata/anthropic/stream_thinking_tool_use.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{16, 64, 4096} {
		t.Run("buffer "+strconv.Itoa(size), func(t *testing.T) {
			evs, err := readStream(string(raw), size)
			if err != nil {
				t.Fatal(err)
			}
			var reasoning strings.Builder
			var blocks []map[string]string
			firstContent := -1
			for i, ev := range evs {
				if ev.Done {
					continue
				}
				var chunk openai.ChatCompletionChunk
				if err := json.Unmarshal(ev.Data, &chunk); err != nil {
					t.Fatal(err)
				}
				if ev.Content && firstContent < 0 {
					firstContent = i
				}
				if len(chunk.Choices) == 0 {
					continue
				}
				d := chunk.Choices[0].Delta
				if f, ok := d.JSON.ExtraFields["reasoning_content"]; ok {
					var s string
					if err := json.Unmarshal([]byte(f.Raw()), &s); err != nil {
						t.Fatal(err)
					}
					reasoning.WriteString(s)
				}
				if f, ok := d.JSON.ExtraFields["thinking_blocks"]; ok {
					var b []map[string]string
					if err := json.Unmarshal([]byte(f.Raw()), &b); err != nil {
						t.Fatal(err)
					}
					blocks = append(blocks, b...)
				}
			}
			const text = "The user asks about \"Paris\".\nI will call get_weather."
			if reasoning.String() != text {
				t.Errorf("reasoning_content put together %q", reasoning.String())
			}
			want := []map[string]string{
				{"type": "thinking", "thinking": text, "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
				{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
			}
			if !equalBlocks(blocks, want) {
				t.Errorf("thinking_blocks %v, want %v", blocks, want)
			}
			if firstContent != 1 {
				t.Errorf("first content chunk is #%d, want the first reasoning_content (#1): thinking is generated output", firstContent)
			}
			acc := accumulate(t, evs)
			if acc.Choices[0].Message.Content != "Checking." || len(acc.Choices[0].Message.ToolCalls) != 1 {
				t.Errorf("accumulated %+v", acc.Choices[0].Message)
			}
		})
	}
}

func equalBlocks(a, b []map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for k, v := range a[i] {
			if b[i][k] != v {
				return false
			}
		}
	}
	return true
}

// A thinking block's text is kept only while it lasts: a pooled stream does not keep
// a long thought's buffer.
func TestAnthropicStreamThinkingBufferNotPooledLarge(t *testing.T) {
	s := &anthropicStream{}
	s.think.text = make([]byte, 0, maxPooledThinking+1)
	s.reset()
	if s.think.text != nil {
		t.Errorf("a %d-byte thinking buffer kept for the pool", maxPooledThinking+1)
	}
	s.think.text = make([]byte, 10, 100)
	s.reset()
	if cap(s.think.text) != 100 || len(s.think.text) != 0 {
		t.Errorf("a small buffer is not kept: len %d cap %d", len(s.think.text), cap(s.think.text))
	}
}

// A thinking block whose content_block_start already holds text: that text is part of
// the block the client sends back with its signature, so the thinking_blocks delta
// holds it as reasoning_content did.
func TestAnthropicStreamThinkingStartText(t *testing.T) {
	const in = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"First. \",\"signature\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Second.\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	evs, err := readStream(in, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var reasoning strings.Builder
	var blocks []map[string]string
	for _, ev := range evs {
		if ev.Done {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Reasoning *string             `json:"reasoning_content"`
					Blocks    []map[string]string `json:"thinking_blocks"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(ev.Data, &chunk); err != nil {
			t.Fatalf("%v: %s", err, ev.Data)
		}
		for _, c := range chunk.Choices {
			if c.Delta.Reasoning != nil {
				reasoning.WriteString(*c.Delta.Reasoning)
			}
			blocks = append(blocks, c.Delta.Blocks...)
		}
	}
	if reasoning.String() != "First. Second." {
		t.Fatalf("reasoning_content %q", reasoning.String())
	}
	want := []map[string]string{{"type": "thinking", "thinking": "First. Second.", "signature": "c2ln"}}
	if !equalBlocks(blocks, want) {
		t.Errorf("thinking_blocks %v, want %v", blocks, want)
	}
}
