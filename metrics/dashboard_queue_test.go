package metrics

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The "Gateway queue outcomes and wait" panel draws its p99 wait (refId B) in seconds,
// not in the panel's req/s, as the latency-and-error-rate panel draws its second series.
func TestQueueWaitPanelUnit(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type override struct {
		Matcher struct {
			ID      string `json:"id"`
			Options any    `json:"options"`
		} `json:"matcher"`
		Properties []struct {
			ID    string `json:"id"`
			Value any    `json:"value"`
		} `json:"properties"`
	}
	type jpanel struct {
		Title   string        `json:"title"`
		Targets []panelTarget `json:"targets"`
		Panels  []jpanel      `json:"panels"`
		Field   struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []override `json:"overrides"`
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
	found := false
	for _, p := range all {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "tollgate_backend_queue_wait_seconds") {
				continue
			}
			found = true
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
