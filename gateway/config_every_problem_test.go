package gateway

import (
	"slices"
	"strings"
	"testing"
)

// README, Configuration: "`tollgate validate` reports every problem at once". A value
// the decoder refuses (a word where retries takes a number, a key given twice, a list
// where a backend belongs) is its key's one problem, as an unset variable is: the
// other keys are still checked (an unknown backend two lines above was reported only
// once the type error was fixed and validate run again), and what the checks would
// find in the refused value itself ("is required") is not said again.
func TestConfigRefusedValueKeepsOtherChecks(t *testing.T) {
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"a word where a number belongs",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - name: chat\n    type: chat\n    routes: [{backend: upp}]\n    retries: two\n",
			[]string{
				"t.yaml:7: endpoints[0].retries: must be a number, not a string",
				`t.yaml:6: endpoints[0].routes[0].backend: unknown backend "upp"`,
			}},
		{"an unset variable in the same place",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - name: chat\n    type: chat\n    routes: [{backend: upp}]\n    retries: ${UNSET_RETRIES}\n",
			[]string{
				"t.yaml:7: endpoints[0].retries: environment variable UNSET_RETRIES is not set",
				`t.yaml:6: endpoints[0].routes[0].backend: unknown backend "upp"`,
			}},
		{"a key given twice",
			"backends:\n  up: {provider: mock, model: m, model: n}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: upp}]}\n",
			[]string{
				`t.yaml:2: backends.up.model: mapping key "model" already defined at line 2`,
				`t.yaml:4: endpoints[0].routes[0].backend: unknown backend "upp"`,
			}},
		{"a list where a backend belongs: not checked inside",
			"backends:\n  up: [openai]\n  down: {provider: mock}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			[]string{
				"t.yaml:2: backends.up: must be a mapping, not a list",
				"t.yaml:3: backends.down.model: is required",
			}},
		{"a list item of the wrong type: the list not checked",
			"backends:\n  up: {provider: mock, model: m}\n  v2: {provider: mock, model: m}\nendpoints:\n" +
				"  - {name: chat, type: chat, routes: [{backend: up, weight: 95}, {backend: v2, weight: 5}],\n" +
				"     canary: {backend: v2, steps: [5, ten, 3], interval: 1m}}\nlogging: {level: loud}\n",
			[]string{
				"t.yaml:6: endpoints[0].canary.steps[1]: must be a number, not a string",
				"t.yaml:7: logging.level: must be debug, info, warn or error",
			}},
		{"a variable that leaves a backend unknown: not checked inside",
			"backends:\n  up: ${UNSET_BACKEND}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n",
			[]string{"t.yaml:2: backends.up: environment variable UNSET_BACKEND is not set"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// The same for an MLflow AI Gateway file: a problem found in translating its entries
// (an openai_api_base that is not http(s), a provider Tollgate lacks) hid every check
// of the config built from it, such as the logging section beside it. The checks of
// the backend built from such an entry, which would repeat its problem, are not
// reported, and a key's endpoints may still name the entry.
func TestConfigMLflowProblemKeepsSectionChecks(t *testing.T) {
	entry := func(provider, base string) string {
		return "  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n      provider: " + provider +
			"\n      name: gpt-4o-mini\n      config:\n        openai_api_key: sk-test\n        openai_api_base: \"" + base + "\"\n"
	}
	const level = "t.yaml:10: logging.level: must be debug, info, warn or error"
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"good entry", "endpoints:\n" + entry("openai", "https://api.openai.com/v1") + "logging: {level: loud}\n",
			[]string{level}},
		{"ftp base URL", "endpoints:\n" + entry("openai", "ftp://api.openai.com/v1") + "logging: {level: loud}\n",
			[]string{
				"t.yaml:9: endpoints[0].model.config.openai_api_base: must start with http:// or https://",
				level,
			}},
		{"unsupported provider named by a key",
			"endpoints:\n" + entry("openia", "https://api.openai.com/v1") + "logging: {level: loud}\n" +
				"auth: {keys: [{name: a, key: sk-a, endpoints: [chat]}]}\n",
			[]string{
				`t.yaml:5: endpoints[0].model.provider: provider "openia" is not supported (supported: anthropic, azure, azuread, huggingface-text-generation-inference, mistral, mlflow-model-serving, openai, openai-compatible, togetherai)`,
				level,
			}},
		{"a value of the wrong type", "endpoints:\n" + entry("openai", "https://api.openai.com/v1") + "logging: {level: loud}\n" +
			"server: {max_body_bytes: [1]}\n",
			[]string{
				"t.yaml:11: server.max_body_bytes: must be a size (e.g. 8MiB, 512KB, 1048576), not a list",
				level,
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// A refused value is read as null so that the rest is checked, but a check across keys
// then found that null wrong at a key beside it, the refused value's problem again in
// words false for the file as written: targets are given, the limit names requests,
// the weights are 50 and 50. A problem beside it that does not read it (an unknown
// backend in the route of a refused weight) is still reported.
func TestConfigRefusedValueNotReportedAgainBesideIt(t *testing.T) {
	const ab = "backends:\n  a: {provider: mock, model: m}\n  b: {provider: mock, model: m}\nendpoints:\n"
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"targets not a list: base_url not asked for",
			"backends:\n  a: {provider: openai, targets: 5, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: a}]}\n",
			[]string{"t.yaml:2: backends.a.targets: must be a list, not a number"}},
		{"route weight not a number: the weights not summed",
			ab + "  - {name: chat, type: chat, routes: [{backend: a, weight: fifty}, {backend: b, weight: 50}]}\n",
			[]string{"t.yaml:5: endpoints[0].routes[0].weight: must be a number, not a string"}},
		{"limit amount not a number: the limit not said to lack one",
			"backends:\n  a: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: a}], limits: [{per: user, requests: x, window: minute}]}\n",
			[]string{"t.yaml:4: endpoints[0].limits[0].requests: must be a number, not a string"}},
		{"an unknown backend beside a refused weight",
			ab + "  - {name: chat, type: chat, routes: [{backend: c, weight: fifty}, {backend: b, weight: 50}]}\n",
			[]string{
				"t.yaml:5: endpoints[0].routes[0].weight: must be a number, not a string",
				`t.yaml:5: endpoints[0].routes[0].backend: unknown backend "c"`,
			}},
		{"a bad per beside a refused amount",
			"backends:\n  a: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: a}], limits: [{per: team, requests: x, window: minute}]}\n",
			[]string{
				"t.yaml:4: endpoints[0].limits[0].requests: must be a number, not a string",
				"t.yaml:4: endpoints[0].limits[0].per: must be one of api_key, user, endpoint (or model), ip",
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// README, MLflow AI Gateway configs: a value of the wrong type in an MLflow file is the
// one problem of its key. It was read as null and the translation reported the null
// again ("endpoint_type: is required", provider "" is not supported, "calls: must be
// positive", openai_api_key required inside a config written as a list).
func TestConfigMLflowRefusedValueReportedOnce(t *testing.T) {
	const model = "    model:\n      provider: openai\n      name: gpt-4o\n      config: {openai_api_key: sk-abcdefghijkl}\n"
	const chat = "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n"
	for _, c := range []struct{ name, y, want string }{
		{"endpoint_type a list",
			"endpoints:\n  - name: chat\n    endpoint_type: [llm/v1/chat]\n" + model,
			"t.yaml:3: endpoints[0].endpoint_type: must be a string, not a list"},
		{"provider a list",
			chat + "    model:\n      provider: [openai]\n      name: gpt-4o\n      config: {openai_api_key: sk-abcdefghijkl}\n",
			"t.yaml:5: endpoints[0].model.provider: must be a string, not a list"},
		{"limit calls not a number",
			chat + model + "    limit: {calls: x, renewal_period: minute}\n",
			"t.yaml:8: endpoints[0].limit.calls: must be a whole number, not \"x\""},
		{"limit calls with a fraction",
			chat + model + "    limit: {calls: 2.5, renewal_period: minute}\n",
			"t.yaml:8: endpoints[0].limit.calls: must be a whole number, not 2.5"},
		{"config a list",
			chat + "    model:\n      provider: openai\n      name: gpt-4o\n      config: [a]\n",
			"t.yaml:7: endpoints[0].model.config: must be a mapping, not a list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, []string{c.want}) {
				t.Fatalf("problems = %q, want [%q]", problems, c.want)
			}
		})
	}
}
