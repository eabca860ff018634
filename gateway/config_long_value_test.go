package gateway

import (
	"errors"
	"strings"
	"testing"
)

// A config error quotes a bad value so that its writer sees what was read, but not
// whole: a 20 MB server.listen (a file pasted into it, a runaway template) would come
// back 20 MB in validate's output, the reload's log line and the admin API's answer.
// A quoted value over 64 bytes is cut there and says its length, in whichever
// package's problem it is quoted.
func TestConfigErrorBoundsQuotedValues(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name, yaml, key string
	}{
		{"server.listen", `server: {listen: "` + long + `"}`, "server.listen"},
		{"server.trusted_proxies", `server: {trusted_proxies: ["` + long + `"]}`, "server.trusted_proxies"},
		{"a route's backend (router's problem)", `server: {listen: "127.0.0.1:0"}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: "` + long + `"}]}`, "endpoints[0].routes[0].backend"},
		{"a size", `server: {listen: "127.0.0.1:0", max_body_bytes: "` + long + `"}`, "server.max_body_bytes"},
		{"a key's endpoint", `server: {listen: "127.0.0.1:0"}
auth: {mode: keys, keys: [{name: a, key: sk-aaaaaaaaaaaaaaaa, endpoints: ["` + long + `"]}]}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}`, "auth.keys[0].endpoints[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("tollgate.yaml", []byte(tc.yaml), env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			msg := ce.Error()
			if len(msg) > 4096 {
				t.Fatalf("error of %d bytes for a value of 1 MiB, want it bounded: %.300s…", len(msg), msg)
			}
			if !strings.Contains(msg, tc.key) || !strings.Contains(msg, strings.Repeat("x", 64)) || strings.Contains(msg, strings.Repeat("x", 65)) {
				t.Errorf("error does not name the key %s and the value's start:\n%s", tc.key, msg)
			}
			if !strings.Contains(msg, "bytes)") {
				t.Errorf("error does not say the value's length:\n%s", msg)
			}
		})
	}
}

// A quoted value of 64 bytes or less is quoted whole, and one cut keeps its runes
// whole, its escapes and its quotes ("…" or `…`).
func TestBoundQuoted(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"short values whole", `"a:b" is not host:port (e.g. ":8080" or "127.0.0.1:9090")`, `"a:b" is not host:port (e.g. ":8080" or "127.0.0.1:9090")`},
		{"64 bytes whole", `"` + strings.Repeat("a", 64) + `" x`, `"` + strings.Repeat("a", 64) + `" x`},
		{"65 bytes cut", `"` + strings.Repeat("a", 65) + `" x`, `"` + strings.Repeat("a", 64) + `"… (65 bytes) x`},
		{"a rune at the cut", `"` + strings.Repeat("a", 63) + `é" x`, `"` + strings.Repeat("a", 63) + `"… (65 bytes) x`},
		{"escapes kept", `"` + strings.Repeat(`\t`, 70) + `"`, `"` + strings.Repeat(`\t`, 64) + `"… (70 bytes)`},
		{"no closing quote", `a "b`, `a "b`},
		{"backquotes cut", "cannot use `" + strings.Repeat("a", 70) + "` as a size", "cannot use `" + strings.Repeat("a", 64) + "`… (70 bytes) as a size"},
		{"a quote inside backquotes", "`say \"" + strings.Repeat("a", 70) + "\"`", "`say \"" + strings.Repeat("a", 59) + "`… (76 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := boundQuoted(tc.in); got != tc.want {
				t.Errorf("boundQuoted(%.80q…) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
