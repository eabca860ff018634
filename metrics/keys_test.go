package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A key's series are there at 0 once a config holds them, its cost only when priced;
// released uncounted they go at once, counted they stay to be scraped.
func TestKeySeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	l := m.Lease()
	l.Key("quiet", false)
	busy := l.Key("busy", true)
	busy.Done(3, 5, 0.25)
	count := func(name, key string) (n int, v float64) {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, s := range f.Metric {
				for _, lp := range s.Label {
					if lp.GetName() == "key" && lp.GetValue() == key {
						n++
						v += s.GetCounter().GetValue()
					}
				}
			}
		}
		return n, v
	}
	if n, v := count("tollgate_key_requests_total", "quiet"); n != 1 || v != 0 {
		t.Fatalf("quiet's requests: %d series, %v", n, v)
	}
	if n, _ := count("tollgate_key_cost_usd_total", "quiet"); n != 0 {
		t.Fatal("an unpriced key has a cost series")
	}
	if _, v := count("tollgate_key_tokens_total", "busy"); v != 8 {
		t.Fatalf("busy's tokens %v, want 8", v)
	}
	if _, v := count("tollgate_key_cost_usd_total", "busy"); v != 0.25 {
		t.Fatalf("busy's cost %v, want 0.25", v)
	}
	l.Release()
	if n, _ := count("tollgate_key_requests_total", "quiet"); n != 0 {
		t.Fatal("an uncounted key's series stayed after its config let go")
	}
	if n, _ := count("tollgate_key_requests_total", "busy"); n != 1 {
		t.Fatal("a counted key's series went before their last scrape")
	}
}
