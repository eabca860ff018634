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
