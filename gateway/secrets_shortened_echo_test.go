package gateway

// OpenAI's answer to a wrong key quotes it shortened: its first characters and its last
// four around asterisks ("Incorrect API key provided: sk-abc***wxyz"), the form
// OpenAI's dashboard identifies a key by. A client of the gateway must not learn which
// operator key the backend uses (its project prefix and last four characters).

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestShortenedKeyEchoMasked(t *testing.T) {
	const key = "sk-proj-Zr8Qv2LmT5nXc7WbK4yHd9FsJ1pGa3Ue"
	for _, c := range []struct {
		name  string
		shown func(key string) string
	}{
		{"prefix, stars, last four", func(k string) string { return k[:10] + strings.Repeat("*", len(k)-14) + k[len(k)-4:] }},
		{"older form", func(k string) string { return k[:6] + strings.Repeat("*", 15) + k[len(k)-4:] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(401)
				io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+c.shown(got)+`. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
			}))
			defer up.Close()
			g := startGateway(t, keyedOpenAIConfig(up.URL, key))
			status, body := probePost(t, g.url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil)
			const want = "Incorrect API key provided: ***. You can find your API key at https://platform.openai.com/account/api-keys."
			if msg := errorMessage(t, body); msg != want {
				t.Errorf("%d: the client reads %q, want %q", status, msg, want)
			}
		})
	}
}
