package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/gateway"
)

var keyLine = regexp.MustCompile(`^key: (sk-tg-[A-Za-z0-9_-]{43})\nauth\.keys entry: - \{name: NAME, sha256: "([0-9a-f]{64})"\}\n$`)

// An operator makes a key with `tollgate key`: a fresh 256-bit key and the auth.keys
// entry holding its SHA-256, which a config takes as it is.
func TestKeyCommandMakesKeys(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		var out, errb bytes.Buffer
		if code := run([]string{"key"}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		m := keyLine.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("output %q", out.String())
		}
		sum := sha256.Sum256([]byte(m[1]))
		if m[2] != hex.EncodeToString(sum[:]) {
			t.Fatalf("sha256 %s is not the key's", m[2])
		}
		if seen[m[1]] {
			t.Fatal("the same key twice")
		}
		seen[m[1]] = true
		cfg := filepath.Join(t.TempDir(), "tollgate.yaml")
		entry := strings.Replace(strings.TrimPrefix(strings.Split(out.String(), "\n")[1], "auth.keys entry: "), "NAME", "team-a", 1)
		yaml := "auth:\n  keys:\n    " + entry + "\nbackends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := gateway.Validate(cfg); err != nil {
			t.Fatalf("the printed entry in a config: %v\n%s", err, yaml)
		}
	}
}

// `tollgate key --hash` hashes the key read on stdin without the line break echo
// adds (what `echo $KEY | sha256sum` gets wrong), and refuses what is no key.
func TestKeyCommandHash(t *testing.T) {
	want := sha256.Sum256([]byte("sk-team-a-1"))
	for _, in := range []string{"sk-team-a-1", "sk-team-a-1\n", "sk-team-a-1\r\n", "sk-team-a-1\nsecond line\n"} {
		stdin = strings.NewReader(in)
		var out, errb bytes.Buffer
		if code := run([]string{"key", "--hash"}, &out, &errb); code != 0 || out.String() != hex.EncodeToString(want[:])+"\n" {
			t.Errorf("stdin %q: exit %d, %q %q", in, code, out.String(), errb.String())
		}
	}
	for _, in := range []string{"", "\n", " sk-team-a-1\n", "sk-team-a-1 \n"} {
		stdin = strings.NewReader(in)
		var out, errb bytes.Buffer
		if code := run([]string{"key", "--hash"}, &out, &errb); code != 1 || out.Len() != 0 || strings.Contains(errb.String(), "sk-team") {
			t.Errorf("stdin %q: exit %d, stdout %q, stderr %q: want 1, nothing printed, the key not echoed", in, code, out.String(), errb.String())
		}
	}
	stdin = os.Stdin
	var out, errb bytes.Buffer
	if code := run([]string{"key", "sk-on-the-command-line"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "on stdin") || strings.Contains(errb.String(), "sk-on-the") {
		t.Errorf("a key as an argument: exit %d, %q: want 2, pointing to stdin, the argument not echoed", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"key", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "tollgate key --hash") {
		t.Errorf("help: exit %d, %q", code, out.String())
	}
}
