package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is everything one scenario run measured; it is written as JSON
// and rendered as Markdown.
type Result struct {
	Scenario string             `json:"scenario"`
	Started  time.Time          `json:"started"`
	Command  string             `json:"command"`
	Machine  Machine            `json:"machine"`
	Settings Settings           `json:"settings"`
	Cores    CoreMap            `json:"cores"`
	Paths    []PathResult       `json:"paths,omitempty"`
	Compare  []Comparison       `json:"compare,omitempty"`
	Max      *MaxResult         `json:"max,omitempty"`
	Streams  []StreamsResult    `json:"streams,omitempty"`
	Extra    map[string]float64 `json:"extra,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
}

// Machine says where the figures were taken.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	MemoryGiB  int    `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// Settings are the load parameters of the run.
type Settings struct {
	Rate        float64 `json:"rate_rps"`
	Closed      bool    `json:"closed_loop,omitempty"`
	Duration    string  `json:"duration"`
	Warmup      string  `json:"warmup"`
	Rounds      int     `json:"rounds"`
	Connections int     `json:"connections"`
	MaxTokens   int     `json:"max_tokens"`
	TTFT        string  `json:"upstream_ttft"`
	TPOT        string  `json:"upstream_tpot"`
	Spin        string  `json:"pacer_spin"`
}

// PathResult is one path's merged rounds.
type PathResult struct {
	Path    string  `json:"path"`
	Offered float64 `json:"offered_rps"`
	// Achieved is the answers that succeeded within the measured windows per
	// measured second: below Offered when the path fell behind the schedule.
	Achieved float64 `json:"achieved_rps"`
	Sent     int64   `json:"sent"` // warm-up included
	Measured int64   `json:"measured"`
	OK       int64   `json:"ok"`
	Errors   Errors  `json:"errors"` // of the measured requests
	// WarmupErrors failed during the warm-up: in no figure, but not a clean run.
	WarmupErrors Errors   `json:"warmup_errors,omitempty"`
	Latency      Summary  `json:"latency"`
	TTFT         *Summary `json:"ttft,omitempty"`
	Gap          *Summary `json:"inter_chunk_gap,omitempty"`
	// SendLag is the load generator's own lateness: from each request's scheduled
	// time to when the pacer queued it (open loop).
	SendLag Summary `json:"send_lag"`
	// LoadgenBehind is set when SendLag's p99 is more than half of Latency's
	// (loadgenBehind): the load generator, short of CPU, fell behind its
	// schedule, and the path's latency is mostly the harness's own lateness.
	LoadgenBehind bool `json:"load_generator_behind,omitempty"`
	// WorkerWait is from when the pacer queued a request to when one of the path's
	// --connections workers took it up, and NoFreeWorker the measured requests that
	// found every worker busy (open loop): the path's shortfall, in its latency.
	WorkerWait   Summary          `json:"worker_wait"`
	NoFreeWorker int64            `json:"no_free_worker"`
	Headers      map[string]int64 `json:"header_counts,omitempty"`
	// CPU is the path's own process (mockllm for direct, the gateway, nginx's
	// master and workers) over its rounds, per request sent.
	CPU *ProcCPU `json:"process_cpu,omitempty"`
}

// ProcCPU is a path's process CPU per request sent (warm-up included) and, for a
// Go process, its garbage collections over the same rounds.
type ProcCPU struct {
	UserUS   float64 `json:"user_us_per_request"`
	SystemUS float64 `json:"system_us_per_request"`
	GCCycles *int64  `json:"gc_cycles,omitempty"`
}

// Comparison is one path against another on one measure, at p50 and p99:
// a difference in microseconds (Kind "diff") or a ratio (Kind "ratio").
// A ratio whose denominator is not positive (nginx no slower than direct,
// within noise) means nothing and is left out (null).
type Comparison struct {
	Measure string   `json:"measure"`
	Label   string   `json:"label"`
	Kind    string   `json:"kind"`
	P50     *float64 `json:"p50"`
	P99     *float64 `json:"p99"`
	// P99Rounds compares the paths' medians of per-round p99s (Summary.RoundP99).
	P99Rounds *float64 `json:"p99_round_median,omitempty"`
}

// MaxResult is the outcome of the max scenario.
type MaxResult struct {
	BoundUS float64 `json:"p99_bound_us"`
	// Rounds is --max-rounds when steps ran in rounds (three or more): each
	// step is then judged by the median of its rounds' p99s.
	Rounds   int                `json:"rounds_per_step,omitempty"`
	Steps    []MaxStep          `json:"steps"`
	Highest  map[string]float64 `json:"highest_sustainable_rps"`
	HalfRate float64            `json:"half_rate_rps,omitempty"`
	Plot     string             `json:"plot,omitempty"`
}

// ran reports whether any step of the ladder measured path.
func (m *MaxResult) ran(path string) bool {
	for i := range m.Steps {
		if m.Steps[i].Path == path {
			return true
		}
	}
	return false
}

// MaxStep is one path at one offered load.
type MaxStep struct {
	Path    string  `json:"path"`
	Offered float64 `json:"offered_rps"`
	Latency Summary `json:"latency"`
	Errors  int64   `json:"errors"`
	// WarmupErrors failed in the step's warm-ups, and RetriedErrors in a first try
	// the step was tried again after (warm-up included): they judge no step, but a
	// run that has any is not clean (--smoke fails on them).
	WarmupErrors  int64 `json:"warmup_errors,omitempty"`
	RetriedErrors int64 `json:"retried_errors,omitempty"`
	Pass          bool  `json:"pass"`
	// SendLagP99US is the load generator's own lateness at this step (see
	// PathResult.SendLag), and LoadgenLimited marks a failed step where it was
	// more than half of the latency p99 (loadgenBehind): the load generator,
	// not the path, fell behind, so the path's highest rate is a lower bound.
	SendLagP99US   float64 `json:"send_lag_p99_us"`
	LoadgenLimited bool    `json:"load_generator_limited,omitempty"`
	// CPUUS is the path's own process CPU per request sent in the step (see
	// ProcCPU); near the top of the steps, the path's cost at saturation.
	CPUUS *float64 `json:"cpu_us_per_request,omitempty"`
}

// StreamsResult is one path of the streams-10k scenario.
type StreamsResult struct {
	Path             string  `json:"path"`
	Process          string  `json:"process"`
	Streams          int     `json:"streams"`
	PeakOpen         int64   `json:"peak_open"`
	Errors           Errors  `json:"errors"`
	RSSBeforeKB      int64   `json:"rss_before_kb"`
	RSSPeakKB        int64   `json:"rss_peak_kb"`
	PerStreamKB      float64 `json:"rss_per_stream_kb"`
	GoroutinesBefore int64   `json:"goroutines_before,omitempty"`
	GoroutinesPeak   int64   `json:"goroutines_peak,omitempty"`
	GoroutinesPer    float64 `json:"goroutines_per_stream,omitempty"`
	// Go heap and stacks per stream at the peak, from the admin /metrics.
	HeapPerStreamKB  float64 `json:"heap_per_stream_kb,omitempty"`
	StackPerStreamKB float64 `json:"stack_per_stream_kb,omitempty"`
	TTFT             Summary `json:"ttft"`
	Gap              Summary `json:"inter_chunk_gap"`
	Note             string  `json:"note,omitempty"`
}

// pathResult turns merged run stats into a PathResult.
func pathResult(name string, rate float64, st *runStats, stream bool) PathResult {
	r := PathResult{
		Path: name, Offered: rate, Sent: st.Sent, Measured: st.Measured, OK: st.OK, Errors: st.Errs, WarmupErrors: st.WarmupErrs,
		Latency: summarize(st.Lat), SendLag: summarize(st.Lag), WorkerWait: summarize(st.Wait), NoFreeWorker: st.NoFreeWorker,
	}
	r.Latency.RoundP99 = medianRoundP99(st.roundP99[0])
	r.LoadgenBehind = loadgenBehind(r.SendLag, r.Latency)
	if st.Duration > 0 {
		r.Achieved = float64(st.Completed) / st.Duration.Seconds()
	}
	if stream {
		t, g := summarize(st.TTFT), summarize(st.Gap)
		t.RoundP99, g.RoundP99 = medianRoundP99(st.roundP99[1]), medianRoundP99(st.roundP99[2])
		r.TTFT, r.Gap = &t, &g
	}
	if len(st.Headers) > 0 {
		r.Headers = st.Headers
	}
	if u, k, ok := st.cpuPerRequest(); ok {
		r.CPU = &ProcCPU{UserUS: u, SystemUS: k}
		if st.gcRounds == st.rounds {
			gc := st.GCCycles
			r.CPU.GCCycles = &gc
		}
	}
	return r
}

// loadgenBehind reports whether the load generator's send lag p99 is more than
// half of the latency p99 it is part of: the rate offered in the window was then
// below the one asked for, and every path's latency is mostly the harness's own
// lateness. A closed loop has no schedule and no send lag.
func loadgenBehind(lag, lat Summary) bool {
	return lag.Count >= minLagSamples && lat.P99 > 0 && lag.P99 > lat.P99/2
}

// minLagSamples is the fewest send-lag samples whose p99 says more than the
// single slowest send: below it (a --smoke run's 50 requests a path) one late
// wake-up of the pacer would flag the path.
const minLagSamples = 100

// Path names. tollgate-base is the same gateway without the feature a
// scenario measures, so the feature's own cost is tollgate − tollgate-base.
const (
	pathDirect   = "direct"
	pathTollgate = "tollgate"
	pathNginx    = "nginx"
	pathBase     = "tollgate-base"
)

// compare derives the added-latency figures from the paths present.
func compare(paths []PathResult) []Comparison {
	by := map[string]*PathResult{}
	for i := range paths {
		by[paths[i].Path] = &paths[i]
	}
	type measure struct {
		name string
		get  func(*PathResult) *Summary
	}
	measures := []measure{{"latency", func(p *PathResult) *Summary { return &p.Latency }}}
	if p := by[pathTollgate]; p != nil && p.TTFT != nil {
		measures = append(measures,
			measure{"ttft", func(p *PathResult) *Summary { return p.TTFT }},
			measure{"inter-chunk gap", func(p *PathResult) *Summary { return p.Gap }})
	}
	var out []Comparison
	for _, m := range measures {
		get := func(name string) *Summary {
			p := by[name]
			if p == nil {
				return nil
			}
			s := m.get(p)
			if s == nil || s.Count == 0 {
				return nil
			}
			return s
		}
		d, tg, ng, base := get(pathDirect), get(pathTollgate), get(pathNginx), get(pathBase)
		diff := func(label string, a, b *Summary) {
			if a != nil && b != nil {
				c := Comparison{m.name, label, "diff", ptr(a.P50 - b.P50), ptr(a.P99 - b.P99), nil}
				if a.RoundP99 != nil && b.RoundP99 != nil {
					c.P99Rounds = ptr(*a.RoundP99 - *b.RoundP99)
				}
				out = append(out, c)
			}
		}
		// roundRatio is (a − base) / (b − base) over the medians of round p99s (base
		// optional), or nil when one is missing.
		roundRatio := func(a, b, base *Summary) *float64 {
			if a.RoundP99 == nil || b.RoundP99 == nil || (base != nil && base.RoundP99 == nil) {
				return nil
			}
			x, y := *a.RoundP99, *b.RoundP99
			if base != nil {
				x, y = x-*base.RoundP99, y-*base.RoundP99
			}
			return ratio(x, y)
		}
		diff("tollgate − direct", tg, d)
		diff("nginx − direct", ng, d)
		diff("tollgate − tollgate-base", tg, base)
		if tg != nil && d != nil {
			out = append(out, Comparison{m.name, "tollgate / direct", "ratio", ratio(tg.P50, d.P50), ratio(tg.P99, d.P99),
				roundRatio(tg, d, nil)})
		}
		if tg != nil && ng != nil {
			out = append(out, Comparison{m.name, "tollgate / nginx", "ratio", ratio(tg.P50, ng.P50), ratio(tg.P99, ng.P99),
				roundRatio(tg, ng, nil)})
			if d != nil {
				out = append(out, Comparison{m.name, "added: (tollgate − direct) / (nginx − direct)", "ratio",
					ratio(tg.P50-d.P50, ng.P50-d.P50), ratio(tg.P99-d.P99, ng.P99-d.P99), roundRatio(tg, ng, d)})
			}
		}
	}
	return out
}

func ratio(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	return ptr(a / b)
}

func ptr[T any](v T) *T { return &v }

func fopt(v *float64, prec int) string {
	if v == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

func fus(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func frate(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// markdown renders r as a self-contained Markdown report.
func (r *Result) markdown() string {
	var b strings.Builder
	p := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
		b.WriteByte('\n')
	}
	p("# bench: ", r.Scenario)
	p()
	p("- command: `", r.Command, "`")
	p("- started: ", r.Started.UTC().Format(time.RFC3339))
	p("- machine: ", r.Machine.CPU, ", ", strconv.Itoa(r.Machine.Cores), " cores, ",
		strconv.Itoa(r.Machine.MemoryGiB), " GiB, kernel ", r.Machine.Kernel, ", ", r.Machine.GoVersion)
	p("- cores: ", r.Cores.String())
	s := r.Settings
	load := frate(s.Rate) + " req/s open loop"
	if r.Max != nil && r.Max.HalfRate == 0 {
		// The ladder is the whole run: no half-rate measurement followed it.
		why := "Tollgate sustained no step"
		if len(r.Max.Steps) > 0 && !r.Max.ran(pathTollgate) {
			why = "tollgate was not among --paths"
		}
		load = "the ladder below only (" + why + ", so no half-rate run)"
	}
	latency := "Latency (µs, from the scheduled send time to the last byte)"
	if s.Closed {
		// No schedule: each client sends as soon as it has its answer.
		load = "closed loop"
		latency = "Latency (µs, from each request's send to its last byte; closed loop: the figure is the achieved rate)"
	}
	p("- load: ", load, ", ", s.Duration, " per path in ", strconv.Itoa(s.Rounds),
		" alternating rounds, warm-up ", s.Warmup, ", ", strconv.Itoa(s.Connections), " connections, max_tokens ",
		strconv.Itoa(s.MaxTokens), ", upstream ttft ", s.TTFT, " tpot ", s.TPOT)
	p()
	if len(r.Paths) > 0 {
		renderPaths(&b, latency, r.Paths,
			func(x *PathResult) *Summary { return &x.Latency }, true)
		if r.Paths[0].TTFT != nil {
			renderPaths(&b, "Time to first token (µs, at the client)", r.Paths,
				func(x *PathResult) *Summary { return x.TTFT }, false)
			renderPaths(&b, "Inter-chunk gap (µs, at the client)", r.Paths,
				func(x *PathResult) *Summary { return x.Gap }, false)
		}
		if !s.Closed {
			renderSendLag(&b, r.Paths)
			renderWorkerWait(&b, r.Paths, s.Connections)
		}
		renderCPU(&b, r.Paths)
		for _, x := range r.Paths {
			if len(x.Headers) > 0 {
				p("Response header counts, ", x.Path, ": ", countsString(x.Headers))
				p()
			}
		}
	}
	if len(r.Compare) > 0 {
		p("## Added latency")
		p()
		p("| measure | comparison | p50 | p99 | p99, median of rounds |")
		p("| --- | --- | ---: | ---: | ---: |")
		for _, c := range r.Compare {
			if c.Kind == "diff" {
				p("| ", c.Measure, " | ", c.Label, " (µs) | ", fopt(c.P50, 1), " | ", fopt(c.P99, 1), " | ", fopt(c.P99Rounds, 1), " |")
			} else {
				p("| ", c.Measure, " | ", c.Label, " | ", fopt(c.P50, 2), " | ", fopt(c.P99, 2), " | ", fopt(c.P99Rounds, 2), " |")
			}
		}
		p()
		p("p99, median of rounds: each path's p99 in each of its alternating rounds, the median of those (three rounds or more), compared as the p99 column is; a disturbance of the machine that hits one round moves it less than the p99 of all rounds merged.")
		p()
	}
	if m := r.Max; m != nil {
		if m.Rounds > 0 {
			p("## Highest sustainable rate (median of ", strconv.Itoa(m.Rounds), " rounds' p99 ≤ ", fus(m.BoundUS), " µs, errors ≤ 0.1 %)")
		} else {
			p("## Highest sustainable rate (p99 ≤ ", fus(m.BoundUS), " µs, errors ≤ 0.1 %)")
		}
		p()
		p("| path | req/s |")
		p("| --- | ---: |")
		for _, k := range sortedKeys(m.Highest) {
			p("| ", k, " | ", frate(m.Highest[k]), " |")
		}
		p()
		if m.Plot != "" {
			p("![latency against offered load](", m.Plot, ")")
			p()
		}
		p("### Steps")
		p()
		if m.Rounds > 0 {
			p("| path | offered req/s | p50 | p90 | p99 | p99, median of rounds | p99.9 | max | send lag p99 | errors | pass | process CPU µs/req |")
			p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
		} else {
			p("| path | offered req/s | p50 | p90 | p99 | p99.9 | max | send lag p99 | errors | pass | process CPU µs/req |")
			p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
		}
		var limited []MaxStep
		for _, st := range m.Steps {
			l := st.Latency
			cpu := "n/a"
			if st.CPUUS != nil {
				cpu = fus(*st.CPUUS)
			}
			p99 := fus(l.P99)
			if m.Rounds > 0 {
				p99 += " | " + fopt(l.RoundP99, 1)
			}
			pass := strconv.FormatBool(st.Pass)
			if st.LoadgenLimited {
				pass = "load generator ⚠"
				limited = append(limited, st)
			}
			p("| ", st.Path, " | ", frate(st.Offered), " | ", fus(l.P50), " | ", fus(l.P90), " | ", p99, " | ",
				fus(l.P999), " | ", fus(l.Max), " | ", fus(st.SendLagP99US), " | ", stepErrors(&st), " | ", pass, " | ", cpu, " |")
		}
		p()
		for _, st := range limited {
			p("⚠ ", st.Path, " at ", frate(st.Offered), " req/s: ", loadgenLimitedNote(st))
			p()
		}
		if m.Rounds > 0 {
			p("Each step ran ", strconv.Itoa(m.Rounds), " alternating rounds per path; p99 is over all of them, and a step passes on the median of the rounds' own p99s.")
			p()
		}
		if m.HalfRate > 0 {
			p("The latency tables above are at half of Tollgate's highest sustainable rate (", frate(m.HalfRate), " req/s).")
			p()
		}
	}
	if len(r.Streams) > 0 {
		p("## Concurrent streams")
		p()
		p("| path | process | streams | peak open | errors | RSS before KiB | RSS at peak KiB | KiB / stream | heap KiB / stream | stack KiB / stream | goroutines before | at peak | per stream | ttft p99 µs | gap p99 µs |")
		p("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.Streams {
			gb, gp, gper, heap, stack := "–", "–", "–", "–", "–"
			if x.HeapPerStreamKB > 0 {
				heap = strconv.FormatFloat(x.HeapPerStreamKB, 'f', 1, 64)
				stack = strconv.FormatFloat(x.StackPerStreamKB, 'f', 1, 64)
			}
			if x.GoroutinesPeak > 0 {
				gb, gp = strconv.FormatInt(x.GoroutinesBefore, 10), strconv.FormatInt(x.GoroutinesPeak, 10)
				gper = strconv.FormatFloat(x.GoroutinesPer, 'f', 2, 64)
			}
			p("| ", x.Path, " | ", x.Process, " | ", strconv.Itoa(x.Streams), " | ", strconv.FormatInt(x.PeakOpen, 10), " | ",
				x.Errors.String(), " | ", strconv.FormatInt(x.RSSBeforeKB, 10), " | ", strconv.FormatInt(x.RSSPeakKB, 10), " | ",
				strconv.FormatFloat(x.PerStreamKB, 'f', 1, 64), " | ", heap, " | ", stack, " | ", gb, " | ", gp, " | ", gper, " | ",
				fus(x.TTFT.P99), " | ", fus(x.Gap.P99), " |")
		}
		p()
	}
	if len(r.Extra) > 0 {
		p("## Other figures")
		p()
		for _, k := range sortedKeys(r.Extra) {
			p("- ", k, ": ", strconv.FormatFloat(r.Extra[k], 'f', -1, 64))
		}
		p()
	}
	if len(r.Notes) > 0 {
		p("## Notes")
		p()
		for _, n := range r.Notes {
			p("- ", n)
		}
		p()
	}
	return b.String()
}

func renderPaths(b *strings.Builder, title string, paths []PathResult, get func(*PathResult) *Summary, full bool) {
	b.WriteString("## " + title + "\n\n")
	if full {
		b.WriteString("| path | offered req/s | achieved req/s | ok | errors | p50 | p90 | p99 | p99.9 | max |\n")
		b.WriteString("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
	} else {
		b.WriteString("| path | count | p50 | p90 | p99 | p99.9 | max |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	}
	for i := range paths {
		x := &paths[i]
		s := get(x)
		if s == nil {
			continue
		}
		if full {
			offered := frate(x.Offered)
			if x.Offered == 0 {
				offered = "closed loop"
			}
			b.WriteString("| " + x.Path + " | " + offered + " | " + frate(x.Achieved) + " | " +
				strconv.FormatInt(x.OK, 10) + " | " + x.Errors.String() + warmupErrs(x) + " | ")
		} else {
			b.WriteString("| " + x.Path + " | " + strconv.FormatInt(s.Count, 10) + " | ")
		}
		b.WriteString(fus(s.P50) + " | " + fus(s.P90) + " | " + fus(s.P99) + " | " + fus(s.P999) + " | " + fus(s.Max) + " |\n")
	}
	b.WriteString("\n")
}

// renderSendLag writes the load generator's send lag per path, and flags each
// path whose latency p99 it was more than half of (loadgenBehind): the run
// measured the harness's shortage of CPU there, not the path.
func renderSendLag(b *strings.Builder, paths []PathResult) {
	b.WriteString("## Send lag (µs, the load generator's own lateness: from the scheduled time to queueing the request for a worker)\n\n")
	b.WriteString("| path | count | p50 | p90 | p99 | p99.9 | max |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var flagged []*PathResult
	for i := range paths {
		x := &paths[i]
		s := x.SendLag
		p99 := fus(s.P99)
		if loadgenBehind(x.SendLag, x.Latency) {
			p99 = "**" + p99 + "** ⚠"
			flagged = append(flagged, x)
		}
		b.WriteString("| " + x.Path + " | " + strconv.FormatInt(s.Count, 10) + " | " + fus(s.P50) + " | " + fus(s.P90) + " | " +
			p99 + " | " + fus(s.P999) + " | " + fus(s.Max) + " |\n")
	}
	b.WriteString("\n")
	for _, x := range flagged {
		b.WriteString("⚠ " + x.Path + ": send lag p99 " + fus(x.SendLag.P99) + " µs of a latency p99 of " + fus(x.Latency.P99) +
			" µs: the load generator was behind its schedule (short of CPU), so less than the offered " + frate(x.Offered) +
			" req/s was sent on time and the path's latency is mostly the harness's own lateness. Repeat the run with fewer other processes, or with --pin.\n\n")
	}
}

// loadgenLimitedNote says why a failed max step is the load generator's, not
// the path's.
func loadgenLimitedNote(st MaxStep) string {
	return "send lag p99 " + fus(st.SendLagP99US) + " µs of a latency p99 of " + fus(st.Latency.P99) +
		" µs: the load generator fell behind its schedule, not the path; the path's highest rate is a lower bound."
}

// renderWorkerWait writes the wait for a free worker, and flags each path on
// which some requests found every worker busy: the path, not the load
// generator, fell behind, and its latency holds that wait.
func renderWorkerWait(b *strings.Builder, paths []PathResult, conns int) {
	b.WriteString("## Wait for a free worker (µs, from queueing to a worker taking the request up; the path's own, in its latency)\n\n")
	b.WriteString("| path | count | found no free worker | p50 | p90 | p99 | p99.9 | max |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var flagged []*PathResult
	for i := range paths {
		x := &paths[i]
		s := x.WorkerWait
		n := strconv.FormatInt(x.NoFreeWorker, 10)
		if x.NoFreeWorker > 0 {
			n = "**" + n + "** ⚠"
			flagged = append(flagged, x)
		}
		b.WriteString("| " + x.Path + " | " + strconv.FormatInt(s.Count, 10) + " | " + n + " | " +
			fus(s.P50) + " | " + fus(s.P90) + " | " + fus(s.P99) + " | " + fus(s.P999) + " | " + fus(s.Max) + " |\n")
	}
	b.WriteString("\n")
	for _, x := range flagged {
		b.WriteString("⚠ " + x.Path + ": " + strconv.FormatInt(x.NoFreeWorker, 10) + " of " + strconv.FormatInt(x.Measured, 10) +
			" measured requests found all " + strconv.Itoa(conns) + " workers busy: the path did not keep up with the offered load" +
			" at --connections " + strconv.Itoa(conns) + " (achieved " + frate(x.Achieved) + " of " + frate(x.Offered) +
			" req/s); its latency includes the wait.\n\n")
	}
}

// stepErrors is a max step's failed measured requests, with the warm-ups' and a
// first try's noted apart.
func stepErrors(s *MaxStep) string {
	var apart []string
	if s.WarmupErrors > 0 {
		apart = append(apart, "+"+strconv.FormatInt(s.WarmupErrors, 10)+" in warm-up")
	}
	if s.RetriedErrors > 0 {
		apart = append(apart, "+"+strconv.FormatInt(s.RetriedErrors, 10)+" in the first try")
	}
	out := strconv.FormatInt(s.Errors, 10)
	if len(apart) > 0 {
		out += " (" + strings.Join(apart, ", ") + ")"
	}
	return out
}

// renderCPU writes each path's process CPU per request, when it was read.
func renderCPU(b *strings.Builder, paths []PathResult) {
	have := false
	for i := range paths {
		have = have || paths[i].CPU != nil
	}
	if !have {
		return
	}
	b.WriteString("## Process CPU per request (µs; the path's own process: mockllm for direct, the gateway, nginx's master and workers; warm-up included; 10 ms clock ticks)\n\n")
	b.WriteString("| path | requests | user | system | total | GC cycles |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for i := range paths {
		x := &paths[i]
		if x.CPU == nil {
			continue
		}
		gc := "n/a"
		if x.CPU.GCCycles != nil {
			gc = strconv.FormatInt(*x.CPU.GCCycles, 10)
		}
		b.WriteString("| " + x.Path + " | " + strconv.FormatInt(x.Sent, 10) + " | " + fus(x.CPU.UserUS) + " | " +
			fus(x.CPU.SystemUS) + " | " + fus(x.CPU.UserUS+x.CPU.SystemUS) + " | " + gc + " |\n")
	}
	b.WriteString("\n")
}

func countsString(m map[string]int64) string {
	var total int64
	for _, v := range m {
		total += v
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, name+"="+strconv.FormatInt(m[k], 10)+" ("+
			strconv.FormatFloat(100*float64(m[k])/float64(total), 'f', 1, 64)+" %)")
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// resultFiles names the files of one run: a timestamped pair kept as
// history, and latest-<scenario> overwritten each run.
func resultFiles(dir, scenario string, at time.Time) (stamped, latest string) {
	ts := at.UTC().Format("20060102T150405Z")
	return filepath.Join(dir, ts+"-"+scenario), filepath.Join(dir, "latest-"+scenario)
}

// write stores r as .md and .json under dir.
func (r *Result) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	md := []byte(r.markdown())
	stamped, latest := resultFiles(dir, r.Scenario, r.Started)
	var written []string
	for _, base := range []string{stamped, latest} {
		for ext, data := range map[string][]byte{".md": md, ".json": append(js, '\n')} {
			if err := os.WriteFile(base+ext, data, 0o644); err != nil {
				return written, err
			}
			written = append(written, base+ext)
		}
	}
	sort.Strings(written)
	return written, nil
}

// machine describes this host.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = int((kb + 512*1024) >> 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// warmupErrs notes a path's warm-up failures next to its measured ones.
func warmupErrs(p *PathResult) string {
	if n := p.WarmupErrors.Total(); n > 0 {
		return " (+" + strconv.FormatInt(n, 10) + " in warm-up: " + p.WarmupErrors.String() + ")"
	}
	return ""
}
