package gateway

import (
	"slices"
	"strings"
	"testing"
)

// ctxConfigBackends are two mock backends, one priced, and an Anthropic one.
const ctxConfigBackends = `backends:
  small: {provider: mock, model: m}
  large: {provider: mock, model: m, pricing: {input_per_million: 1, output_per_million: 2}}
  claude: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-sonnet-4-5, api_key: sk-ant-test-1234}
endpoints:
`

// context_fallbacks are checked at load as fallbacks are, each problem at its file,
// line and key: unknown backends, repeats, empty names, too many, a backend whose
// provider has no such API, a misspelt key.
func TestContextFallbacksConfigProblems(t *testing.T) {
	eight := "b1 b2 b3 b4 b5 b6 b7 b8"
	var many strings.Builder
	many.WriteString("backends:\n")
	for _, b := range strings.Fields(eight) {
		many.WriteString("  " + b + ": {provider: mock, model: m}\n")
	}
	for _, tc := range []struct {
		name, y string
		want    []string
	}{
		{"unknown backend", ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], context_fallbacks: [large, ghost]}\n",
			[]string{`t.yaml:6: endpoints[0].context_fallbacks[1]: unknown backend "ghost"`}},
		{"repeated", ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], context_fallbacks: [large, large]}\n",
			[]string{`t.yaml:6: endpoints[0].context_fallbacks[1]: backend "large" is already context_fallbacks[0]`}},
		{"empty name", ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], context_fallbacks: [\"\"]}\n",
			[]string{`t.yaml:6: endpoints[0].context_fallbacks[0]: is empty`}},
		{"too many", many.String() + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: b1}], context_fallbacks: [" + strings.ReplaceAll(eight, " ", ", ") + "]}\n",
			[]string{`t.yaml:11: endpoints[0].context_fallbacks: at most 7 context fallbacks`}},
		{"anthropic on embeddings", ctxConfigBackends + "  - {name: embed, type: embeddings, routes: [{backend: small}], context_fallbacks: [claude]}\n",
			[]string{`t.yaml:6: endpoints[0].context_fallbacks[0]: backend "claude" is provider anthropic, which has no embeddings`}},
		{"anthropic on completions", ctxConfigBackends + "  - name: legacy\n    type: completions\n    routes: [{backend: small}]\n    context_fallbacks:\n      - large\n      - claude\n",
			[]string{`t.yaml:11: endpoints[0].context_fallbacks[1]: backend "claude" is provider anthropic, which has no completions`}},
		{"misspelt key", ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], context_fallback: [large]}\n",
			[]string{`t.yaml:6: endpoints[0].context_fallback: unknown key (did you mean context_fallbacks?)`}},
		{"anthropic on chat", ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], fallbacks: [large], context_fallbacks: [claude, large]}\n",
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseProblems(t, tc.y, nil)
			if !slices.Equal(problems, tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// A spend budget counts the context fallbacks among the backends the endpoint may
// spend on: priced there only, it is a budget that counts; with no price anywhere it
// is refused as ever.
func TestContextFallbacksPricedBudget(t *testing.T) {
	budget := "    limits: [{per: api_key, usd: 2, window: day}]\n"
	_, problems := parseProblems(t, ctxConfigBackends+"  - name: chat\n    type: chat\n    routes: [{backend: small}]\n    context_fallbacks: [large]\n"+budget, nil)
	if problems != nil {
		t.Fatalf("a budget on an endpoint whose context fallback is priced: %q", problems)
	}
	_, problems = parseProblems(t, ctxConfigBackends+"  - name: chat\n    type: chat\n    routes: [{backend: small}]\n    context_fallbacks: [small]\n"+budget, nil)
	if len(problems) != 1 || !strings.Contains(problems[0], "endpoints[0].limits[0].usd: no backend of endpoint \"chat\"") {
		t.Fatalf("a budget on free backends only: %q", problems)
	}
}

// An answer cache outlives a reload that keeps what made its answers: a change of a
// context fallback's model, or of the context fallbacks, empties it.
func TestContextFallbacksCacheFingerprint(t *testing.T) {
	base := ctxConfigBackends + "  - {name: chat, type: chat, routes: [{backend: small}], context_fallbacks: [large], cache: {ttl: 1h}}\n"
	fingerprint := func(y string) string {
		t.Helper()
		cfg, problems := parseProblems(t, y, nil)
		if problems != nil {
			t.Fatalf("problems: %q", problems)
		}
		return cacheFingerprint(cfg, &cfg.Endpoints[0])
	}
	was := fingerprint(base)
	if fingerprint(base) != was {
		t.Fatal("the same config: another fingerprint")
	}
	for name, y := range map[string]string{
		"its model":         strings.Replace(base, "large: {provider: mock, model: m,", "large: {provider: mock, model: m2,", 1),
		"another fallback":  strings.Replace(base, "context_fallbacks: [large]", "context_fallbacks: [small]", 1),
		"none at all":       strings.Replace(base, ", context_fallbacks: [large]", "", 1),
		"as a fallback now": strings.Replace(base, "context_fallbacks: [large]", "fallbacks: [large]", 1),
	} {
		if fingerprint(y) == was {
			t.Errorf("%s changed: same fingerprint", name)
		}
	}
}
