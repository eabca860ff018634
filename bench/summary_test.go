package main

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		recordDur(h, time.Duration(i)*time.Microsecond)
	}
	s := summarize(h)
	near := func(name string, got, want float64) {
		t.Helper()
		// HDR keeps 3 significant digits: 0.1 % of the value.
		if math.Abs(got-want) > want*0.001+0.001 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if s.Count != 1000 {
		t.Fatalf("count %d", s.Count)
	}
	near("p50", s.P50, 500)
	near("p90", s.P90, 900)
	near("p99", s.P99, 990)
	near("p99.9", s.P999, 999)
	near("max", s.Max, 1000)
	near("mean", s.Mean, 500.5)
}

func TestSummarizeEmpty(t *testing.T) {
	if s := summarize(newHist()); s != (Summary{}) {
		t.Fatalf("empty histogram gave %+v", s)
	}
	if s := summarize(nil); s != (Summary{}) {
		t.Fatalf("nil histogram gave %+v", s)
	}
}

func TestRecordDurClamps(t *testing.T) {
	h := newHist()
	recordDur(h, 0)
	recordDur(h, -time.Second)
	recordDur(h, time.Hour)
	if h.TotalCount() != 3 {
		t.Fatalf("recorded %d of 3 out-of-range values", h.TotalCount())
	}
	if h.Max() < histMax*999/1000 {
		t.Fatalf("max %d, want about %d", h.Max(), histMax)
	}
}

func TestRunStatsMerge(t *testing.T) {
	a, b := newRunStats(), newRunStats()
	a.Sent, a.Measured, a.OK, a.Duration = 10, 8, 7, time.Second
	a.Errs["timeout"] = 1
	recordDur(a.Lat, time.Millisecond)
	a.Headers["canary"] = 2
	b.Sent, b.Measured, b.OK, b.Duration = 5, 5, 5, time.Second
	b.Errs["timeout"] = 2
	b.Errs["status 503"] = 1
	recordDur(b.Lat, 2*time.Millisecond)
	b.Headers["canary"] = 3
	a.merge(b)
	if a.Sent != 15 || a.Measured != 13 || a.OK != 12 || a.Duration != 2*time.Second {
		t.Fatalf("counts %+v", a)
	}
	if a.Errs.Total() != 4 || a.Errs["timeout"] != 3 || a.Lat.TotalCount() != 2 || a.Headers["canary"] != 5 {
		t.Fatalf("merged errs %v, lat %d, headers %v", a.Errs, a.Lat.TotalCount(), a.Headers)
	}
}

func TestErrorsString(t *testing.T) {
	cases := []struct {
		name string
		e    Errors
		want string
	}{
		{"none", Errors{}, "none"},
		{"sorted kinds", Errors{"timeout": 2, "connect": 1, "status 503": 4}, "connect=1, status 503=4, timeout=2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.String(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
