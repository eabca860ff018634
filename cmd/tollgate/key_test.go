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
	"unicode/utf16"

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

// A key typed as the flag's value, `tollgate key --hash=sk-tg-…` (or -hash=…), as
// many CLIs take it, is refused without being echoed (the flag package's errors would
// quote it into a terminal's scrollback or a CI log).
func TestKeyHashFlagValueIsNotEchoed(t *testing.T) {
	t.Parallel()
	const key = "sk-tg-Test0SecretValueThatMustNotBeEchoed0000000"
	for _, arg := range []string{"--hash=" + key, "-hash=" + key} {
		t.Run(strings.SplitN(arg, "=", 2)[0], func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := run([]string{"key", arg}, &out, &errb)
			if code == 0 {
				t.Fatalf("got exit 0 for a key given as the flag's value, want a refusal (exit 2)")
			}
			if strings.Contains(errb.String(), key) || strings.Contains(out.String(), key) {
				t.Errorf("got the key echoed in the refusal (stderr %q), want it refused unechoed", errb.String())
			}
		})
	}
}

// A first line longer than 64 KiB (a wrong file) is refused, never hashed in part.
func TestKeyHashLongLineIsNotHashedTruncated(t *testing.T) {
	line := strings.Repeat("k", 100<<10)
	old := stdin
	stdin = strings.NewReader(line + "\n")
	t.Cleanup(func() { stdin = old })
	var out, errb bytes.Buffer
	code := run([]string{"key", "--hash"}, &out, &errb)
	whole := sha256.Sum256([]byte(line))
	first := sha256.Sum256([]byte(line[:64<<10]))
	switch got := strings.TrimSpace(out.String()); {
	case code != 0 && out.Len() == 0:
		// Refused: fine.
	case got == hex.EncodeToString(whole[:]):
		// The whole line's hash: fine.
	case got == hex.EncodeToString(first[:]):
		t.Errorf("got exit %d printing the SHA-256 of the first 64 KiB of a %d-byte line, want the hash of the whole line or a refusal", code, len(line))
	default:
		t.Errorf("got exit %d, stdout %q, stderr %q, want the hash of the whole line or a refusal", code, got, errb.String())
	}
}

// Bytes no client can send as a key (a file PowerShell's > wrote in UTF-16LE with a
// BOM, a NUL) are refused, as the config refuses such a `key:`, rather than hashed
// into an entry that never matches.
func TestKeyHashRefusesBytesNoKeyHolds(t *testing.T) {
	utf16le := func(s string) string {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u), byte(u>>8))
		}
		return string(b)
	}
	for _, tc := range []struct{ name, in string }{
		{"utf-16le file from powershell", "\xff\xfe" + utf16le("sk-team-a-1\r\n")},
		{"nul inside", "sk-team\x00-a-1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := stdin
			stdin = strings.NewReader(tc.in)
			t.Cleanup(func() { stdin = old })
			var out, errb bytes.Buffer
			code := run([]string{"key", "--hash"}, &out, &errb)
			if code == 0 || out.Len() != 0 {
				t.Errorf("got exit %d printing %q for input %q, want exit 1 and no hash (no client can send a key holding a NUL)", code, strings.TrimSpace(out.String()), tc.in)
			}
		})
	}
}
