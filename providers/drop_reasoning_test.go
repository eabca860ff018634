package providers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// To a reasoning model a client's max_tokens goes as max_completion_tokens, the name
// the model takes; a backend whose drop_params names max_completion_tokens never sends
// that field, the renamed cap included, and its token estimate knows the request goes
// uncapped. One naming only max_tokens still sends the cap, under its new name.
func TestReasoningModelDropParamsApplyAfterRename(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(plainChatAnswer)
	})
	for _, tc := range []struct {
		name, drop, body, wantCap string
		uncapped                  bool
	}{
		{"max_tokens renamed then dropped", "max_completion_tokens", `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":100}`, "", true},
		{"both given, both dropped", "Max_Completion_Tokens", `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":100,"max_completion_tokens":50}`, "", true},
		{"max_tokens dropped, sent renamed", "max_tokens", `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":100}`, "100", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "o3-mini", DropParams: []string{tc.drop}})
			m := sentBy(t, b, up, tc.body)
			if v, ok := m["max_tokens"]; ok {
				t.Errorf("upstream got max_tokens %s", v)
			}
			if got := string(m["max_completion_tokens"]); got != tc.wantCap {
				t.Errorf("upstream got max_completion_tokens %q, want %q", got, tc.wantCap)
			}
			if got := b.Uncapped(Chat, []byte(tc.body)); got != tc.uncapped {
				t.Errorf("Uncapped = %v, want %v", got, tc.uncapped)
			}
		})
	}
}
