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
// The top-level help names the commands of README's Commands table. A help asked for
// goes to stdout, as Go's own tools print it (`tollgate --help | less` shows it).
func TestHelpExitsZeroAndNamesCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"validate", "--help"}} {
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, args...)
		if code != 0 {
			t.Errorf("tollgate %s: exit %d, want 0 (help asked for); stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
		if !strings.Contains(stdout, "Usage:") || !strings.Contains(stdout, "-config") || stderr != "" {
			t.Errorf("tollgate %s: stdout %q, stderr %q; want the usage on stdout and nothing on stderr", strings.Join(args, " "), stdout, stderr)
		}
		if args[0] != "validate" && (!strings.Contains(stdout, "validate") || !strings.Contains(stdout, "version") ||
			!strings.Contains(stdout, "key --hash") || !strings.Contains(stdout, "--expires-at")) {
			t.Errorf("tollgate %s does not name the commands validate, version and key (--hash, --expires-at): %q", strings.Join(args, " "), stdout)
		}
	}
}

// `tollgate help`, as `go help`, is the usage asked for: on stdout with exit 0, the
// top-level one, or with a command named that command's, as `tollgate COMMAND --help`
// prints it. A command help does not know, or an argument after it, is a usage error.
func TestHelpCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		like []string // the command line whose --help it prints
	}{
		{[]string{"help"}, []string{"--help"}},
		{[]string{"help", "help"}, []string{"--help"}},
		{[]string{"help", "validate"}, []string{"validate", "--help"}},
		{[]string{"help", "key"}, []string{"key", "--help"}},
	} {
		name := strings.Join(c.args, " ")
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, c.args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Errorf("tollgate %s: exit %d, stdout %q, stderr %q; want the usage on stdout and exit 0", name, code, stdout, stderr)
			continue
		}
		if _, want, _ := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, c.like...); stdout != want {
			t.Errorf("tollgate %s printed %q, want what tollgate %s prints, %q", name, stdout, strings.Join(c.like, " "), want)
		}
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "validate", "prod.yaml"}, `unexpected argument "prod.yaml"`},
	} {
		name := strings.Join(c.args, " ")
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, c.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, c.says) {
			t.Errorf("tollgate %s: exit %d, stdout %q, stderr %q; want exit 2 saying %s", name, code, stdout, stderr, c.says)
		}
	}
	if _, stdout, _ := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, "--help"); !strings.Contains(stdout, "tollgate help") {
		t.Errorf("the usage does not name tollgate help: %q", stdout)
	}
}

// A usage error is not help: the error and the usage after it go to stderr, with exit
// 2, and stdout stays empty for whatever reads it.
func TestUsageErrorGoesToStderr(t *testing.T) {
	for _, c := range []struct {
		args  []string
		usage bool
	}{
		{[]string{"--bogus"}, true},
		{[]string{"validate", "--bogus"}, true},
		{[]string{"frobnicate"}, false},
	} {
		code, stdout, stderr := runBinary(t, []string{"TOLLGATE_RUNTIME_TUNING=off"}, c.args...)
		name := strings.Join(c.args, " ")
		if code != 2 || stdout != "" {
			t.Errorf("tollgate %s: exit %d, stdout %q; want exit 2 and nothing on stdout", name, code, stdout)
		}
		if c.usage && (!strings.Contains(stderr, "-bogus") || !strings.Contains(stderr, "Usage:")) {
			t.Errorf("tollgate %s: stderr %q; want the error and the usage", name, stderr)
		}
		if !c.usage && !strings.Contains(stderr, "unknown command") {
			t.Errorf("tollgate %s: stderr %q; want it to name the unknown command", name, stderr)
		}
	}
}
