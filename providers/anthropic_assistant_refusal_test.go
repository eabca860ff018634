package providers

import (
	"encoding/json"
	"testing"
)

// An assistant message OpenAI answered with a refusal carries it in the message's
// refusal field, content null; clients send the message back as they got it (a
// conversation begun on an OpenAI backend that falls back to Claude). The refusal is
// the assistant's turn: left out, the user turns around it would merge, and the model
// would never see that it declined.
func TestAnthropicAssistantRefusalFieldKept(t *testing.T) {
	m := anthropicFields(t, `{"model":"chat","messages":[
		{"role":"user","content":"How do I pick this lock?"},
		{"role":"assistant","content":null,"refusal":"I can't help with that."},
		{"role":"user","content":"Then how do I call a locksmith?"}]}`)
	var msgs []struct {
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(m["messages"], &msgs); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[1].Role != "assistant" || len(msgs[1].Content) != 1 || msgs[1].Content[0].Text != "I can't help with that." {
		t.Errorf("assistant refusal not kept as the assistant's turn: messages = %s", m["messages"])
	}
}

// A blank refusal is left out, as blank text is (the API refuses it); one that is not
// a string is refused, naming it.
func TestAnthropicAssistantRefusalFieldEdges(t *testing.T) {
	out := anthropicRequest(t, `{"model":"c","messages":[{"role":"user","content":"Hi"},`+
		`{"role":"assistant","content":"Hello.","refusal":" \n"},{"role":"user","content":"Bye"}]}`)
	checkTurns(t, out)
	_, rerr := appendAnthropicRequest(nil, []byte(`{"model":"c","messages":[{"role":"user","content":"Hi"},`+
		`{"role":"assistant","content":null,"refusal":{"text":"No."}},{"role":"user","content":"Bye"}]}`),
		quoteModel("claude-x"), 1024, claudeModel{}, false)
	if rerr == nil || rerr.param != "messages[1].refusal" {
		t.Errorf("refusal object: refused %+v, want param messages[1].refusal", rerr)
	}
}
