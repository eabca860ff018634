package gateway

// OpenRouter and similar OpenAI-compatible routers answer 200 once the model started
// and put a later error in the body ("the returned HTTP response status will be 200
// and any error occurred while the LLM is producing the output will be emitted in the
// response body or as an SSE data event", openrouter.ai/docs/errors). The backend's
// key that error quotes is masked, in a buffered answer as in a stream.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestKeyMaskedInErrorBodyOf200(t *testing.T) {
	const key = "sk-or-v1-review-5d8c3a7e91"
	errObj := `{"error":{"code":401,"message":"provider refused key ` + key + `"}}`
	for _, c := range []struct {
		name   string
		stream bool
	}{
		{"buffered", false},
		{"stream", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.stream {
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: "+errObj+"\n\ndata: [DONE]\n\n")
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, errObj)
			}))
			defer up.Close()
			g := startGateway(t, keyedOpenAIConfig(up.URL, key))
			stream := "false"
			if c.stream {
				stream = "true"
			}
			status, body := probePost(t, g.url+"/v1/chat/completions", `{"model":"chat","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`, nil)
			if !strings.Contains(body, "provider refused key ***") || strings.Contains(body, key) {
				t.Errorf("answer %d, want the upstream's error with the key masked:\n%s", status, body)
			}
		})
	}
}
