package router

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// fieldErrors flattens err into "key: problem" strings.
func flatten(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *FieldError", e)
		}
		out = append(out, fe.Key()+": "+fe.Problem())
		if fe.Error() != fe.Key()+": "+fe.Problem() {
			t.Fatalf("Error() = %q", fe.Error())
		}
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	two := func() []Route {
		return []Route{{Backend: "llama", Weight: 95, Variant: "stable"}, {Backend: "llama-v2", Weight: 5, Variant: "canary"}}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"full spec example is valid", Config{
			Routes:    two(),
			Sticky:    &Sticky{From: StickyHeader, Name: "X-User-ID"},
			Canary:    &Canary{Backend: "llama-v2", Steps: []int{5, 10, 25, 50, 75, 100}, Interval: 5 * time.Minute, MinRequests: 100, MaxErrorRate: rate(0.01), MaxP99: time.Second, MaxTTFTP99: 500 * time.Millisecond},
			Retries:   2,
			Fallbacks: []string{"gpt"},
		}, nil},
		{"canary with defaults is valid", Config{Routes: two(), Canary: &Canary{Backend: "llama-v2"}}, nil},
		{"no routes", Config{}, []string{"routes: needs at least one route"}},
		// Their sum, the refused weights left out, would report the same mistake again
		// ("add up to 0").
		{"weights out of range, not summed", Config{Routes: []Route{{Backend: "a", Weight: 120}, {Backend: "b", Weight: -1}}},
			[]string{"routes[0].weight: must be 0..100", "routes[1].weight: must be 0..100"}},
		{"a weight out of range beside a valid one", Config{Routes: []Route{{Backend: "a", Weight: 200}, {Backend: "b", Weight: 0}}},
			[]string{"routes[0].weight: must be 0..100"}},
		{"weights add up to 90", Config{Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 30}}},
			[]string{"routes: weights add up to 90, want 100"}},
		{"backend missing and repeated", Config{Routes: []Route{{Weight: 50}, {Backend: "a", Weight: 25}, {Backend: "a", Weight: 25, Variant: "x"}}},
			[]string{"routes[0].backend: is required", `routes[2].backend: backend "a" is already routes[1]`}},
		{"variant defaulting to a taken name", Config{Routes: []Route{{Backend: "a", Weight: 50, Variant: "b"}, {Backend: "b", Weight: 50}}},
			[]string{`routes[1].variant: variant "b" is already used by routes[0]`}},
		{"variant with odd characters", Config{Routes: []Route{{Backend: "a", Weight: 100, Variant: "new model"}}},
			[]string{"routes[0].variant: must be 1..64 letters, digits, '.', '_' or '-'"}},
		{"sticky without from", Config{Routes: two(), Sticky: &Sticky{}}, []string{"sticky.from: is required: header, user or api_key"}},
		{"sticky from unknown", Config{Routes: two(), Sticky: &Sticky{From: "cookie"}}, []string{"sticky.from: must be one of header, user, api_key"}},
		{"sticky header without name", Config{Routes: two(), Sticky: &Sticky{From: StickyHeader}}, []string{"sticky.name: is required with from: header"}},
		{"sticky header name invalid", Config{Routes: two(), Sticky: &Sticky{From: StickyHeader, Name: "X User"}}, []string{"sticky.name: is not a valid header name"}},
		{"sticky user with a name", Config{Routes: two(), Sticky: &Sticky{From: StickyUser, Name: "x"}}, []string{"sticky.name: only goes with from: header"}},
		{"sticky api key", Config{Routes: two(), Sticky: &Sticky{From: StickyAPIKey}}, nil},
		{"retries out of range", Config{Routes: two(), Retries: 11}, []string{"retries: must be 0..10"}},
		{"fallbacks empty and repeated", Config{Routes: two(), Fallbacks: []string{"gpt", "", "gpt"}},
			[]string{"fallbacks[1]: is empty", `fallbacks[2]: backend "gpt" is already fallbacks[0]`}},
		{"too many fallbacks", Config{Routes: two(), Fallbacks: []string{"a", "b", "c", "d", "e", "f", "g", "h"}},
			[]string{"fallbacks: at most 7 fallbacks"}},
		{"canary backend not a route", Config{Routes: two(), Canary: &Canary{Backend: "gpt"}},
			[]string{"canary.backend: must be the backend of one of the routes"}},
		{"canary backend missing", Config{Routes: two(), Canary: &Canary{}}, []string{"canary.backend: is required"}},
		{"canary already at 100", Config{Routes: []Route{{Backend: "a", Weight: 0}, {Backend: "b", Weight: 100}}, Canary: &Canary{Backend: "b"}},
			[]string{"canary.backend: the canary route already has all the traffic (weight 100)"}},
		{"canary alone", Config{Routes: []Route{{Backend: "a", Weight: 100}}, Canary: &Canary{Backend: "a"}},
			[]string{"canary.backend: the canary route already has all the traffic (weight 100)", "canary.backend: a canary needs another route to take traffic from"}},
		{"canary steps out of order and range", Config{Routes: two(), Canary: &Canary{Backend: "llama-v2", Steps: []int{0, 10, 10, 5, 101}}},
			[]string{"canary.steps[0]: must be 1..100", "canary.steps[2]: must be greater than the step before it",
				"canary.steps[3]: must be greater than the step before it", "canary.steps[4]: must be 1..100", "canary.steps: must end at 100"}},
		{"canary steps not reaching 100", Config{Routes: two(), Canary: &Canary{Backend: "llama-v2", Steps: []int{10, 50}}},
			[]string{"canary.steps: must end at 100"}},
		{"canary gates negative", Config{Routes: two(), Canary: &Canary{Backend: "llama-v2", Interval: -1, MinRequests: -1, MaxErrorRate: rate(1.5), MaxP99: -1, MaxTTFTP99: -1}},
			[]string{"canary.interval: must not be negative", "canary.min_requests: must not be negative", "canary.max_error_rate: must be 0..1",
				"canary.max_p99: must not be negative", "canary.max_ttft_p99: must not be negative"}},
		{"zero error rate is a valid gate", Config{Routes: two(), Canary: &Canary{Backend: "llama-v2", MaxErrorRate: rate(0)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flatten(t, tt.cfg.Validate())
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestNewEndpointUnknownBackends(t *testing.T) {
	cfg := Config{
		Routes:    []Route{{Backend: "llama", Weight: 50}, {Backend: "ghost", Weight: 50}},
		Fallbacks: []string{"gpt", "phantom"},
		Canary:    &Canary{Backend: "ghost"},
	}
	_, err := NewEndpoint("chat", cfg, []string{"llama", "gpt"})
	got := flatten(t, err)
	want := []string{`routes[1].backend: unknown backend "ghost"`, `fallbacks[1]: unknown backend "phantom"`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := NewEndpoint("chat", Config{}, nil); err == nil {
		t.Fatal("NewEndpoint accepted a config Validate rejects")
	}
}

func TestPlanTargets(t *testing.T) {
	backends := []string{"gpt", "llama", "llama-v2"}
	cfg := Config{
		Routes:    []Route{{Backend: "llama", Weight: 0, Variant: "stable"}, {Backend: "llama-v2", Weight: 100}},
		Retries:   2,
		Fallbacks: []string{"llama", "gpt"},
	}
	e, err := NewEndpoint("chat", cfg, backends)
	if err != nil {
		t.Fatal(err)
	}
	var p Plan
	e.Plan([]byte("someone"), time.Now(), &p)
	want := []Target{
		{Backend: 2, Name: "llama-v2", Variant: "llama-v2", Route: 1},
		{Backend: 1, Name: "llama", Variant: "llama-v2", Route: -1},
		{Backend: 0, Name: "gpt", Variant: "llama-v2", Route: -1},
	}
	if !slices.Equal(p.Targets, want) || p.Route != 1 || p.Variant != "llama-v2" || p.Weight != 100 || p.Retries != 2 || !p.Sticky {
		t.Fatalf("plan %+v", p)
	}
	// The chosen backend is not repeated among the fallbacks.
	if _, err := NewEndpoint("chat", Config{Routes: []Route{{Backend: "llama", Weight: 100}}, Fallbacks: []string{"llama", "gpt"}}, backends); err != nil {
		t.Fatal(err)
	}
	e2, _ := NewEndpoint("chat", Config{Routes: []Route{{Backend: "llama", Weight: 100}}, Fallbacks: []string{"llama", "gpt"}}, backends)
	e2.Plan(nil, time.Now(), &p)
	if len(p.Targets) != 2 || p.Targets[1].Name != "gpt" {
		t.Fatalf("targets %+v", p.Targets)
	}
}

func TestConfigYAML(t *testing.T) {
	// The gateway embeds Config inline in its endpoint struct.
	type endpoint struct {
		Name   string `yaml:"name"`
		Type   string `yaml:"type"`
		Config `yaml:",inline"`
	}
	const doc = `
name: chat
type: chat
routes:
  - {backend: llama, weight: 95, variant: stable}
  - {backend: llama-v2, weight: 5, variant: canary}
sticky: {from: header, name: X-User-ID}
canary: {backend: llama-v2, steps: [5, 10, 25, 50, 75, 100], interval: 5m, min_requests: 100,
         max_error_rate: 0.01, max_p99: 1s, max_ttft_p99: 500ms}
retries: 2
fallbacks: [gpt]
`
	var ep endpoint
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&ep); err != nil {
		t.Fatal(err)
	}
	c := ep.Canary
	if c == nil || c.Interval != 5*time.Minute || c.MaxP99 != time.Second || c.MaxTTFTP99 != 500*time.Millisecond ||
		c.MaxErrorRate == nil || *c.MaxErrorRate != 0.01 || c.MinRequests != 100 || len(c.Steps) != 6 {
		t.Fatalf("canary decoded as %+v", c)
	}
	if ep.Sticky.From != StickyHeader || ep.Retries != 2 || ep.Routes[1].Variant != "canary" {
		t.Fatalf("decoded as %+v", ep)
	}
	if err := ep.Validate(); err != nil {
		t.Fatal(err)
	}
}
