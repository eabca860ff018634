package gateway

import (
	"testing"

	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The revocations' hash evicted, and a revoke made on another replica before any poll
// noticed: the hash then holds that revocation alone. The replica that made it finds
// the hash short of what it applied at its next poll and writes the rest back, so
// every replica ends with both keys revoked (README: the others read the lost key as
// restored until then).
func TestKeyRevokeHashEvictedBeforeAChange(t *testing.T) {
	t.Parallel()
	rds, _, gs := revokedOnTwo(t)
	// The eviction and the change in one go, before either replica polls again.
	if _, err := redistest.Command(rds.Addr(), "DEL", revokeHashKey); err != nil {
		t.Fatal(err)
	}
	if status, out := keyChange(t, gs[1], "team-b", "revoke", `{"reason":"rotated"}`); status != 200 {
		t.Fatalf("revoke team-b: %d %v", status, out)
	}
	waitFor(t, func() bool {
		h, err := redistest.Command(rds.Addr(), "HEXISTS", revokeHashKey, "team-a")
		return err == nil && h == "1"
	})
	for _, g := range gs {
		waitFor(t, func() bool {
			return isRevoked(revChat(g.client(option.WithAPIKey(revKeyA)))) &&
				isRevoked(revChat(g.client(option.WithAPIKey(revKeyB))))
		})
	}
}
