//go:build !race

package router

import (
	"testing"
	"time"
)

// A plan with context fallbacks costs no allocation more than one without.
func TestPlanContextTargetsAllocations(t *testing.T) {
	cfg := Config{Routes: []Route{{Backend: "llama", Weight: 100}}, Fallbacks: []string{"gpt"}, ContextFallbacks: []string{"llama-v2", "gpt"}}
	e := mustEndpoint(t, "chat", cfg)
	var p Plan
	key := []byte("user-1")
	if got := testing.AllocsPerRun(1000, func() { e.Plan(key, time.Now(), &p) }); got != 0 {
		t.Fatalf("%v allocations per Plan, want 0", got)
	}
}
