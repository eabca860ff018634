package gateway

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A served certificate's files rewritten into a pair that does not load (garbage in
// tls.crt, another certificate's key in tls.key) are warned of naming both files, as
// the renewal that loads names its cert_file: the parse error alone ("failed to find
// any PEM data in certificate input") does not say where to look.
func TestWatchServerTLSBrokenPairNamesFiles(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		write    func(p *testPKI, crt, key string)
		wantPart string
	}{
		{"garbage certificate", func(_ *testPKI, crt, _ string) { writeAtomic(t, crt, "not a certificate\n") }, "certificate input"},
		{"key of another pair", func(p *testPKI, _, key string) { copyAtomic(t, p.serverKey, key) }, "does not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p1, p2 := newTestPKI(t), newTestPKI(t)
			dir := t.TempDir()
			crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			_, _, logs := watchedTLS(t, p1, crt, key)
			c.write(p2, crt, key)
			const msg = "server.tls files changed but do not load"
			if !waitWithin(3*time.Second, func() bool { return strings.Contains(logs.String(), msg) }) {
				t.Fatalf("no warning for a pair that does not load:\n%s", logs)
			}
			var line map[string]any
			// The first warning: a rewrite may be seen as more than one change.
			if err := json.NewDecoder(strings.NewReader(logLinesWith(logs.String(), msg))).Decode(&line); err != nil {
				t.Fatal(err)
			}
			if line["cert_file"] != crt || line["key_file"] != key {
				t.Errorf("warning names cert_file %v, key_file %v; want %s, %s", line["cert_file"], line["key_file"], crt, key)
			}
			if e, _ := line["error"].(string); !strings.Contains(e, c.wantPart) {
				t.Errorf("error = %q, want it to say %q", e, c.wantPart)
			}
		})
	}
}
