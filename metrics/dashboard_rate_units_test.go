package metrics

import (
	"strings"
	"testing"
)

// perSecondUnits are Grafana units that say a value is per second.
var perSecondUnits = map[string]bool{"reqps": true, "rps": true, "ops": true, "wps": true, "iops": true}

// A series that is a counter's rate() is a number per second; drawn in a unit with no
// "/s" (Grafana's "short"), 75 traces a second reads as 75 traces. Each such series
// is drawn in a per-second unit unless the panel's title says "per second".
func TestDashboardRatesHavePerSecondUnits(t *testing.T) {
	t.Parallel()
	rates := 0
	for _, p := range allPanels(loadDashboard(t).Panels) {
		if strings.Contains(strings.ToLower(p.Title), "per second") {
			continue
		}
		for _, tg := range p.Targets {
			e := tg.Expr
			// A plain rate: not a ratio, a quantile, a scaled rate (per hour) or an increase.
			if !strings.Contains(e, "rate(") || strings.Contains(e, "histogram_quantile") ||
				strings.ContainsAny(e, "/*") || strings.Contains(e, "increase(") {
				continue
			}
			rates++
			if unit := p.unitOf(tg.RefID); !perSecondUnits[unit] {
				t.Errorf("panel %q, refId %s (%s): a rate drawn in unit %q; expected a per-second unit (reqps, ops)",
					p.Title, tg.RefID, tg.LegendFormat, unit)
			}
		}
	}
	if rates == 0 {
		t.Fatal("no panel draws a plain rate()")
	}
}
