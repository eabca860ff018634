package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// A revoke that Redis refuses (OOM under maxmemory with noeviction) answers 503
// revocations_unavailable and logs Redis's error on the warning's one line: the error
// text holds no line break, which would split the entry in a plain-text log and mix
// the cause into the next line.
func TestKeyRevokeRedisErrorOneLine(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, rds.URL(), ""))
	if _, err := redistest.Commands(rds.Addr(),
		[]string{"CONFIG", "SET", "maxmemory-policy", "noeviction"},
		[]string{"CONFIG", "SET", "maxmemory", "1"}); err != nil {
		t.Fatal(err)
	}
	status, out := keyChange(t, g, "team-a", "revoke", `{"reason":"leaked"}`)
	if status != 503 {
		t.Fatalf("revoke with Redis out of memory: %d %v, want 503", status, out)
	}
	checkAdminError(t, "revoke with Redis out of memory", out, "revocations_unavailable")
	var found bool
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		if !strings.Contains(line, "key revoke not applied") {
			continue
		}
		found = true
		var entry struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if strings.ContainsAny(entry.Error, "\r\n") || !strings.Contains(entry.Error, "OOM command not allowed") ||
			!strings.HasPrefix(entry.Error, "key revocations: redis") {
			t.Errorf("error %q: want one line naming the revocations and Redis's OOM", entry.Error)
		}
	}
	if !found {
		t.Fatalf("no warning for the revoke Redis refused: %s", g.logs.String())
	}
}
