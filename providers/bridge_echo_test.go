package providers

import (
	"encoding/json"
	"testing"
)

// The bridge's response object echoes the settings it sent up as they are, as the
// Responses API's does: safety_identifier, prompt_cache_key and top_logprobs beside
// user, in the answer and in each of a stream's response objects, null (top_logprobs
// 0) when the request has none.
func TestBridgeEchoesSentSettings(t *testing.T) {
	const chat = `{"created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`
	cases := []struct {
		name, req string
		want      map[string]string
	}{
		{"given", `{"model":"chat","input":"x","user":"u1","safety_identifier":"sid-1","prompt_cache_key":"pk","top_logprobs":2}`,
			map[string]string{"user": `"u1"`, "safety_identifier": `"sid-1"`, "prompt_cache_key": `"pk"`, "top_logprobs": `2`}},
		{"left out", `{"model":"chat","input":"x"}`,
			map[string]string{"user": `null`, "safety_identifier": `null`, "prompt_cache_key": `null`, "top_logprobs": `0`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := bridgeAnswerOf(t, c.req, chat, Usage{Input: 1, Output: 1})
			checkEcho(t, "answer", []byte(resp.RawJSON()), c.want)

			got := readBridged(bridgeStreamOf(c.req, delta(`{"role":"assistant","content":"Hi"}`, "stop"), usageChunk, "[DONE]"))
			if got.err != nil {
				t.Fatal(got.err)
			}
			evs := checkEvents(t, got.events)
			for _, i := range []int{0, 1, len(evs) - 1} {
				checkEcho(t, evs[i].Type, []byte(evs[i].Response.RawJSON()), c.want)
			}
		})
	}
}

func checkEcho(t *testing.T, where string, raw []byte, want map[string]string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for k, v := range want {
		if string(m[k]) != v {
			t.Errorf("%s: %s is %s, want %s", where, k, m[k], v)
		}
	}
}
