package main

import (
	"strings"
	"testing"
)

// `tollgate help --help` (or -h) is README's `tollgate [COMMAND] --help` with the
// command help: the top-level usage on stdout, exit 0, as `tollgate help help` prints
// it, not an unknown command "--help".
func TestHelpCommandTakesHelpFlag(t *testing.T) {
	env := []string{"TOLLGATE_RUNTIME_TUNING=off"}
	_, want, _ := runBinary(t, env, "--help")
	for _, flag := range []string{"--help", "-h", "-help"} {
		code, stdout, stderr := runBinary(t, env, "help", flag)
		if code != 0 || stderr != "" || stdout != want {
			t.Errorf("tollgate help %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage tollgate --help prints",
				flag, code, stdout, strings.TrimSpace(stderr))
		}
	}
}

// `tollgate help validate --help` is `tollgate help validate`: the command's usage,
// exit 0; another argument after the command is still refused.
func TestHelpCommandThenHelpFlag(t *testing.T) {
	env := []string{"TOLLGATE_RUNTIME_TUNING=off"}
	_, want, _ := runBinary(t, env, "validate", "--help")
	for _, flag := range []string{"--help", "-h"} {
		code, stdout, stderr := runBinary(t, env, "help", "validate", flag)
		if code != 0 || stderr != "" || stdout != want {
			t.Errorf("tollgate help validate %s: exit %d, stdout %q, stderr %q; want exit 0 and validate's usage",
				flag, code, stdout, strings.TrimSpace(stderr))
		}
	}
	if code, _, stderr := runBinary(t, env, "help", "validate", "extra"); code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("tollgate help validate extra: exit %d, stderr %q; want exit 2 naming the argument", code, stderr)
	}
}
