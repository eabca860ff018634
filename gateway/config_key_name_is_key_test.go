package gateway

import (
	"strings"
	"testing"
)

// README: the key metrics, the access log and GET /admin/keys name a client key by
// its name, "never the key". A name that is a client key itself ({name: "${KEY}",
// key: "${KEY}"}, a variable pasted twice) would put that key in every one of them,
// so it is refused, without quoting it, whether the key is given as key or sha256.
func TestConfigKeyNameIsAKeyRefused(t *testing.T) {
	const secret = "sk-live-Rk9vQ2xZmW7pT4Lq"
	const sum = "1c0e5b0d0b9ff1c6c6b85e0e7d4a2b7c2b1b1a1e7d8f6b3c2a1d0e9f8a7b6c5d"
	tail := `
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	for _, tc := range []struct{ name, yaml, want string }{
		{"its own key", "auth:\n  keys:\n    - {name: \"" + secret + "\", key: \"" + secret + "\"}\n" + tail,
			"t.yaml:3: auth.keys[0].name: is the key of auth.keys[0]: a name is logged and shown, a key never"},
		{"another entry's key", "auth:\n  keys:\n    - {name: \"" + secret + "\", sha256: \"" + sum + "\"}\n    - {name: b, key: \"" + secret + "\"}\n" + tail,
			"t.yaml:3: auth.keys[0].name: is the key of auth.keys[1]: a name is logged and shown, a key never"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("config taken")
			}
			if strings.Contains(err.Error(), "Rk9vQ2xZ") {
				t.Errorf("the error quotes the key:\n%v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}
