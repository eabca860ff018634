package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// twoReplicasRevocations is two replicas' revocations sharing one Redis, started for t.
func twoReplicasRevocations(t *testing.T) (rds *redistest.Server, a, b *revocations) {
	t.Helper()
	rds = redistest.Start(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rc := limiter.RedisConfig{URL: rds.URL()}
	a, _ = unitRevocations(t, rc, &now)
	b, _ = unitRevocations(t, rc, &now)
	return rds, a, b
}

// TestRevokeRestoreAfterRedisLoss: a key restored on one replica right after Redis
// came back empty (a restart without persistence) stays restored: another replica
// writing back the revocations it knew skips a name marked restored.
func TestRevokeRestoreAfterRedisLoss(t *testing.T) {
	t.Parallel()
	rds, a, b := twoReplicasRevocations(t)
	ctx := context.Background()
	poll := func(rvs ...*revocations) {
		t.Helper()
		for _, rv := range rvs {
			if err := rv.poll(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	poll(a, b)
	if _, _, err := a.revoke(ctx, "team-a", "leaked"); err != nil {
		t.Fatal(err)
	}
	poll(a, b)
	if b.get("team-a") == nil {
		t.Fatal("b did not apply the revocation")
	}
	if _, err := redistest.Command(rds.Addr(), "FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	was, err := a.restore(ctx, "team-a", true)
	if err != nil || !was {
		t.Fatalf("restore: was %v, err %v", was, err)
	}
	poll(b, a, b)
	for name, rv := range map[string]*revocations{"a (restored on)": a, "b": b} {
		if r := rv.get("team-a"); r != nil {
			t.Errorf("replica %s: team-a revoked again (reason %q) after a restore answered changed=true, want it restored", name, r.Reason)
		}
	}
}

// TestRevokeReasonWithKeyByHash: a reason holding a key configured by its sha256
// alone ("leaked: sk-...") is refused 400 invalid_reason: the reason's stretches are
// hashed as a presented key is.
func TestRevokeReasonWithKeyByHash(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, revokeConfig(addr, "", ""))
	status, out := keyChange(t, g, "team-b", "revoke", `{"reason":"leaked: `+revKeyB+`"}`)
	if status != 400 {
		t.Errorf("%d %v for a reason holding team-b's key, want 400 invalid_reason", status, out)
	}
	if strings.Contains(g.logs.String(), revKeyB) {
		t.Errorf("the client key team-b in the logs")
	}
}

// TestRestoreUnknownNameLeavesRedis: a restore of a name neither configured nor revoked
// anywhere (a typo) writes nothing to Redis, no restore mark and no change, where it
// used to mark the name restored and count a change for every such call; a name no
// longer configured that Redis holds revoked is restored and marked as before.
func TestRestoreUnknownNameLeavesRedis(t *testing.T) {
	t.Parallel()
	rds, a, b := twoReplicasRevocations(t)
	ctx := context.Background()
	if _, _, err := a.revoke(ctx, "gone-key", "leaked"); err != nil {
		t.Fatal(err)
	}
	n0, err := redistest.Command(rds.Addr(), "HGET", revokeMetaKey, "n")
	if err != nil {
		t.Fatal(err)
	}
	if was, err := b.restore(ctx, "team-typo", false); err != nil || was {
		t.Fatalf("restore of an unknown name: was %v, err %v", was, err)
	}
	if mark, _ := redistest.Command(rds.Addr(), "HEXISTS", revokeMetaKey, "r:team-typo"); mark != "0" {
		t.Errorf("restore mark of an unknown name written (HEXISTS %s)", mark)
	}
	if n, _ := redistest.Command(rds.Addr(), "HGET", revokeMetaKey, "n"); n != n0 {
		t.Errorf("change count %s after restoring an unknown name, want %s", n, n0)
	}
	// b has not polled: it knows nothing of gone-key, which Redis holds.
	if was, err := b.restore(ctx, "gone-key", false); err != nil || !was {
		t.Fatalf("restore of a name revoked in Redis: was %v, err %v", was, err)
	}
	if mark, _ := redistest.Command(rds.Addr(), "HEXISTS", revokeMetaKey, "r:gone-key"); mark != "1" {
		t.Errorf("restore mark of gone-key: HEXISTS %s, want 1", mark)
	}
}
