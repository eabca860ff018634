//go:build !race

package router

import (
	"testing"
	"time"
)

func TestHotPathAllocations(t *testing.T) {
	e := benchEndpoint(t)
	key := []byte("user-1234567890")
	now := time.Now()
	pending := benchEndpoint(t)
	pendAt(pending, now.Add(time.Second))
	var p Plan
	tests := []struct {
		name   string
		budget float64
		fn     func()
	}{
		{"Plan with a sticky key", 0, func() { e.Plan(key, now, &p) }},
		{"Plan without a key", 0, func() { e.Plan(nil, now, &p) }},
		{"Plan while a change is pending", 0, func() { pending.Plan(key, now, &p) }},
		{"Observe", 0, func() { e.Observe(1, now, 230*time.Millisecond, 40*time.Millisecond, true) }},
		{"ObserveTTFT", 0, func() { e.ObserveTTFT(1, now, 40*time.Millisecond) }},
		{"ObserveUnserved", 0, func() { e.ObserveUnserved(1, now) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.fn); got > tt.budget {
				t.Fatalf("%v allocations per call, budget %v", got, tt.budget)
			}
		})
	}
}
