package main

import (
	"strings"
	"testing"
)

// `--config "$CONFIG"` with CONFIG unset or empty (a shell variable, a Kubernetes
// `$(CONFIG)` not defined) names no file. That is a usage error, exit 2, saying that
// --config is empty, rather than "open : no such file or directory" with exit 1, which
// reads as a file that went missing.
func TestEmptyConfigFlagIsUsageError(t *testing.T) {
	for _, args := range [][]string{{"validate", "--config="}, {"validate", "--config", ""}, {"serve", "--config="}, {"--config", ""}} {
		name := strings.Join(args, " ")
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, args...)
		if code != 2 || stdout != "" {
			t.Errorf("tollgate %s: exit %d, stdout %q; want exit 2 and nothing on stdout", name, code, stdout)
		}
		if !strings.Contains(stderr, "--config is empty") || strings.Contains(stderr, "open :") {
			t.Errorf("tollgate %s: stderr %q; want it to say --config is empty", name, stderr)
		}
	}
}
