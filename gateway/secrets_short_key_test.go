package gateway

// A backend key under 8 characters (vLLM's --api-key takes any string; "EMPTY" or a
// short shared secret is common on an internal pool) is masked where an upstream error
// quotes it as a whole word, and a word it is part of is left alone.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestShortBackendKeyMasked(t *testing.T) {
	const key = "Vk7#q2Z" // 7 characters
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"message":"api key `+got+` is not valid for this server (`+got+`x is not it either)","type":"invalid_request_error","code":"invalid_api_key"}}`)
	}))
	defer up.Close()
	g := startGateway(t, keyedOpenAIConfig(up.URL, key))
	status, body := probePost(t, g.url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil)
	if status != 401 {
		t.Fatalf("status %d, want the upstream's 401:\n%s", status, body)
	}
	if msg, want := errorMessage(t, body), "api key *** is not valid for this server ("+key+"x is not it either)"; msg != want {
		t.Errorf("the client reads %q, want %q", msg, want)
	}
}
