package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A binary built with go build in this checkout says which commit it is (-buildvcs=auto
// given, as make build does: a GOFLAGS=-buildvcs=false in the environment would leave it
// out).
func TestVersionOfBuiltBinary(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed to build from the checkout: %v", err)
	}
	if err := exec.Command("git", "rev-parse", "--git-dir").Run(); err != nil {
		// A source tree without git (an unpacked archive) records no commit.
		out := runVersion(t)
		if out != "tollgate dev" {
			t.Fatalf("outside git: %q, want tollgate dev", out)
		}
		return
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err == nil && !fi.IsDir() {
		// A git worktree (or submodule) has a .git file, not a directory, and Go
		// records no commit there.
		if out := runVersion(t); out != "tollgate dev" {
			t.Fatalf("in a worktree: %q, want tollgate dev", out)
		}
		return
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	out := runVersion(t)
	// Go records a pseudo-version of the commit (v0.0.0-TIME-COMMIT, +dirty with
	// changes), older Go the commit alone (dev+COMMIT).
	if c := strings.TrimSpace(string(rev))[:12]; !strings.HasPrefix(out, "tollgate ") || !strings.Contains(out, c) {
		t.Fatalf("version %q, want it to name commit %s", out, c)
	}
}

func runVersion(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tollgate")
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
