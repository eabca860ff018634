//go:build !race

package providers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestMessagesBridgeCountAllocs pins a token count's translations to no allocation:
// the tokenize request written from a Messages body, and the tokenize answer turned
// into {"input_tokens": N} in the answer's own buffer.
func TestMessagesBridgeCountAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	model := quoteModel("chat")
	for _, body := range []string{benchMsgsBody, claudeCodeFirstTurn, claudeCodeToolSearchTurn} {
		body := []byte(body)
		if n := testing.AllocsPerRun(200, func() {
			buf, _, _ = appendMessagesTokenize(buf[:0], body, model)
		}); n != 0 {
			t.Errorf("tokenize request: %.1f allocations, budget 0", n)
		}
	}
	var out fasthttp.Response
	answer := []byte(`{"count":1234,"max_model_len":32768,"tokens":[1,2,3],"token_strs":null}`)
	if n := testing.AllocsPerRun(200, func() {
		out.SetBody(answer)
		if err := countAnswer(&out); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("count answer: %.1f allocations, budget 0", n)
	}
	if string(out.Body()) != `{"input_tokens":1234}` {
		t.Errorf("answer %s", out.Body())
	}
}
