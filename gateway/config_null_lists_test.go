package gateway

import (
	"strings"
	"testing"
)

// A key's endpoints written with nothing under it (its last item commented out to
// revoke it, or null spelled out) is YAML null, which decodes as if the list were left
// out, and left out means every endpoint. It is refused like the empty list, naming
// its line and key: taken, the revoked key could call every endpoint.
func TestConfigKeyNullEndpointsRefused(t *testing.T) {
	for name, endpoints := range map[string]string{
		"item commented out": "endpoints:\n        # - chat   (revoked)",
		"bare":               "endpoints:",
		"tilde":              "endpoints: ~",
		"null":               "endpoints: null",
	} {
		cfg := `backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: admin-only, type: chat, routes: [{backend: up}]}
auth:
  keys:
    - {name: ops, key: sk-ops}
    - name: team-a
      key: sk-team-a
      ` + endpoints + `
`
		_, err := ParseConfig("t.yaml", []byte(cfg), env(nil))
		if err == nil || !strings.Contains(err.Error(), "t.yaml:11: auth.keys[1].endpoints: lists no endpoint") {
			t.Errorf("%s: err = %v, want auth.keys[1].endpoints refused at line 11", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "keys[0]") {
			t.Errorf("%s: the other key refused too: %v", name, err)
		}
	}
}

// The keys list written with nothing in it and no auth.mode (every key commented out
// to revoke it) turns authentication on as a list with keys does, and so is refused
// for having no key, rather than read as mode none and served to anyone. With mode
// none written, the same list is taken: the operator chose an open gateway.
func TestConfigNullKeysListRefused(t *testing.T) {
	const rest = `backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	for name, auth := range map[string]string{
		"item commented out": "auth:\n  keys:\n    # - {name: team-a, key: sk-a}\n",
		"null":               "auth:\n  keys: null\n",
		"empty list":         "auth:\n  keys: []\n",
	} {
		_, err := ParseConfig("t.yaml", []byte(auth+rest), env(nil))
		if err == nil || !strings.Contains(err.Error(), "auth.keys: mode keys needs at least one key") {
			t.Errorf("%s: err = %v, want the config refused for having no key", name, err)
		}
	}
	cfg, err := ParseConfig("t.yaml", []byte("auth:\n  mode: none\n  keys:\n"+rest), env(nil))
	if err != nil || cfg.Auth.Mode != "none" {
		t.Fatalf("mode none with an empty keys list: mode %v, err %v", cfg, err)
	}
}
