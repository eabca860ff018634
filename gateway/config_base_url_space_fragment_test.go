package gateway

import (
	"strings"
	"testing"
)

// A base_url or target holding a space, or a fragment, is refused at its key and line.
// The space went out unescaped in every request line ("POST /v1 /chat/completions
// HTTP/1.1", which the upstream refuses as malformed: a value read through ${VAR} from
// a .env line with a trailing space reads so), and a fragment is never sent: an
// openai backend dropped it without a word, and an azure one, whose operations go after
// the URL, sent every request to the fragment's host root ("/"), the deployment path
// read as part of the fragment.
func TestConfigBaseURLSpaceOrFragmentRefused(t *testing.T) {
	tail := "    model: m\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
	cases := []struct{ name, backend, want string }{
		{"space in the path", "    provider: openai\n    base_url: \"http://10.0.0.1:8000/v1 \"\n",
			"t.yaml:4: backends.up.base_url: holds a space"},
		{"space in the query", "    provider: openai\n    base_url: \"http://10.0.0.1:8000/v1?tag=a b\"\n",
			"t.yaml:4: backends.up.base_url: holds a space"},
		{"space in a target", "    provider: anthropic\n    targets: [\"http://10.0.0.1:8000/v1\", \"http://10.0.0.2:8000/v 1\"]\n",
			"t.yaml:4: backends.up.targets[1]: holds a space"},
		{"fragment on openai", "    provider: openai\n    base_url: \"http://10.0.0.1:8000/v1#prod\"\n",
			"t.yaml:4: backends.up.base_url: has a fragment"},
		{"fragment on azure", "    provider: azure\n    deployment: d\n    base_url: \"https://res.openai.azure.com#eu\"\n",
			"t.yaml:5: backends.up.base_url: has a fragment"},
		{"empty fragment", "    provider: openai\n    base_url: \"http://10.0.0.1:8000/v1#\"\n",
			"t.yaml:4: backends.up.base_url: has a fragment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("t.yaml", []byte("backends:\n  up:\n"+c.backend+tail), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %s", err, c.want)
			}
		})
	}
	// %20 and an escaped # are what such a URL means, and are taken.
	ok := "backends:\n  up:\n    provider: openai\n    base_url: \"http://10.0.0.1:8000/a%20b/v1?tag=a%20b%23c\"\n" + tail
	if _, err := ParseConfig("t.yaml", []byte(ok), env(nil)); err != nil {
		t.Fatal(err)
	}
}
