package gateway

import (
	"math"
	"slices"
	"strings"
	"testing"
)

const shapeBackend = "backends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\n"

const shapeEndpoint = "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"

// A mapping where a list belongs, or a list where a section or mapping belongs (the
// mistakes of endpoints written as a mapping of names, auth.keys without its dashes),
// is reported at its key with what the key takes: the message had no key and said
// "must be a number". So is one value where a list, a mapping or a number belongs
// (`endpoints: chat`, `backends: none`): that message named Go types
// ("cannot unmarshal !!str into []gateway.EndpointConfig").
func TestWrongKindOfCollectionNamesKey(t *testing.T) {
	for _, c := range []struct{ name, y, want string }{
		{"endpoints as a mapping of names", shapeBackend + "endpoints:\n  chat: {type: chat, routes: [{backend: up}]}\n",
			"t.yaml:4: endpoints: must be a list, not a mapping"},
		{"auth.keys without dashes", "auth:\n  keys: {name: a, key: sk-a}\n" + shapeBackend + shapeEndpoint,
			"t.yaml:2: auth.keys: must be a list, not a mapping"},
		{"a section as a list", "server: [\":8080\"]\n" + shapeBackend + shapeEndpoint,
			"t.yaml:1: server: must be a mapping, not a list"},
		{"a backend as a list", "backends:\n  up: [openai]\n" + shapeEndpoint,
			"t.yaml:2: backends.up: must be a mapping, not a list"},
		{"a route as a list", shapeBackend + "endpoints:\n  - {name: chat, type: chat, routes: [[up]]}\n",
			"t.yaml:4: endpoints[0].routes[0]: must be a mapping, not a list"},
		{"a string of a named type as a mapping", shapeBackend +
			"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], sticky: {from: {header: X-User}}}\n",
			"t.yaml:4: endpoints[0].sticky.from: must be a string, not a mapping"},
		{"the whole file a list", "- server\n- backends\n",
			"t.yaml:1: the file must be a mapping of sections (server, auth, backends, endpoints, limiter, tracing, logging), not a list"},
		{"endpoints as one name", shapeBackend + "endpoints: chat\n",
			"t.yaml:3: endpoints: must be a list, not a string"},
		{"auth.keys as one key", "auth: {keys: team-a}\n" + shapeBackend + shapeEndpoint,
			"t.yaml:1: auth.keys: must be a list, not a string"},
		{"auth.keys as a secret filled in", "auth:\n  keys: ${KEYS}\n" + shapeBackend + shapeEndpoint,
			"t.yaml:2: auth.keys: must be a list, not a string"},
		{"backends as a word", "backends: none\n" + shapeEndpoint,
			"t.yaml:1: backends: must be a mapping, not a string"},
		{"a section as a number", "server: 8080\n" + shapeBackend + shapeEndpoint,
			"t.yaml:1: server: must be a mapping, not a number"},
		{"a section as a switch", "tracing: false\n" + shapeBackend + shapeEndpoint,
			"t.yaml:1: tracing: must be a mapping, not a boolean"},
		{"a backend as its provider", "backends:\n  up: openai\n" + shapeEndpoint,
			"t.yaml:2: backends.up: must be a mapping, not a string"},
		{"a route as a backend name", shapeBackend + "endpoints:\n  - {name: chat, type: chat, routes: [up]}\n",
			"t.yaml:4: endpoints[0].routes[0]: must be a mapping, not a string"},
		{"a number as a word", shapeBackend + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], retries: two}\n",
			"t.yaml:4: endpoints[0].retries: must be a number, not a string"},
		{"a number too large", shapeBackend + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], retries: 1e30}\n",
			"t.yaml:4: endpoints[0].retries: must be a whole number between -2^63 and 2^63 − 1"},
		{"a switch as a number", "logging: {access_log: 1}\n" + shapeBackend + shapeEndpoint,
			"t.yaml:1: logging.access_log: must be true or false, not a number"},
		{"the whole file one word", "tollgate\n",
			"t.yaml:1: the file must be a mapping of sections (server, auth, backends, endpoints, limiter, tracing, logging), not a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, map[string]string{"KEYS": "sk-team-a"})
			if !slices.Contains(problems, c.want) {
				t.Fatalf("problems = %q, want %q", problems, c.want)
			}
			// yaml.v3's text names Go types and may hold the value, a secret.
			for _, p := range problems {
				if strings.Contains(p, "gateway.") || strings.Contains(p, "unmarshal") || strings.Contains(p, "sk-team-a") {
					t.Fatalf("problem %q names a Go type or shows the value", p)
				}
			}
		})
	}
}

// An alias of an anchor not defined before it (a misspelled `<<: *defualts`) is
// reported at the alias's line and key, with the anchor it likely meant: yaml.v3's
// error has neither. The same text in a comment or a quoted string is not the alias.
func TestUnknownAnchorNamesLineAndKey(t *testing.T) {
	for _, c := range []struct{ name, y, want string }{
		{"merge key", "backends:\n  base: &defaults {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\n" +
			"  up: {<<: *defualts, model: n}\n" + shapeEndpoint,
			"t.yaml:3: backends.up: *defualts refers to no anchor &defualts defined before it (did you mean defaults?)"},
		{"list item after a comment and a string holding it", "# copy *defualts from base\n" +
			"backends:\n  base: &defaults {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: \"*defualts\"}\n" +
			"  up:\n    <<: *defaults\n    model: n\nendpoints:\n  - name: chat\n    type: chat\n    fallbacks: [up, *defualts]\n",
			"t.yaml:10: endpoints[0].fallbacks[1]: *defualts refers to no anchor &defualts defined before it (did you mean defaults?)"},
		{"no anchor near it", shapeBackend + "endpoints:\n  - *chat\n",
			"t.yaml:4: endpoints[0]: *chat refers to no anchor &chat defined before it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, []string{c.want}) {
				t.Fatalf("problems = %q, want [%q]", problems, c.want)
			}
		})
	}
}

// README: sizes go up to 2^63 − 1 bytes, and that size itself is one (a float64
// comparison refused it).
func TestSizeMaxInt64Accepted(t *testing.T) {
	cfg, problems := parseProblems(t, "server: {max_body_bytes: 9223372036854775807}\n"+shapeBackend+shapeEndpoint, nil)
	if problems != nil {
		t.Fatalf("max_body_bytes: 9223372036854775807 (2^63 − 1) refused: %q", problems)
	}
	if cfg.Server.MaxBodyBytes != math.MaxInt64 {
		t.Fatalf("max_body_bytes = %d, want 2^63 − 1", cfg.Server.MaxBodyBytes)
	}
}
