package mockllm

import (
	"testing"
)

// midSystemBody is a Messages request of model whose messages are msgs (a JSON array's
// inside), with the Claude Code tools the mock may call left out.
func midSystemBody(model, msgs string) string {
	return `{"model":` + quote(model) + `,"max_tokens":64,"system":[{"type":"text","text":"You are an agent.",` +
		`"cache_control":{"type":"ephemeral"}}],"messages":[` + msgs + `],"stream":false}`
}

// The shape Claude Code 2.1.332 sends Opus 4.8 and the Claude 5 models: its reminders
// in a system message after the user's, marked for the prompt cache (trimmed).
const claudeCodeMidSystem = `{"role":"user","content":[{"type":"text","text":"<system-reminder>\nAttribution for git commits\n</system-reminder>\n"},` +
	`{"type":"text","text":"Say hello"}]},` +
	`{"role":"system","content":[{"type":"text","text":"# Environment\nYou have been invoked in the following environment: \n - Primary working directory: /work\n","cache_control":{"type":"ephemeral"}}]}`

// TestMessagesMidConversationSystem: Opus 4.8 and the Claude 5 models take system
// messages in messages where the API places them (after a user message, before an
// assistant message or last); the older models refuse the role as before.
func TestMessagesMidConversationSystem(t *testing.T) {
	for _, model := range []string{"claude-opus-5-5", "claude-opus-4-8", "claude-sonnet-5", "claude-fable-5-1"} {
		t.Run(model, func(t *testing.T) {
			h := startClaude(t, model)
			taken := []struct{ name, msgs string }{
				{"claude code's first turn", claudeCodeMidSystem},
				{"a string system message last", `{"role":"user","content":"hi"},{"role":"system","content":"Answer briefly."}`},
				{"one before an assistant turn", claudeCodeMidSystem + `,{"role":"assistant","content":"Hello."},{"role":"user","content":"again"}`},
				{"after a later user turn", `{"role":"user","content":"hi"},{"role":"assistant","content":"Hello."},` +
					`{"role":"user","content":"bye"},{"role":"system","content":"Wrap up."}`},
			}
			for _, c := range taken {
				t.Run(c.name, func(t *testing.T) {
					resp, b := h.must("POST", "/v1/messages", midSystemBody(model, c.msgs), anthHeaders...)
					if resp.StatusCode != 200 {
						t.Fatalf("status %d: %s", resp.StatusCode, b)
					}
				})
			}
			refused := []struct{ name, msgs, msg string }{
				{"first", `{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}`,
					"messages.0: a system message cannot be the first message"},
				{"two in a row", `{"role":"user","content":"hi"},{"role":"system","content":"a"},{"role":"system","content":"b"}`,
					"messages.2: consecutive system messages are not allowed"},
				{"after an assistant turn", `{"role":"user","content":"hi"},{"role":"assistant","content":"Hello."},{"role":"system","content":"a"}`,
					"messages.2: a system message must follow a user message, or an assistant message that ends with server tool use"},
				{"before a user turn", `{"role":"user","content":"hi"},{"role":"system","content":"a"},{"role":"user","content":"again"}`,
					"messages.1: a system message must be the last message or be followed by an assistant message"},
				{"an image block", `{"role":"user","content":"hi"},{"role":"system","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}`,
					"messages.1.content.0.type: a system message takes text blocks only"},
				{"blank text", `{"role":"user","content":"hi"},{"role":"system","content":"  "}`, errBlankText.msg},
			}
			for _, c := range refused {
				t.Run(c.name, func(t *testing.T) {
					resp, b := h.must("POST", "/v1/messages", midSystemBody(model, c.msgs), anthHeaders...)
					if got := refusal(t, resp.StatusCode, b); got != c.msg {
						t.Errorf("message %q, want %q", got, c.msg)
					}
				})
			}
		})
	}
	for _, model := range []string{"claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5"} {
		t.Run(model, func(t *testing.T) {
			h := startClaude(t, model)
			resp, b := h.must("POST", "/v1/messages", midSystemBody(model, claudeCodeMidSystem), anthHeaders...)
			if got := refusal(t, resp.StatusCode, b); got != errSystemRole.msg {
				t.Errorf("message %q, want %q", got, errSystemRole.msg)
			}
		})
	}
}
