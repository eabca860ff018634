package router

import (
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// context_fallbacks are checked as fallbacks are, each problem under its own key.
func TestContextFallbacksValidate(t *testing.T) {
	one := []Route{{Backend: "llama-8k", Weight: 100}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"valid", Config{Routes: one, Fallbacks: []string{"gpt"}, ContextFallbacks: []string{"llama-128k", "gpt"}}, nil},
		{"empty and repeated", Config{Routes: one, ContextFallbacks: []string{"gpt", "", "gpt"}},
			[]string{"context_fallbacks[1]: is empty", `context_fallbacks[2]: backend "gpt" is already context_fallbacks[0]`}},
		{"too many", Config{Routes: one, ContextFallbacks: []string{"a", "b", "c", "d", "e", "f", "g", "h"}},
			[]string{"context_fallbacks: at most 7 context fallbacks"}},
		{"fallbacks' problems unchanged", Config{Routes: one, Fallbacks: []string{"a", "a"}, ContextFallbacks: []string{"a"}},
			[]string{`fallbacks[1]: backend "a" is already fallbacks[0]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flatten(t, tc.cfg.Validate()); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContextFallbacksUnknownBackend(t *testing.T) {
	cfg := Config{Routes: []Route{{Backend: "llama-8k", Weight: 100}}, ContextFallbacks: []string{"gpt", "llama-1m"}}
	_, err := NewEndpoint("chat", cfg, []string{"llama-8k", "gpt"})
	want := []string{`context_fallbacks[1]: unknown backend "llama-1m"`}
	if got := flatten(t, err); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// Every plan carries the context fallbacks in order, with no route and no variant,
// whichever route it chose (PlanFor's too); the gateway skips those it tried.
func TestPlanContextTargets(t *testing.T) {
	backends := []string{"gpt", "llama-8k", "llama-8k-v2", "llama-128k"}
	cfg := Config{
		Routes:           []Route{{Backend: "llama-8k", Weight: 50, Variant: "stable"}, {Backend: "llama-8k-v2", Weight: 50, Variant: "canary"}},
		Fallbacks:        []string{"gpt"},
		ContextFallbacks: []string{"llama-128k", "llama-8k", "gpt"},
	}
	e, err := NewEndpoint("chat", cfg, backends)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Backend: 3, Name: "llama-128k", Route: -1},
		{Backend: 1, Name: "llama-8k", Route: -1},
		{Backend: 0, Name: "gpt", Route: -1},
	}
	var p Plan
	for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
		e.Plan([]byte(key), time.Now(), &p)
		if !slices.Equal(p.ContextTargets, want) {
			t.Fatalf("route %d: context targets %+v, want %+v", p.Route, p.ContextTargets, want)
		}
		if len(p.Targets) != 2 || p.Targets[1].Name != "gpt" {
			t.Fatalf("route %d: targets %+v: the fallbacks changed", p.Route, p.Targets)
		}
	}
	p = Plan{}
	if !e.PlanFor(2, time.Now(), &p) || !slices.Equal(p.ContextTargets, want) {
		t.Fatalf("PlanFor: %+v", p)
	}
	none, err := NewEndpoint("chat", Config{Routes: []Route{{Backend: "gpt", Weight: 100}}}, backends)
	if err != nil {
		t.Fatal(err)
	}
	none.Plan(nil, time.Now(), &p)
	if len(p.ContextTargets) != 0 {
		t.Fatalf("no context_fallbacks: context targets %+v", p.ContextTargets)
	}
}

func TestContextFallbacksYAML(t *testing.T) {
	var c Config
	if err := yaml.Unmarshal([]byte("routes: [{backend: llama-8k, weight: 100}]\nfallbacks: [gpt]\ncontext_fallbacks: [llama-128k, gpt]\n"), &c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ContextFallbacks, []string{"llama-128k", "gpt"}) || !slices.Equal(c.Fallbacks, []string{"gpt"}) {
		t.Fatalf("decoded %+v", c)
	}
}
