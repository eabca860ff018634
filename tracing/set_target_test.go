package tracing

import (
	"strconv"
	"testing"
)

// TestTargetTableBounded: a target's attributes are built once and found again; a
// table full of targets (reloads that change the targets again and again) starts
// over instead of growing, and still answers right.
func TestTargetTableBounded(t *testing.T) {
	var tt targetTable
	first := tt.get("http://10.0.0.1:8000/v1")
	if again := tt.get("http://10.0.0.1:8000/v1"); &again[0] != &first[0] {
		t.Error("the same target's attributes were built twice")
	}
	for i := range 3 * maxTargets {
		target := "http://10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":8000/v1"
		kv := tt.get(target)
		if n := len(*tt.m.Load()); n > maxTargets {
			t.Fatalf("%d targets held, bound %d", n, maxTargets)
		}
		want := "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":8000"
		if got := attrs(kv)[string(KeyTarget)].AsString(); got != want {
			t.Fatalf("%s: tollgate.target %q, want %q", target, got, want)
		}
	}
	if got := attrs(tt.get("http://10.0.0.1:8000/v1"))["server.port"].AsInt64(); got != 8000 {
		t.Errorf("server.port %d after the table started over, want 8000", got)
	}
}
