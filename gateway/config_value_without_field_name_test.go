package gateway

import (
	"strings"
	"testing"
)

// README: "Config errors name the key and line of a bad value without quoting a
// secret (an api_key, a header value, a client key)". A secret written in a flow
// mapping with its field name left out ({name: team-a, sk-live-...}) is read by YAML as
// a key with no value, and the unknown key's error named it whole, into the log, the
// 422 of POST /admin/reload and `tollgate validate`'s output. In a mapping that holds a
// secret field, such an entry, near no field name, is named by its mapping alone.
func TestConfigValueWithoutFieldNameNotQuoted(t *testing.T) {
	const secret = "sk-live-Rk9vQ2xZmW7pT4Lq"
	tail := `
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	const known = " (known keys: endpoints, expires_at, key, limits, name, sha256)"
	for _, tc := range []struct{ name, yaml, want string }{
		{"client key", "auth:\n  keys:\n    - {name: team-a, " + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0]: holds a value with no field name before it` + known},
		{"client key quoted", "auth:\n  keys:\n    - {name: team-a, \"" + secret + "\"}\n" + tail,
			`t.yaml:3: auth.keys[0]: holds a value with no field name before it` + known},
		{"client key twice", "auth:\n  keys:\n    - {name: team-a, " + secret + ", " + secret + "}\n" + tail,
			`t.yaml:3: auth.keys[0]: holds a value with no field name before it` + known},
		{"client key in block form", "auth:\n  keys:\n    - name: team-a\n      ? " + secret + "\n" + tail,
			`t.yaml:4: auth.keys[0]: holds a value with no field name before it` + known},
		{"admin token", "server: {" + secret + "}\n" + tail,
			`t.yaml:1: server: holds a value with no field name before it`},
		{"backend api_key", "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m, " + secret + "}\n" +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			`t.yaml:2: backends.up: holds a value with no field name before it`},
		{"misspelled field kept", "auth:\n  keys:\n    - {name: team-a, kye}\n" + tail,
			`t.yaml:3: auth.keys[0].kye: unknown key (did you mean key?)`},
		{"no secret field there", "backends:\n  demo: {provider: mock, model: mock-1}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: demo}], streaming}\n",
			`t.yaml:4: endpoints[0].streaming: unknown key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("config taken")
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the secret:\n%v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}
