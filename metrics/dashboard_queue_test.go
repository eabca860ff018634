package metrics

import (
	"strings"
	"testing"
)

// The "Gateway queue outcomes and wait" panel draws its p99 wait (refId B) in seconds,
// not in the panel's req/s, as the latency-and-error-rate panel draws its second series.
func TestQueueWaitPanelUnit(t *testing.T) {
	t.Parallel()
	found := false
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "tollgate_backend_queue_wait_seconds") {
				continue
			}
			found = true
			unit := p.unitOf(tg.RefID)
			if unit != "s" {
				t.Errorf("panel %q, refId %s (%s): observed unit %q; expected \"s\" for a wait in seconds",
					p.Title, tg.RefID, tg.LegendFormat, unit)
			}
		}
	}
	if !found {
		t.Fatal("no panel queries tollgate_backend_queue_wait_seconds")
	}
}
