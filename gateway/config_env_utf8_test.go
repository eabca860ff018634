package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key's name filled from the environment (`name: "${TEAM}"`) whose variable holds a
// Latin-1 byte (team-\xff) is a config error naming auth.keys[0].name, not a panic of
// the metrics registry (which on a reload would end the running gateway). Not
// t.Parallel: t.Setenv.
func TestConfigEnvNotUTF8(t *testing.T) {
	t.Setenv("TEAM_NAME_LATIN1", "team-\xff")
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: "${TEAM_NAME_LATIN1}", key: sk-name-0001}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	panicked := func() (p any) {
		defer func() { p = recover() }()
		err = Validate(path)
		return nil
	}()
	if panicked != nil {
		t.Fatalf("got Validate panic (%v), want an error naming auth.keys[0].name", panicked)
	}
	if err == nil || !strings.Contains(err.Error(), "auth.keys[0].name") {
		t.Errorf("got Validate error %v, want one naming auth.keys[0].name", err)
	}
}
