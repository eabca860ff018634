package providers

import "testing"

// A chat answer's empty content or refusal string makes no content part of the
// response's message, as the same answer streamed makes none (its empty deltas begin
// no part): a refusal sent with content "" is the message's only part, and text sent
// with refusal "" is too; a message with neither still holds an empty output_text.
func TestBridgeAnswerEmptyContentOrRefusal(t *testing.T) {
	for name, c := range map[string]struct {
		message string
		types   []string
	}{
		"refusal, content empty": {`{"role":"assistant","content":"","refusal":"No."}`, []string{"refusal"}},
		"text, refusal empty":    {`{"role":"assistant","content":"Hi","refusal":""}`, []string{"output_text"}},
		"both empty":             {`{"role":"assistant","content":"","refusal":""}`, []string{"output_text"}},
		"neither":                {`{"role":"assistant","content":null,"refusal":null}`, []string{"output_text"}},
		"text and refusal":       {`{"role":"assistant","content":"Hi","refusal":"No."}`, []string{"output_text", "refusal"}},
	} {
		t.Run(name, func(t *testing.T) {
			chat := `{"created":1,"model":"m","choices":[{"index":0,"message":` + c.message + `,"finish_reason":"stop"}]}`
			resp := bridgeAnswerOf(t, `{"model":"chat","input":"x"}`, chat, Usage{})
			if len(resp.Output) != 1 || len(resp.Output[0].Content) != len(c.types) {
				t.Fatalf("%s", resp.RawJSON())
			}
			for i, typ := range c.types {
				if resp.Output[0].Content[i].Type != typ {
					t.Errorf("part %d is %s, want %s: %s", i, resp.Output[0].Content[i].Type, typ, resp.RawJSON())
				}
			}
		})
	}
}
