package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// RFC 9110 11.6.1: a 401 carries a WWW-Authenticate challenge naming the scheme the
// server wants (RFC 6750 3.1: with error="invalid_token" only when a bearer token was
// sent, not for another scheme),
// on every route that checks the client's key.
func TestAPIKey401NamesBearerChallenge(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", "")+`auth: {mode: keys, keys: [{name: a, key: sk-aaaa-1234}]}
`)
	for _, tc := range []struct {
		name, method, path, authz, want string
	}{
		{"chat without a key", "POST", "/v1/chat/completions", "", `Bearer realm="tollgate"`},
		{"chat with a wrong key", "POST", "/v1/chat/completions", "Bearer sk-wrong", `Bearer realm="tollgate", error="invalid_token"`},
		{"chat with another scheme", "POST", "/v1/chat/completions", "Basic dXNlcjpwdw==", `Bearer realm="tollgate"`},
		{"models without a key", "GET", "/v1/models", "", `Bearer realm="tollgate"`},
		{"models with a wrong key", "GET", "/v1/models", "Bearer sk-wrong", `Bearer realm="tollgate", error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, g.url+tc.path, strings.NewReader(`{"model":"chat","messages":[]}`))
			req.Header.Set("Content-Type", "application/json")
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != tc.want {
				t.Errorf("%d with WWW-Authenticate %q, want 401 with %q", resp.StatusCode, got, tc.want)
			}
		})
	}
	// An answer other than 401 has none.
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(`{"model":`))
	req.Header.Set("Authorization", "Bearer sk-aaaa-1234")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 400 || got != "" {
		t.Errorf("%d with WWW-Authenticate %q, want 400 without", resp.StatusCode, got)
	}
}
