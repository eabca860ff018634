package gateway

import (
	"strings"
	"testing"
)

// A backend's headers entry that is no header, a key pasted as a header's name with
// nothing after it, an empty value, or a name that is not an HTTP token, is refused
// at its file, line and headers key, without the name: it may be the secret.
func TestConfigHeaderEntriesRefused(t *testing.T) {
	const secret = "sk-proj-Rk9vQ2xZmW7pT4Lq"
	backend := func(headers string) string {
		return `
backends:
  up:
    provider: openai
    base_url: "http://127.0.0.1:1/v1"
    model: m
` + headers + `
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	}
	const empty = ": backends.up.headers: holds a header with an empty value"
	const notToken = ": backends.up.headers: holds a header whose name is not an HTTP token"
	for _, tc := range []struct{ name, yaml, want string }{
		{"key as a name in a flow mapping", backend("    headers: {x-tenant: acme, " + secret + ":}"), "t.yaml:7" + empty},
		{"key as a name with nothing after it", backend("    headers:\n      x-tenant: acme\n      " + secret + ":"), "t.yaml:9" + empty},
		{"key as a name, empty string", backend("    headers:\n      x-tenant: acme\n      " + secret + `: ""`), "t.yaml:9" + empty},
		{"key as a name, empty variable", backend("    headers:\n      x-tenant: acme\n      " + secret + `: "${EMPTY}"`), "t.yaml:9" + empty},
		{"name with a space", backend("    headers:\n      x-tenant: acme\n      \"" + secret + " x\": v"), "t.yaml:9" + notToken},
		{"name with a colon", backend("    headers:\n      x-tenant: acme\n      \"" + secret + ":x\": v"), "t.yaml:9" + notToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(map[string]string{"EMPTY": ""}))
			if err == nil {
				t.Fatal("config taken")
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the name:\n%v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
	// A header with a value, its name a token, is taken.
	if _, err := ParseConfig("t.yaml", []byte(backend("    headers: {x-tenant: acme, x-model-revision: \"2\"}")), env(nil)); err != nil {
		t.Errorf("headers with values: %v", err)
	}
}

// A header value an environment problem left unknown, or one refused as a YAML alias,
// is reported for that alone, not again as empty.
func TestConfigHeaderUnreadValueNotEmpty(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"unset variable", `"${UNSET}"`, "t.yaml:8: backends.up.headers.x-tenant: environment variable UNSET is not set"},
		{"malformed reference", `"${"`, "t.yaml:8: backends.up.headers.x-tenant: ${ is not followed by a variable name"},
		{"alias", `*tenant`, "t.yaml:8: backends.up.headers.x-tenant: a value that begins with * is read as a YAML alias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "\nbackends:\n  up:\n    provider: openai\n    base_url: \"http://127.0.0.1:1/v1\"\n    model: m\n    headers:\n      x-tenant: " + tc.value +
				"\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
			_, err := ParseConfig("t.yaml", []byte(yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "empty value") {
				t.Errorf("error\n%v\nwant\n%s\nand no other", err, tc.want)
			}
		})
	}
}
