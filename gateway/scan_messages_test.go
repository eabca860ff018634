package gateway

import (
	"strings"
	"testing"
)

// The media of a Messages API prompt: an image block's source, base64 or URL, is one
// image, in a tool result's content too; a document's base64 stays text; a "source"
// that is a string, or a key's text, is no medium.
func TestAnthropicMedia(t *testing.T) {
	img := strings.Repeat("iVBO", 500)
	cases := []struct {
		name, v string
		n       int
		tokens  int64
	}{
		{"base64 image", `[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + img + `"}}]}]`, len(img) + 2, imageTokens},
		{"url image", `[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x.test/a.png"}}]}]`, len(`"https://x.test/a.png"`), imageTokens},
		{"in a tool result", `[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source": {"data":"` + img + `","media_type":"image/jpeg","type":"base64"}}]}]}]`, len(img) + 2, imageTokens},
		{"pdf", `[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}]`, 0, 0},
		{"text source", `[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain"}}]}]`, 0, 0},
		{"source as text", `[{"role":"user","content":"the \"source\": {\"type\":\"url\",\"url\":\"x\"}"}]`, 0, 0},
		{"two images", `[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"BBBB"}}]}]`, 12, 2 * imageTokens},
	}
	for _, c := range cases {
		n, tokens := anthropicMedia([]byte(c.v))
		if n != c.n || tokens != c.tokens {
			t.Errorf("%s: %d bytes, %d tokens; want %d, %d", c.name, n, tokens, c.n, c.tokens)
		}
	}
}

// A Messages API call's end user is metadata.user_id (the last one, a string), never a
// top-level user or safety_identifier; its system prompt counts as prompt.
func TestMessagesFields(t *testing.T) {
	body := []byte(`{"model":"m","user":"top","safety_identifier":"s","system":"Be brief.","metadata":{"user_id":"first","user_id":"u-42"},"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	var f fields
	if e := scanBody(body, &f); e != nil {
		t.Fatal(e.message)
	}
	chatBytes := f.promptBytes
	f.messagesAPI(body)
	u := f.endUser()
	if got := string(body[u[0]:u[1]]); got != "u-42" {
		t.Errorf("end user %q", got)
	}
	if f.promptBytes != chatBytes+len(`"Be brief."`) {
		t.Errorf("prompt bytes %d, want %d", f.promptBytes, chatBytes+len(`"Be brief."`))
	}
	body = []byte(`{"model":"m","user":"top","metadata":{"user_id":7},"messages":[]}`)
	if e := scanBody(body, &f); e != nil {
		t.Fatal(e.message)
	}
	f.messagesAPI(body)
	if u := f.endUser(); u[0] >= 0 {
		t.Errorf("end user %q from a user_id that is no string", body[u[0]:u[1]])
	}
}
