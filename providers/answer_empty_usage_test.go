package providers

import "testing"

// TestAnswerEmptyUsageIsNoUsage: an answer whose usage is an empty object ("usage":
// {}) came without usage as one without the member or with null did: it holds no
// count, believable or not, and is charged its prompt's estimate and its generated
// text (NoUsage, OutputBytes), as a stream whose usage chunk carries {} is, rather
// than keeping its whole estimate charged. Through every provider's scan: OpenAI's
// answers (chat, legacy completions, Responses API) and the Messages API's, passed on
// or translated to chat.
func TestAnswerEmptyUsageIsNoUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		bytes      int
	}{
		{"chat", `{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"}}],"usage":{}}`, 5},
		{"chat, space inside", `{"choices":[{"index":0,"message":{"content":"Hello"}}],"usage": { } }`, 5},
		{"Responses API", `{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{}}`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res Result
			if ok, _ := scanAnswerTo([]byte(tc.body), &res.Usage, &res); !ok {
				t.Fatal("not read as an answer")
			}
			if !res.NoUsage || res.OutputBytes != tc.bytes {
				t.Errorf("NoUsage %v, OutputBytes %d; want true, %d", res.NoUsage, res.OutputBytes, tc.bytes)
			}
		})
	}
	t.Run("message", func(t *testing.T) {
		body := []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Paris"}],"stop_reason":"end_turn","usage":{}}`)
		var res Result
		var u anthropicUsage
		if ok, _ := scanMessage(body, &u, &res); !ok {
			t.Fatal("not read as a message")
		}
		if !res.NoUsage || res.OutputBytes != 5 {
			t.Errorf("scanMessage: NoUsage %v, OutputBytes %d; want true, 5", res.NoUsage, res.OutputBytes)
		}
		res = Result{}
		if _, ok := appendChatCompletion(nil, body, 1, &res.Usage, &res); !ok {
			t.Fatal("not translated")
		}
		if !res.NoUsage || res.OutputBytes != 5 {
			t.Errorf("appendChatCompletion: NoUsage %v, OutputBytes %d; want true, 5", res.NoUsage, res.OutputBytes)
		}
	})
}
