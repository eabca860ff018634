package main

import (
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record nanoseconds from 1 ns to 2 minutes with 3 significant
// digits: 0.1 µs resolution at 100 µs, which is finer than the added
// latencies the harness exists to measure.
const (
	histMin     = 1
	histMax     = int64(2 * time.Minute)
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// recordDur records d, clamped into the histogram's range so that an
// outlier is counted at the top instead of being dropped.
func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	}
	if v > histMax {
		v = histMax
	}
	_ = h.RecordValue(v)
}

// Summary is the distribution of one latency measure, in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
	// RoundP99 is the median over the path's alternating rounds of each
	// round's own p99 (three rounds or more): a disturbance of the machine that
	// hits one round moves it less than it moves the p99 of all rounds merged.
	RoundP99 *float64 `json:"round_median_p99_us,omitempty"`
}

// judgedP99 is the p99 a max step is judged by: the median of its rounds'
// p99s when it ran in rounds, else the p99 of all its requests.
func (s Summary) judgedP99() float64 {
	if s.RoundP99 != nil {
		return *s.RoundP99
	}
	return s.P99
}

// medianRoundP99 is the median of per-round p99s in ns, in µs; nil for fewer
// than three rounds.
func medianRoundP99(ns []int64) *float64 {
	if len(ns) < 3 {
		return nil
	}
	v := slices.Clone(ns)
	slices.Sort(v)
	m := micros(v[len(v)/2])
	if len(v)%2 == 0 {
		m = (micros(v[len(v)/2-1]) + m) / 2
	}
	return &m
}

func micros(ns int64) float64 { return float64(ns) / 1e3 }

// summarize reads the percentiles of h; an empty histogram gives a zero
// Summary rather than the library's zero-valued percentiles with a count.
func summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   micros(h.ValueAtQuantile(50)),
		P90:   micros(h.ValueAtQuantile(90)),
		P99:   micros(h.ValueAtQuantile(99)),
		P999:  micros(h.ValueAtQuantile(99.9)),
		Max:   micros(h.Max()),
	}
}

// Errors counts failed requests by kind: "connect", "timeout", "status 503",
// "bad body", "backlog", "other".
type Errors map[string]int64

// Total is the number of failed requests of every kind.
func (e Errors) Total() int64 {
	var n int64
	for _, v := range e {
		n += v
	}
	return n
}

// add folds o into e.
func (e Errors) add(o Errors) {
	for k, v := range o {
		e[k] += v
	}
}

// String lists the kinds in a stable order, e.g. "connect=2 status 503=1";
// "none" when empty.
func (e Errors) String() string {
	if len(e) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for i, k := range keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendInt(b, e[k], 10)
	}
	return string(b)
}
