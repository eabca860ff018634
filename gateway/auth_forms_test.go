package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

func authCall(t *testing.T, method, url, body string, hdr [][2]string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	for _, h := range hdr {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header
}

const authChatBody = `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`

func startAuthGateway(t *testing.T) *gw {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	return startGateway(t, mockConfig(addr, "", "")+`auth: {mode: keys, keys: [{name: team-a, key: sk-team-a-1234, endpoints: [chat]}]}
`)
}

// `Authorization: Bearer ` with nothing after the scheme (curl -H "Authorization: Bearer
// $KEY" with KEY unset; the trailing space never survives the header parser) presents
// no key: README's table answers a missing key with missing_api_key, as OpenAI does
// ("You didn't provide an API key"). Read as some other scheme it was answered
// invalid_api_key ("Incorrect API key provided"), misleading the user.
func TestEmptyBearerIsMissingKey(t *testing.T) {
	g := startAuthGateway(t)
	for _, v := range []string{"Bearer", "Bearer ", "bearer"} {
		st, b, h := authCall(t, "POST", g.url+"/v1/chat/completions", authChatBody, [][2]string{{"Authorization", v}})
		if st != 401 || !strings.Contains(b, `"code":"missing_api_key"`) {
			t.Errorf("Authorization %q: %d %s (WWW-Authenticate %q), want 401 missing_api_key", v, st, b, h.Values("Www-Authenticate"))
		}
	}
}

// README: the 401 "carries WWW-Authenticate: Bearer realm="tollgate", plus
// error="invalid_token" when a wrong bearer key was sent" (RFC 6750 3.1: the error
// attribute is about a bearer token the request carried). A wrong key in Azure's
// api-key or Anthropic's x-api-key header is no bearer token: its challenge has no
// error attribute. A wrong bearer key does get it.
func TestChallengeWithoutInvalidTokenForKeyHeaders(t *testing.T) {
	g := startAuthGateway(t)
	st, _, h := authCall(t, "POST", g.url+"/v1/chat/completions", authChatBody, [][2]string{{"Authorization", "Bearer sk-nope"}})
	if st != 401 || h.Get("Www-Authenticate") != `Bearer realm="tollgate", error="invalid_token"` {
		t.Fatalf("wrong bearer key: %d %q", st, h.Values("Www-Authenticate"))
	}
	for _, name := range []string{"api-key", "x-api-key"} {
		st, b, h := authCall(t, "POST", g.url+"/v1/chat/completions", authChatBody, [][2]string{{name, "sk-nope"}})
		if st != 401 || !strings.Contains(b, "invalid_api_key") {
			t.Fatalf("%s: %d %s", name, st, b)
		}
		if got := h.Values("Www-Authenticate"); len(got) != 1 || got[0] != `Bearer realm="tollgate"` {
			t.Errorf("wrong key in %s: WWW-Authenticate %q, want [Bearer realm=\"tollgate\"] (no bearer token was sent)", name, got)
		}
	}
}
