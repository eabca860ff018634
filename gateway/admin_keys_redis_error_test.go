package gateway

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// GET /admin/keys while Redis refuses the gateway's connections (its password rotated,
// WRONGPASS at AUTH): the limits read unavailable, and the log names Redis's refusal,
// without the password, so the operator sees why.
func TestAdminKeysRedisErrorLogged(t *testing.T) {
	rds := redistest.Start(t)
	if _, err := redistest.Command(rds.Addr(), "CONFIG", "SET", "requirepass", "old-pw-77"); err != nil {
		t.Fatal(err)
	}
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	g := startGateway(t, keysConfig(addr, `limiter: {store: redis, redis: {url: "redis://:old-pw-77@`+rds.Addr()+`/0"}, timeout: 500ms}
`))
	if l := viewKey(t, g, "team-a").find(t, "key", "", "api_key", "requests"); l.Source != "redis" {
		t.Fatalf("with Redis: %+v", l)
	}
	if _, err := redistest.Commands(rds.Addr(),
		[]string{"AUTH", "old-pw-77"},
		[]string{"CONFIG", "SET", "requirepass", "new-pw-88"},
		[]string{"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}); err != nil {
		t.Fatal(err)
	}
	if l := viewKey(t, g, "team-a").find(t, "key", "", "api_key", "requests"); l.Source != "unavailable" || l.Remaining != nil {
		t.Fatalf("with AUTH refused: %+v, want unavailable", l)
	}
	var found bool
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		if strings.Contains(line, "admin keys: limit buckets not read from Redis") {
			found = true
			if !strings.Contains(line, "WRONGPASS") || strings.Contains(line, "old-pw-77") {
				t.Errorf("warning %s: want Redis's WRONGPASS, no password", line)
			}
		}
	}
	if !found {
		t.Fatalf("no warning names why the buckets read unavailable:\n%s", g.logs.String())
	}
}
