package providers

import (
	"slices"
	"testing"
)

// A chat answer's empty content or refusal string makes no content part of the
// response's message, as the same answer streamed makes none (its empty deltas begin
// no part): a refusal sent with content "" is the message's only part, and text sent
// with refusal "" is too; a message with neither still holds an empty output_text.
// An answer cut while the model reasoned is its reasoning item alone, as streamed.
func TestBridgeAnswerEmptyParts(t *testing.T) {
	for name, c := range map[string]struct {
		message string
		types   []string
	}{
		"refusal, content empty":   {`{"role":"assistant","content":"","refusal":"No."}`, []string{"refusal"}},
		"text, refusal empty":      {`{"role":"assistant","content":"Hi","refusal":""}`, []string{"output_text"}},
		"both empty":               {`{"role":"assistant","content":"","refusal":""}`, []string{"output_text"}},
		"neither":                  {`{"role":"assistant","content":null,"refusal":null}`, []string{"output_text"}},
		"text and refusal":         {`{"role":"assistant","content":"Hi","refusal":"No."}`, []string{"output_text", "refusal"}},
		"reasoning only":           {`{"role":"assistant","reasoning_content":"Hmm","content":null}`, []string{"reasoning_text"}},
		"reasoning, content empty": {`{"role":"assistant","reasoning_content":"Hmm","content":""}`, []string{"reasoning_text"}},
		"reasoning and text":       {`{"role":"assistant","reasoning_content":"Hmm","content":"Hi"}`, []string{"reasoning_text", "output_text"}},
	} {
		t.Run(name, func(t *testing.T) {
			chat := `{"created":1,"model":"m","choices":[{"index":0,"message":` + c.message + `,"finish_reason":"length"}]}`
			resp := bridgeAnswerOf(t, `{"model":"chat","input":"x"}`, chat, Usage{})
			var types []string
			for _, it := range resp.Output {
				for _, p := range it.Content {
					types = append(types, p.Type)
				}
			}
			if !slices.Equal(types, c.types) || resp.Status != "incomplete" || resp.IncompleteDetails.Reason != "max_output_tokens" {
				t.Errorf("parts %v, want %v: %s", types, c.types, resp.RawJSON())
			}
		})
	}
}
