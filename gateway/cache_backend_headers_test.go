package gateway

import (
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A backend's headers go upstream with every call and may pick what answers (a
// tenant, a model revision): a reload that changes one empties the cache. The
// fingerprint holds a hash of them, never a value; their names' case and order, and
// the credential headers a key rotation changes, keep it.
func TestCacheFingerprintBackendHeaders(t *testing.T) {
	const base = `backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, headers: {X-Tenant: acme-7f3q, X-Model-Revision: "2", Authorization: "Bearer sk-one"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
`
	fingerprint := func(y string) string {
		t.Helper()
		cfg, problems := parseProblems(t, y, nil)
		if problems != nil {
			t.Fatalf("problems: %q", problems)
		}
		return cacheFingerprint(cfg, &cfg.Endpoints[0])
	}
	was := fingerprint(base)
	for _, v := range []string{"acme-7f3q", "sk-one"} {
		if strings.Contains(was, v) {
			t.Errorf("the fingerprint holds the value %q", v)
		}
	}
	if none := fingerprint(strings.Replace(base, `, headers: {X-Tenant: acme-7f3q, X-Model-Revision: "2", Authorization: "Bearer sk-one"}`, "", 1)); none == was {
		t.Error("no headers: the same fingerprint")
	}
	for _, tc := range []struct {
		name, from, to string
		same           bool
	}{
		{"a value changed", "X-Tenant: acme-7f3q", "X-Tenant: globex-2k", false},
		{"a header added", `X-Model-Revision: "2"`, `X-Model-Revision: "2", X-Region: eu`, false},
		{"a header taken out", `X-Model-Revision: "2", `, "", false},
		{"a name's case", "X-Tenant:", "x-tenant:", true},
		{"their order", `X-Tenant: acme-7f3q, X-Model-Revision: "2"`, `X-Model-Revision: "2", X-Tenant: acme-7f3q`, true},
		{"the key rotated", "Bearer sk-one", "Bearer sk-two", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if same := fingerprint(strings.Replace(base, tc.from, tc.to, 1)) == was; same != tc.same {
				t.Errorf("same fingerprint: %v, want %v", same, tc.same)
			}
		})
	}
}

// End to end: an answer made with one X-Tenant is not served once a reload sends
// another.
func TestCacheReloadBackendHeaders(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 5s, headers: {X-Tenant: acme}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
`
	g := startGateway(t, cfg)
	body := `{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	for _, want := range []string{"miss", "hit"} {
		if resp, b := contractPost(t, g, "/v1/chat/completions", body, nil); resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != want {
			t.Fatalf("before the reload: %d %q %s; want %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b, want)
		}
	}
	if err := os.WriteFile(g.path, []byte(strings.Replace(cfg, "X-Tenant: acme", "X-Tenant: globex", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
	if n := mock.Stats().Requests["/v1/chat/completions"]; resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" || n != 2 {
		t.Errorf("after X-Tenant changed: %d, x-tollgate-cache %q, upstream asked %d times, %s; want a miss the upstream answers",
			resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), n, b)
	}
}
