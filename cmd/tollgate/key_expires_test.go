package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/gateway"
)

var keyExpiresLine = regexp.MustCompile(`^key: (sk-tg-[A-Za-z0-9_-]{43})\nauth\.keys entry: - \{name: NAME, sha256: "([0-9a-f]{64})", expires_at: "([^"]+)"\}\n$`)

// `tollgate key --expires-at T` prints the entry with that expires_at, which a config
// takes as it is; a value the config would refuse, an instant already past, or the flag
// without its value (refused as such, not as a key on the command line) is refused
// without a key made.
func TestKeyCommandExpiresAt(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"key", "--expires-at", "2099-12-31T23:59:59Z"},
		{"key", "--expires-at=2099-12-31T18:00:00-05:00"},
		{"key", "-expires-at", "2099-12-31T23:59:59.5+02:00"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errb.String())
		}
		m := keyExpiresLine.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("%q: output %q", args, out.String())
		}
		if want := strings.TrimPrefix(args[len(args)-1], "--expires-at="); m[3] != want {
			t.Errorf("%q: expires_at %q, want %q", args, m[3], want)
		}
		cfg := filepath.Join(t.TempDir(), "tollgate.yaml")
		entry := strings.Replace(strings.TrimPrefix(strings.Split(out.String(), "\n")[1], "auth.keys entry: "), "NAME", "hackathon", 1)
		yaml := "auth:\n  keys:\n    " + entry + "\nbackends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := gateway.Validate(cfg); err != nil {
			t.Fatalf("the printed entry in a config: %v\n%s", err, yaml)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"key", "--expires-at", "2099-12-31"}, "tollgate key: --expires-at is a date without a time"},
		{[]string{"key", "--expires-at", "2099-12-31T23:59:59"}, "tollgate key: --expires-at has no zone"},
		{[]string{"key", "--expires-at", "sk-looks-like-a-key"}, "tollgate key: --expires-at must be an RFC 3339 timestamp"},
		{[]string{"key", "--expires-at="}, "tollgate key: --expires-at is empty"},
		{[]string{"key", "--expires-at", "2020-01-01T00:00:00Z"}, "tollgate key: --expires-at is already past"},
		{[]string{"key", "--expires-at"}, "tollgate key: --expires-at needs a value"},
		{[]string{"key", "-expires-at"}, "tollgate key: --expires-at needs a value"},
		{[]string{"key", "--hash", "--expires-at", "2099-12-31T23:59:59Z"}, "tollgate key: unexpected argument"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 || out.Len() != 0 || !strings.HasPrefix(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out.String(), errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "sk-looks-like-a-key") {
			t.Errorf("%q: the value is quoted: %s", tc.args, errb.String())
		}
	}
}
