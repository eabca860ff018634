package providers

import (
	"strings"
	"testing"
)

// instructions and every system and developer message of input go up as one system
// message that opens the chat messages, in their order, each after an empty line (a
// message's text parts joined by a newline): chat templates take no developer role
// (Qwen3's leaves the message out, Qwen3.5's refuses it), and many take one system
// message, first (Qwen3.5's refuses another: "System message must be at the
// beginning."). Before, a developer message went up as {"role":"developer"}, which
// vLLM hands to the template as it came.
func TestBridgeDeveloperMessages(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"instructions and a developer message",
			`{"model":"m","instructions":"Be brief.","input":[{"role":"developer","content":"Rules."},{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"Be brief.\n\nRules."},{"role":"user","content":"Hi"}]}`},
		{"a developer message alone",
			`{"model":"m","input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions>read-only</permissions>"}]},{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"<permissions>read-only</permissions>"},{"role":"user","content":"Hi"}]}`},
		{"system and developer messages, text parts, empty ones left out",
			`{"model":"m","instructions":"","input":[{"role":"system","content":[{"type":"input_text","text":"One."},{"type":"input_text","text":""},{"type":"input_text","text":"Two."}]},` +
				`{"role":"developer","content":""},{"role":"developer","content":[]},{"role":"developer","content":"Three \"quoted\" \u003ctag\u003e."},{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"One.\nTwo.\n\nThree \"quoted\" <tag>."},{"role":"user","content":"Hi"}]}`},
		{"a developer message later in the conversation is read from the start",
			`{"model":"m","instructions":"Base.","input":[{"role":"user","content":"Hi"},` +
				`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Looking."}]},` +
				`{"role":"developer","content":"Approval is now on-request."},` +
				`{"type":"function_call","call_id":"c1","name":"ls","arguments":"{}"},` +
				`{"type":"function_call_output","call_id":"c1","output":"a.go"},` +
				`{"role":"developer","content":"Sandbox: workspace-write."},{"role":"user","content":"Go on"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"Base.\n\nApproval is now on-request.\n\nSandbox: workspace-write."},{"role":"user","content":"Hi"},` +
				`{"role":"assistant","content":"Looking.","tool_calls":[{"id":"c1","type":"function","function":{"name":"ls","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"c1","content":"a.go"},{"role":"user","content":"Go on"}]}`},
		{"nothing to say: no system message",
			`{"model":"m","instructions":"","input":[{"role":"developer","content":""},{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"Hi"}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr, _ := bridgeChat(c.in, false)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if strings.Contains(got, `"developer"`) {
				t.Errorf("a developer role went up: %s", got)
			}
			sameJSONText(t, got, c.want)
		})
	}

	// Codex's turn: its permissions (a developer message) open the chat messages as
	// the system message, before the user's messages.
	got, _, rerr, _ := bridgeChat(codexTurn, false)
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	if !strings.HasPrefix(got, `{"model":"chat","messages":[{"role":"system","content":"<permissions instructions>read-only</permissions instructions>"},{"role":"user",`) {
		t.Errorf("chat body %s", got)
	}
}

// A chat system message holds text only: an image in a developer message is refused,
// naming it, as are content and parts of the wrong type.
func TestBridgeDeveloperRefusals(t *testing.T) {
	for _, c := range []struct{ name, in, param string }{
		{"image", `{"model":"m","input":[{"role":"developer","content":[{"type":"input_text","text":"See"},{"type":"input_image","image_url":"https://x/y.png"}]},{"role":"user","content":"Hi"}]}`,
			"input[0].content[1].type"},
		{"text not a string", `{"model":"m","input":[{"role":"user","content":"Hi"},{"role":"system","content":[{"type":"input_text","text":7}]}]}`,
			"input[1].content[0].text"},
		{"content not a list", `{"model":"m","input":[{"role":"developer","content":{"text":"x"}},{"role":"user","content":"Hi"}]}`,
			"input[0].content"},
		{"no content", `{"model":"m","input":[{"role":"developer"},{"role":"user","content":"Hi"}]}`,
			"input[0].content"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, rerr, _ := bridgeChat(c.in, false)
			if rerr == nil || rerr.param != c.param {
				t.Fatalf("refusal %+v; want one naming %s", rerr, c.param)
			}
		})
	}
}
