package gateway

import (
	"strings"
	"testing"
)

// A secret with a line break inside it (two lines of a secret file read through
// ${VAR}, a double-quoted "\n") can never work: no HTTP header value holds a line
// break, so a client key or the admin token could never be presented, and a backend's
// api_key goes out with the break turned into a space (fasthttp), a value other than
// the one recorded for masking in upstream errors. Each is refused as a backend's
// `headers` value is, naming the key and line without quoting the value.
func TestConfigRefusesLineBreakInSecrets(t *testing.T) {
	const secret = "Zq7XsecretPart1"
	cases := []struct{ name, yaml, key string }{
		{"backend api_key", `
backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:1/v1"
    model: m
    api_key: "` + secret + `\nline2"
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, ":7: backends.up.api_key: "},
		{"anthropic api_key", `
backends:
  up:
    provider: anthropic
    base_url: "http://127.0.0.1:1/v1"
    model: m
    api_key: "` + secret + `\r\nline2"
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, ":7: backends.up.api_key: "},
		{"client key", `
auth:
  keys:
    - name: a
      key: "` + secret + `\nline2"
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, ":5: auth.keys[0].key: "},
		{"admin token", `
server:
  admin_token: "` + secret + `\nline2"
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, ":3: server.admin_token: "},
		{"client key from a variable", `
auth:
  keys:
    - {name: a, key: "${KEY}"}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`, ":4: auth.keys[0].key: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(c.yaml), env(map[string]string{"KEY": secret + "\nline2"}))
			if err == nil {
				t.Fatalf("config with a line break inside %s accepted; want it refused as a header value with one is", c.key)
			}
			if want := "t.yaml" + c.key + lineBreakProblem; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not hold %q", err, want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the secret", err)
			}
		})
	}
}
