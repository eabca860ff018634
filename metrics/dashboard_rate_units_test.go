package metrics

import (
	"encoding/json"
	"os"
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
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type jpanel struct {
		Title   string        `json:"title"`
		Targets []panelTarget `json:"targets"`
		Panels  []jpanel      `json:"panels"`
		Field   struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []struct {
				Matcher struct {
					ID      string `json:"id"`
					Options any    `json:"options"`
				} `json:"matcher"`
				Properties []struct {
					ID    string `json:"id"`
					Value any    `json:"value"`
				} `json:"properties"`
			} `json:"overrides"`
		} `json:"fieldConfig"`
	}
	var d struct {
		Panels []jpanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var all []jpanel
	var walk func([]jpanel)
	walk = func(ps []jpanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	rates := 0
	for _, p := range all {
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
			unit := p.Field.Defaults.Unit
			for _, o := range p.Field.Overrides {
				if o.Matcher.ID == "byFrameRefID" && o.Matcher.Options == tg.RefID {
					for _, pr := range o.Properties {
						if pr.ID == "unit" {
							unit, _ = pr.Value.(string)
						}
					}
				}
			}
			if !perSecondUnits[unit] {
				t.Errorf("panel %q, refId %s (%s): a rate drawn in unit %q; expected a per-second unit (reqps, ops)",
					p.Title, tg.RefID, tg.LegendFormat, unit)
			}
		}
	}
	if rates == 0 {
		t.Fatal("no panel draws a plain rate()")
	}
}
