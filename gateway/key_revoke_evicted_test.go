package gateway

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// Under maxmemory with allkeys-lru Redis may evict the revocations' hash alone: the
// meta hash is read every second, the hash only when the meta moved. The replicas
// notice the hash short of what they applied and write it back, so that a replica
// started then, or a later change read by the others, does not take the key as
// restored. The polls read the hash too, which keeps it as recently used as the meta.
func TestKeyRevokeHashEvicted(t *testing.T) {
	t.Parallel()
	rds, cfg, gs := revokedOnTwo(t)
	if _, err := redistest.Command(rds.Addr(), "DEL", revokeHashKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		h, err := redistest.Command(rds.Addr(), "HEXISTS", revokeHashKey, "team-a")
		return err == nil && h == "1"
	})
	if !strings.Contains(gs[0].logs.String()+gs[1].logs.String(), "key revocations missing from Redis") {
		t.Errorf("the write-back is not logged")
	}
	g3 := startGateway(t, cfg)
	wantRevoked(t, "on a replica started after the hash was evicted", revChat(g3.client(option.WithAPIKey(revKeyA))))
	// A later change, read by every replica, keeps team-a revoked.
	if status, out := keyChange(t, gs[1], "team-b", "revoke", `{"reason":"rotated"}`); status != 200 {
		t.Fatalf("revoke team-b: %d %v", status, out)
	}
	for _, g := range append(gs, g3) {
		waitFor(t, func() bool { return isRevoked(revChat(g.client(option.WithAPIKey(revKeyB)))) })
		wantRevoked(t, "after a later change", revChat(g.client(option.WithAPIKey(revKeyA))))
	}

	// The polls keep the hash as recently used as the meta hash: its idle time stays
	// under the 3 s it would reach unread.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		idle, err := redistest.Command(rds.Addr(), "OBJECT", "IDLETIME", revokeHashKey)
		if n, _ := strconv.Atoi(idle); err != nil || n >= 3 {
			t.Fatalf("OBJECT IDLETIME of the hash: %q %v, want the polls to read it each second", idle, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// revokedOnTwo is two gateways sharing one Redis (its config cfg) once team-a, revoked
// on the first, is refused by both and the second has read the set.
func revokedOnTwo(t *testing.T) (*redistest.Server, string, []*gw) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := revokeConfig(addr, rds.URL(), "")
	gs := []*gw{startGateway(t, cfg), startGateway(t, cfg)}
	if status, out := keyChange(t, gs[0], "team-a", "revoke", `{"reason":"leaked"}`); status != 200 {
		t.Fatalf("revoke: %d %v", status, out)
	}
	for _, g := range gs {
		waitFor(t, func() bool { return isRevoked(revChat(g.client(option.WithAPIKey(revKeyA)))) })
	}
	// Both replicas have read the set: each has polled since the revoke.
	waitFor(t, func() bool {
		return strings.Contains(gs[1].logs.String(), "client key revoked (shared through Redis)")
	})
	return rds, cfg, gs
}
