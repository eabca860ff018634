package gateway

import (
	"slices"
	"testing"
)

// A number with a fraction where a whole number belongs was cut without a word: yaml.v3
// decodes 0.5 into an int as 0, so `max_concurrency: 0.5` was no cap at all,
// `retries: 2.7` was 2. It is refused at its key, as 1e30 is. A float with no fraction
// (2.0, 1e3) is that whole number, as the decoder reads it.
func TestConfigFractionWhereWholeNumberBelongs(t *testing.T) {
	const up = "backends:\n  up: {provider: mock, model: m}\n"
	for _, c := range []struct{ name, y, want string }{
		{"max_concurrency",
			"backends:\n  up: {provider: openai, base_url: 'http://a/v1', model: m, max_concurrency: 0.5}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			"t.yaml:2: backends.up.max_concurrency: must be a whole number, not 0.5"},
		{"retries", up + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], retries: 2.7}\n",
			"t.yaml:4: endpoints[0].retries: must be a whole number, not 2.7"},
		{"burst", up + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: user, requests: 10, window: minute, burst: 2.9}]}\n",
			"t.yaml:4: endpoints[0].limits[0].burst: must be a whole number, not 2.9"},
		{"route weight", up + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up, weight: 100.4}]}\n",
			"t.yaml:4: endpoints[0].routes[0].weight: must be a whole number, not 100.4"},
		{"a fraction written with an exponent", up + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: up}], retries: 5e-1}\n",
			"t.yaml:4: endpoints[0].retries: must be a whole number, not 5e-1"},
		{"from a variable", up + "endpoints:\n  - name: chat\n    type: chat\n    routes: [{backend: up}]\n    retries: ${RETRIES}\n",
			"t.yaml:7: endpoints[0].retries: must be a whole number, not 1.5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, map[string]string{"RETRIES": "1.5"})
			if !slices.Equal(problems, []string{c.want}) {
				t.Fatalf("problems = %q, want [%q]", problems, c.want)
			}
		})
	}

	cfg, problems := parseProblems(t, up+"endpoints:\n  - {name: chat, type: chat, routes: [{backend: up, weight: 1e2}], retries: 2.0}\n", nil)
	if problems != nil {
		t.Fatalf("whole numbers written as floats refused: %q", problems)
	}
	if e := cfg.Endpoints[0]; e.Retries != 2 || e.Routes[0].Weight != 100 {
		t.Fatalf("retries = %d, weight = %d; want 2 and 100", e.Retries, e.Routes[0].Weight)
	}
}

// A fraction is refused and read as null, as a value of the wrong type is: the checks
// ran on the decoder's whole parts and added "weights add up to 99, want 100" for route
// weights of 50.5 and 49.5, which add up to 100 as written. The same anchored fraction
// is refused at each key it stands at.
func TestConfigFractionNotCheckedAsCut(t *testing.T) {
	const ab = "backends:\n  a: {provider: mock, model: m}\n  b: {provider: mock, model: m}\nendpoints:\n"
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"weights adding up to 100 as written",
			ab + "  - {name: chat, type: chat, routes: [{backend: a, weight: 50.5}, {backend: b, weight: 49.5}]}\n",
			[]string{
				"t.yaml:5: endpoints[0].routes[0].weight: must be a whole number, not 50.5",
				"t.yaml:5: endpoints[0].routes[1].weight: must be a whole number, not 49.5",
			}},
		{"an anchored fraction at two keys",
			ab + "  - {name: chat, type: chat, routes: [{backend: a, weight: &w 50.5}, {backend: b, weight: *w}]}\n",
			[]string{
				"t.yaml:5: endpoints[0].routes[0].weight: must be a whole number, not 50.5",
				"t.yaml:5: endpoints[0].routes[1].weight: must be a whole number, not 50.5",
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems = %q, want %q", problems, c.want)
			}
		})
	}
}
