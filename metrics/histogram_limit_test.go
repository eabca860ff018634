package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A route that both fails fast (a refused connection: well under a millisecond) and
// streams long generations (minutes) spreads its latencies over more native buckets
// than the limit allows. The histogram must then lower its resolution, never reset:
// the classic buckets, _sum and _count it exports beside the native ones are what the
// dashboards and alert rules read, and a reset would drop them all to zero without a
// restart.
func TestLatencyHistogramsOutgrowBucketLimitWithoutReset(t *testing.T) {
	// client_golang resets a histogram past its bucket limit, classic buckets
	// included, once its last reset is NativeHistogramMinResetDuration old (and
	// schedules that reset for a younger one): an age no unit test can reach through
	// the public API, hence this check of the option.
	if d := histogramOpts("x", "x", DurationBuckets).NativeHistogramMinResetDuration; d != 0 {
		t.Errorf("NativeHistogramMinResetDuration = %v, want 0: the histograms would be wiped every %v", d, d)
	}

	reg := prometheus.NewRegistry()
	r := New(reg).Route("chat", "llama", "stable")
	names := []string{"tollgate_request_duration_seconds", "tollgate_time_to_first_token_seconds", "tollgate_time_per_output_token_seconds"}
	// 100 µs to 10 min is 2^22.5: 180 buckets at the native schema, past the 160
	// allowed.
	const lo, hi, steps = 100e-6, 600.0, 400
	last := make(map[string]*dto.Histogram)
	for i := range steps {
		d := time.Duration(lo * math.Pow(hi/lo, float64(i)/(steps-1)) * float64(time.Second))
		r.Done(200, d, d, d, 0, 0, 0)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			for _, name := range names {
				if f.GetName() != name {
					continue
				}
				h := f.GetMetric()[0].GetHistogram()
				checkHistogram(t, name, h, last[name], uint64(i+1), d)
				last[name] = h
			}
		}
		if t.Failed() {
			return
		}
	}
	for _, name := range names {
		if last[name] == nil {
			t.Errorf("%s not exported", name)
		}
	}
}

// checkHistogram checks that h counts n observations, the last one d, that no classic
// bucket went down since prev, and that its native buckets stay within the limit and
// hold every observation.
func checkHistogram(t *testing.T, name string, h, prev *dto.Histogram, n uint64, d time.Duration) {
	t.Helper()
	if h.GetSampleCount() != n {
		t.Errorf("%s: after %d observations (the last %v) _count = %d: the histogram was reset", name, n, d, h.GetSampleCount())
		return
	}
	if prev != nil {
		for i, b := range h.GetBucket() {
			if was := prev.GetBucket()[i].GetCumulativeCount(); b.GetCumulativeCount() < was {
				t.Errorf("%s: after %d observations (the last %v) le=%v went from %d to %d", name, n, d, b.GetUpperBound(), was, b.GetCumulativeCount())
			}
		}
	}
	if h.GetZeroThreshold() > nativeMaxZeroThreshold {
		t.Errorf("%s: zero bucket widened to %v, past %v", name, h.GetZeroThreshold(), nativeMaxZeroThreshold)
	}
	native, buckets := h.GetZeroCount(), 0
	var c int64
	for _, delta := range h.GetPositiveDelta() {
		c += delta
		native += uint64(c)
		if c > 0 {
			buckets++
		}
	}
	if buckets > nativeMaxBuckets {
		t.Errorf("%s: %d native buckets, over the limit of %d", name, buckets, nativeMaxBuckets)
	}
	if native != n {
		t.Errorf("%s: native buckets hold %d observations, want %d", name, native, n)
	}
}
