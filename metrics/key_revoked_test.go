package metrics

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The revoked gauge holds 1 for exactly the names of the last set given; a name left
// out of the next set, restored, loses its series at once. The exposition parses as
// Prometheus reads it.
func TestKeysRevoked(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	scrape := func() map[string]float64 {
		t.Helper()
		var buf bytes.Buffer
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
				t.Fatal(err)
			}
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		parsed, err := p.TextToMetricFamilies(&buf)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		if f := parsed["tollgate_key_revoked"]; f != nil {
			if f.GetType().String() != "GAUGE" {
				t.Fatalf("type %v", f.GetType())
			}
			for _, s := range f.Metric {
				out[s.Label[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
		return out
	}
	if got := scrape(); len(got) != 0 {
		t.Fatalf("no key revoked: %v", got)
	}
	m.SetKeysRevoked([]string{"team-a", "ops/batch"})
	if got := scrape(); len(got) != 2 || got["team-a"] != 1 || got["ops/batch"] != 1 {
		t.Fatalf("two revoked: %v", got)
	}
	m.SetKeysRevoked([]string{"ops/batch"})
	if got := scrape(); len(got) != 1 || got["ops/batch"] != 1 {
		t.Fatalf("team-a restored: %v", got)
	}
	m.SetKeysRevoked(nil)
	if got := scrape(); len(got) != 0 {
		t.Fatalf("all restored: %v", got)
	}
}
