package gateway

// Config errors name the key and line of a bad value without quoting a secret, where
// yaml.v3's own message would quote it.

import (
	"strings"
	"testing"
)

// A secret written unquoted that begins with '*' (random passwords and tokens with
// symbols do) is an alias to YAML: its name is the secret.
func TestConfigSecretReadAsAliasNotQuoted(t *testing.T) {
	const secret = "Rk9vQ2xZmW7pT4Lq"
	cases := []struct{ name, yaml, want string }{
		{"api_key", `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m,
       api_key: *` + secret + `}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:4: backends.up.api_key: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		{"client key", `
auth:
  keys:
    - {name: team-a, key: *` + secret + `}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`, "t.yaml:4: auth.keys[0].key: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		{"header value", `
backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:1/v1"
    model: m
    headers:
      x-gateway-token: *` + secret + `
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:8: backends.up.headers.x-gateway-token: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		{"admin token", "server:\n  admin_token: *" + secret + "\n",
			"t.yaml:2: server.admin_token: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		{"redis password", "limiter:\n  redis: {url: \"redis://127.0.0.1:6379\", password: *" + secret + "}\n",
			"t.yaml:2: limiter.redis.password: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		{"MLflow key", `
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt, config: {openai_api_key: *` + secret + `}}
`, "t.yaml:5: endpoints[0].model.config.openai_api_key: a value that begins with * is read as a YAML alias (to no anchor): quote it"},
		// Another key's alias is named, as a misspelled anchor's.
		{"not a secret", "backends:\n  up: {provider: mock, model: *" + secret + "}\n",
			"t.yaml:2: backends.up.model: *" + secret + " refers to no anchor &" + secret + " defined before it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil {
				t.Fatal("config accepted")
			}
			if got := err.Error(); !strings.Contains(got, c.want) {
				t.Errorf("error\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// A value whose explicit tag it does not fit (`api_key: !!bool ...`) is placed at its
// key and line; a secret's value is left out of yaml.v3's "cannot decode !!str `...`".
func TestConfigSecretWithWrongTagNotQuoted(t *testing.T) {
	const secret = "Secr3tT0ken-51c9"
	cases := []struct{ name, yaml, want string }{
		{"api_key", `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m,
       api_key: !!bool ` + secret + `}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, "t.yaml:4: backends.up.api_key: is tagged !!bool, which the value is not: remove the tag"},
		{"admin token", "server:\n  admin_token: !!int " + secret + "\n",
			"t.yaml:2: server.admin_token: is tagged !!int, which the value is not: remove the tag"},
		{"not a secret", "backends:\n  up: {provider: mock, model: !!float m-" + secret + "}\n",
			"t.yaml:2: backends.up.model: cannot decode !!str `m-" + secret + "` as a !!float"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(nil))
			if err == nil {
				t.Fatal("config accepted")
			}
			if got := err.Error(); !strings.Contains(got, c.want) {
				t.Errorf("error\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}
