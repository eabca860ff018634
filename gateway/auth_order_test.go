package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A client without a valid key is refused for its key whatever its body holds, as
// OpenAI does: malformed JSON, a missing model or an unknown one tell it nothing.
// With the key, the body's faults are answered as such.
func TestKeyCheckedBeforeBody(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", "")+`auth: {mode: keys, keys: [{name: a, key: sk-aaaa-1234}]}
`)
	for _, tc := range []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"malformed JSON without a key", "", `{"model":`, 401, "missing_api_key"},
		{"malformed JSON with a wrong key", "sk-wrong", `{"model":`, 401, "invalid_api_key"},
		{"no model with a wrong key", "sk-wrong", `{"messages":[]}`, 401, "invalid_api_key"},
		{"unknown model with a wrong key", "sk-wrong", `{"model":"nope","messages":[]}`, 401, "invalid_api_key"},
		{"malformed JSON with the key", "sk-aaaa-1234", `{"model":`, 400, "invalid_json"},
		{"no model with the key", "sk-aaaa-1234", `{"messages":[]}`, 400, "missing_model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
}
