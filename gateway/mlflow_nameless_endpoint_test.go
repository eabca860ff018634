package gateway

import (
	"strings"
	"testing"
)

// An MLflow endpoint whose name is left out (or null, or not a string) has that one
// problem, at its name: its backend, named after it, is given by the model block that
// is there, which is not reported as required.
func TestMLflowEndpointWithoutNameOneProblem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, entry, want string }{
		{"left out", "  - endpoint_type: llm/v1/chat\n", "ml.yaml:2: endpoints[0].name: is required"},
		{"null", "  - name: null\n    endpoint_type: llm/v1/chat\n", "ml.yaml:2: endpoints[0].name: is required"},
		{"empty", "  - name: \"\"\n    endpoint_type: llm/v1/chat\n", "ml.yaml:2: endpoints[0].name: is required"},
		{"a list", "  - name: [a]\n    endpoint_type: llm/v1/chat\n", "ml.yaml:2: endpoints[0].name: must be a string, not a list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte("endpoints:\n"+c.entry+
				"    model: {provider: openai-compatible, name: m, config: {api_base: \"http://127.0.0.1:1/v1\"}}\n"+
				"  - name: other\n    endpoint_type: llm/v1/chat\n"+
				"    model: {provider: openai-compatible, name: m, config: {api_base: \"http://127.0.0.1:1/v1\"}}\n"), env(nil))
			if err == nil {
				t.Fatal("loaded")
			}
			if got := strings.TrimSpace(err.Error()); got != c.want {
				t.Fatalf("problems:\n%s\nwant only:\n%s", got, c.want)
			}
		})
	}
}
