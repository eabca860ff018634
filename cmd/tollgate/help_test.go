package main

import (
	"strings"
	"testing"
)

// TestHelpExitsZeroAndNamesCommands: asking for help is not a usage error.
// `tollgate --help` (and `-h`, and `tollgate validate --help`) should print the usage
// and exit 0, as Go's own flag handling (flag.ExitOnError) and the project's other
// binary (`mockllm --help`, README "See `go run ./cmd/mockllm --help`") do; scripts and
// package smoke tests run `tool --help` and read a non-zero status as a broken binary.
// The top-level help names the commands of README's Commands table.
func TestHelpExitsZeroAndNamesCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"validate", "--help"}} {
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, args...)
		out := stdout + stderr
		if code != 0 {
			t.Errorf("tollgate %s: exit %d, want 0 (help asked for); output %q", strings.Join(args, " "), code, out)
		}
		if args[0] != "validate" && (!strings.Contains(out, "validate") || !strings.Contains(out, "version")) {
			t.Errorf("tollgate %s does not name the commands validate and version: %q", strings.Join(args, " "), out)
		}
	}
}
