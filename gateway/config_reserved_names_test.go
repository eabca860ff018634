package gateway

import (
	"slices"
	"strings"
	"testing"
)

// README gives label values a fixed meaning: variant="none" and backend="none" count
// the requests no route or backend served (the gateway's own answers, refusals,
// fallbacks), endpoint="unknown" those refused before an endpoint was known. A route
// whose variant is named none, a backend named none (a route's variant by default) or
// an endpoint named unknown would put served traffic in those series, where an SRE's
// error-rate query cannot tell it from refusals; the config refuses them at their key.
func TestConfigReservedLabelValues(t *testing.T) {
	const (
		backendNone  = `"none" is reserved: backend="none" in the metrics counts the requests no backend served (the gateway's own answers, refusals)`
		variantNone  = `"none" is reserved: variant="none" in the metrics counts the requests no route served (the gateway's own answers, refusals, fallbacks)`
		endpointUnkn = `"unknown" is reserved: endpoint="unknown" in the metrics counts the requests refused before an endpoint was known`
	)
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"a route's variant",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up, variant: none}]}\n",
			[]string{"t.yaml:4: endpoints[0].routes[0].variant: " + variantNone}},
		{"an endpoint",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: unknown, type: chat, routes: [{backend: up}]}\n",
			[]string{"t.yaml:4: endpoints[0].name: " + endpointUnkn}},
		{"a backend, the variant of its route",
			"backends:\n  none: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: none}]}\n",
			[]string{"t.yaml:2: backends.none: " + backendNone}},
		{"an MLflow endpoint, its backend's name",
			"endpoints:\n  - name: none\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: sk-test}}\n",
			[]string{"t.yaml:2: endpoints[0].name: " + backendNone}},
		{"an MLflow endpoint",
			"endpoints:\n  - name: unknown\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: sk-test}}\n",
			[]string{"t.yaml:2: endpoints[0].name: " + endpointUnkn}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// TestConfigDotSegmentNames: an endpoint or alias named "." or ".." could be called by
// "model" but never reached by a path (/admin/endpoints/{name},
// /endpoints/{name}/invocations), which clients resolve such segments out of: refused
// at its key.
func TestConfigDotSegmentNames(t *testing.T) {
	for _, c := range []struct {
		name, y string
		want    []string
	}{
		{"an endpoint",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: \"..\", type: chat, routes: [{backend: up}]}\n",
			[]string{"t.yaml:4: endpoints[0].name: " + dotSegmentProblem}},
		{"an alias",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, aliases: [\".\"], type: chat, routes: [{backend: up}]}\n",
			[]string{"t.yaml:4: endpoints[0].aliases[0]: " + dotSegmentProblem}},
		{"dots within a name",
			"backends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: \"llama-3.1..8b\", aliases: [\"...\"], type: chat, routes: [{backend: up}]}\n",
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, problems := parseProblems(t, c.y, nil)
			if !slices.Equal(problems, c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}
