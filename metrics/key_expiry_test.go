package metrics

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The expiry gauge holds exactly the keys of the last set given, in seconds since the
// epoch (fractions kept); a key left out of the next set, removed or without expiry
// now, loses its series at once. The exposition parses as Prometheus reads it.
func TestKeyExpiries(t *testing.T) {
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
		if f := parsed["tollgate_key_expiry_timestamp_seconds"]; f != nil {
			for _, s := range f.Metric {
				out[s.Label[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
		return out
	}
	hack := time.Date(2026, 12, 31, 23, 59, 59, 5e8, time.UTC)
	ci := time.Date(2027, 1, 15, 12, 0, 0, 0, time.FixedZone("", -5*3600))
	m.SetKeyExpiries([]KeyExpiry{{"hackathon", hack}, {"ci", ci}})
	got := scrape()
	if len(got) != 2 || got["hackathon"] != 1798761599.5 || got["ci"] != float64(ci.Unix()) {
		t.Fatalf("gauge %v, want hackathon 1798761599.5 and ci %d", got, ci.Unix())
	}
	later := hack.Add(30 * 24 * time.Hour)
	m.SetKeyExpiries([]KeyExpiry{{"hackathon", later}})
	if got := scrape(); len(got) != 1 || got["hackathon"] != float64(later.Unix())+0.5 {
		t.Fatalf("after ci went: %v, want hackathon alone at %d.5", got, later.Unix())
	}
	m.SetKeyExpiries(nil)
	if got := scrape(); len(got) != 0 {
		t.Fatalf("no key expires: %v, want no series", got)
	}
}
