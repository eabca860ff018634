package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
)

// A request whose client hangs up while it waits in its backend's queue (every slot
// taken) never reaches an upstream, so it counts no attempt: not in the access log's
// attempts, not in tollgate_upstream_attempts_total (no target was leased), as README
// says of a backend with every replica busy and as a queue wait that runs out counts
// none.
func TestQueuedHangUpCountsNoAttempt(t *testing.T) {
	t.Parallel()
	u := startHeldUpstream(t)
	g := startGateway(t, hangupConfig(u.addr, "", ""))
	t.Cleanup(func() { close(u.release) })

	holder := dialRaw(t, g, nil)
	holder.send(t, g, "holder", chatBody)
	if c := u.next(t); c != "holder" {
		t.Fatalf("upstream got %q first, want the holder", c)
	}
	gone := dialRaw(t, g, nil)
	gone.send(t, g, "gone", chatBody)
	waitInFlight(t, g, 2, "the second request queues")
	_ = gone.conn.Close()
	goneLine := accessLine(t, g, "gone")
	u.release <- struct{}{}
	if code, _ := holder.status(t); code != 200 {
		t.Fatalf("holder: status %d", code)
	}
	holderLine := accessLine(t, g, "holder")
	logged := goneLine["attempts"].(float64) + holderLine["attempts"].(float64)

	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	counted, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", nil)
	if u.count.Load() != 1 {
		t.Fatalf("upstream received %d requests, want 1", u.count.Load())
	}
	if counted != logged {
		t.Errorf("access log attempts: holder %v, queued request that hung up %v (status %v); tollgate_upstream_attempts_total counts %v in all: "+
			"the log and the metric must count the same attempts", holderLine["attempts"], goneLine["attempts"], goneLine["status"], counted)
	}
}
