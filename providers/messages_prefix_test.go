package providers

import "testing"

// A system prompt given as text blocks (as the Anthropic SDKs and Claude Code send it)
// hashes by its text, as the same text given as a string does; Claude Code's billing
// header block, whose text changes with each request, is left out.
func TestPrefixHashMessagesSystemBlocks(t *testing.T) {
	t.Parallel()
	hash := func(body string) uint64 {
		t.Helper()
		h, ok := prefixHash(&Call{Kind: Messages, Body: []byte(body)}, 512)
		if !ok {
			t.Fatalf("no prompt in %s", body)
		}
		return h
	}
	msgs := `"messages":[{"role":"user","content":"What is a gateway?"}]`
	brief := hash(`{"model":"m","max_tokens":9,"system":[{"type":"text","text":"Be brief."}],` + msgs + `}`)
	verbose := hash(`{"model":"m","max_tokens":9,"system":[{"type":"text","text":"Be verbose and write at length."}],` + msgs + `}`)
	plain := hash(`{"model":"m","max_tokens":9,"system":"Be brief.",` + msgs + `}`)
	if brief == verbose {
		t.Errorf("system prompts given as text blocks: one prefix hash %x for \"Be brief.\" and \"Be verbose…\"; "+
			"want two (the system prompt's text begins the prefix)", brief)
	}
	if brief != plain {
		t.Errorf("hash %x for system [{text: \"Be brief.\"}] and %x for system \"Be brief.\"; "+
			"want one (the same system prompt text, as messages' text blocks and strings hash alike)", brief, plain)
	}
	billing := func(cch string) string {
		return `{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=` + cch + `;"}`
	}
	cc1 := hash(`{"model":"m","max_tokens":9,"system":[` + billing("0a1b2") + `,{"type":"text","text":"You are Claude Code."}],` + msgs + `}`)
	cc2 := hash(`{"model":"m","max_tokens":9,"system":[` + billing("9f8e7") + `,{"type":"text","text":"You are Claude Code."}],` + msgs + `}`)
	cc3 := hash(`{"model":"m","max_tokens":9,"system":[` + billing("9f8e7") + `,{"type":"text","text":"You are another agent."}],` + msgs + `}`)
	if cc1 != cc2 || cc1 == cc3 {
		t.Errorf("Claude Code's billing header: hashes %x and %x for two headers, %x for another system prompt; want the first two alike, the third apart", cc1, cc2, cc3)
	}
}
