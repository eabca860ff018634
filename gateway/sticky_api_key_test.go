package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// With sticky: {from: api_key} a caller is kept on one variant by the name of the key
// it authenticates with, on every call. (Without authentication no request has a key:
// that config is refused, testdata/config/bad-sticky-api-key-without-auth.yaml.)
func TestStickyAPIKeyKeepsCallerOnOneVariant(t *testing.T) {
	a := startStaticUpstream(t)
	b := startStaticUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  mode: keys
  keys: [{name: team-a, key: sk-team-a}]
backends:
  stable: {provider: openai, base_url: "http://`+a+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+b+`/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50, variant: stable}, {backend: canary, weight: 50, variant: canary}]
    sticky: {from: api_key}
logging: {level: error, access_log: false}
`)
	seen := map[string]int{}
	for range 20 {
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(chatBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-team-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		seen[resp.Header.Get("X-Tollgate-Variant")]++
	}
	if len(seen) != 1 {
		t.Errorf("one caller with one API key was served by variants %v, want one", seen)
	}
}
