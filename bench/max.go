package main

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"time"
)

// maxStepOK is the sustainability rule of the max scenario: p99 within the
// bound and at most 0.1 % failed requests. A step run in rounds (--max-rounds)
// is judged by the median of its rounds' p99s, so a stall of the machine that
// lands in one round does not decide it.
func maxStepOK(s Summary, measured, errs int64, bound time.Duration) bool {
	if s.Count == 0 || measured == 0 {
		return false
	}
	return s.judgedP99() <= float64(bound)/1e3 && errs*1000 <= measured
}

// maxRates is the ladder of offered loads: start, start×factor, … up to
// limit, rounded to whole requests per second, at most maxLadderSteps of
// them. The loop is bounded by its iterations, not by the steps it keeps:
// rounding drops a repeated rate, and a start of 0 never grows. The rounded
// rate, the one offered, is what the limit bounds: start×factor^k carries
// float error (100×1.1 is 110.00000000000001), which must not drop a step
// that lands on the limit.
func maxRates(start, factor, limit float64) []float64 {
	if start <= 0 || factor <= 1 {
		return nil
	}
	var out []float64
	r := start
	for i := 0; i < maxLadderIterations && len(out) < maxLadderSteps; i++ {
		v := math.Round(r)
		if v > limit {
			break
		}
		if len(out) == 0 || v > out[len(out)-1] {
			out = append(out, v)
		}
		r *= factor
	}
	return out
}

const (
	maxLadderSteps = 200
	// maxLadderIterations allows a factor barely above 1 to repeat rounded
	// rates for a while, and still ends.
	maxLadderIterations = 10 * maxLadderSteps
)

// runMax measures the ladder of offered loads over every path (maxLadder),
// then all paths at half of Tollgate's highest sustainable rate, where the
// added latency is read.
func runMax(ctx context.Context, o *options, b *bins, cores CoreMap, prog *progress) (*Result, error) {
	timing := upstreamTiming{MaxTokens: upstreamCap(o.MaxTokens)}
	e, err := newEnv(o, b, cores)
	if err != nil {
		return nil, err
	}
	defer e.close()
	ts, err := e.setup(ctx, lookupScenario("chat"), timing)
	if err != nil {
		return nil, err
	}
	res := newResult(o, cores, "max", timing)
	for _, t := range ts {
		t.client = newClient(t.Addr, o.Conns, o.Timeout, false, 0)
	}
	mr, alive := maxLadder(ctx, o, ts, prog)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for i, t := range ts {
		if alive[i] {
			res.Notes = append(res.Notes, t.Name+" still met the bound at --max-limit; its highest rate is a lower bound")
		}
	}
	res.Notes = append(res.Notes, cappedNotes(mr)...)
	for _, st := range mr.Steps {
		if st.LoadgenLimited {
			res.Notes = append(res.Notes, st.Path+" ended at "+frate(st.Offered)+" req/s limited by the load generator: "+loadgenLimitedNote(st))
		}
	}
	if len(mr.Steps) == 0 {
		res.Notes = append(res.Notes, "the ladder ran no step: --max-start is above --max-limit")
	}
	res.Max = mr
	if half := mr.Highest[pathTollgate] / 2; half > 0 {
		mr.HalfRate = math.Round(half)
		spec := loadSpec{Kind: kindChat, Rate: mr.HalfRate, Conns: o.Conns, MaxTokens: o.MaxTokens,
			Timeout: o.Timeout, Spin: o.Spin}
		res.Paths = measure(ctx, o, ts, spec, prog)
		res.Compare = compare(res.Paths)
		res.Settings.Rate = mr.HalfRate
	} else {
		// No rate ran at a constant load: --rate was never offered.
		res.Settings.Rate = 0
	}
	if o.Out != "" {
		stamped, latest := resultFiles(o.Out, "max", res.Started)
		mr.Plot = filepath.Base(stamped) + ".svg"
		for _, f := range []string{stamped + ".svg", latest + ".svg"} {
			if err := plotMax(mr, f); errors.Is(err, errNoPlotPoints) {
				// The report, with its steps and notes, still says what happened.
				mr.Plot = ""
				res.Notes = append(res.Notes, "no plot: no step of the ladder has a latency to draw")
				break
			} else if err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// maxLadder steps the offered load of non-streaming chat up, path by path in
// alternation, until each path fails a step; alive tells which paths still
// passed at the top of the ladder. A step is either one measurement per path,
// tried once more when it fails so that a single noisy step on a shared
// machine does not end the path, or with --max-rounds N (3 or more) N
// alternating rounds per path, judged by the median of their p99s.
func maxLadder(ctx context.Context, o *options, ts []*target, prog *progress) (mr *MaxResult, alive []bool) {
	mr = &MaxResult{BoundUS: float64(o.P99Bound) / 1e3, Highest: map[string]float64{}}
	if o.MaxRounds >= 3 {
		mr.Rounds = o.MaxRounds
	}
	alive = make([]bool, len(ts))
	for i := range alive {
		alive[i] = true
	}
	for step, rate := range maxRates(o.MaxStart, o.MaxFactor, o.MaxLimit) {
		var idx []int
		for j := range ts {
			if i := (j + step) % len(ts); alive[i] {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 || ctx.Err() != nil {
			break
		}
		spec := loadSpec{Kind: kindChat, Rate: rate, Duration: o.Step, Conns: o.Conns,
			MaxTokens: o.MaxTokens, Timeout: o.Timeout, Spin: o.Spin}
		var steps []MaxStep
		if mr.Rounds > 0 {
			steps = maxStepRounds(ctx, o, ts, idx, spec, prog)
		} else {
			steps = maxStepTries(ctx, o, ts, idx, spec, prog)
		}
		for k, ms := range steps {
			i := idx[k]
			mr.Steps = append(mr.Steps, ms)
			if ms.Pass {
				mr.Highest[ts[i].Name] = rate
				continue
			}
			alive[i] = false
			if _, ok := mr.Highest[ts[i].Name]; !ok {
				mr.Highest[ts[i].Name] = 0
			}
		}
	}
	return mr, alive
}

// maxStepTries measures each path in idx once at spec's rate, and once more
// when that fails.
func maxStepTries(ctx context.Context, o *options, ts []*target, idx []int, spec loadSpec, prog *progress) []MaxStep {
	spec.Warmup = min(o.Warmup, 500*time.Millisecond)
	out := make([]MaxStep, 0, len(idx))
	for _, i := range idx {
		var ms MaxStep
		var retried int64
		for try := 0; try < 2; try++ {
			if try > 0 {
				retried += ms.Errors + ms.WarmupErrors
			}
			s := spec
			ms = maxStep(ts[i].Name, spec.Rate, runLoadSampled(ctx, ts[i], &s, prog), o.P99Bound)
			if ms.Pass || ctx.Err() != nil {
				break
			}
		}
		ms.RetriedErrors = retried
		out = append(out, ms)
	}
	return out
}

// maxStepRounds measures the paths in idx in o.MaxRounds alternating rounds of
// spec's duration each (as measure does) and judges each path by the median of
// its rounds' p99s.
func maxStepRounds(ctx context.Context, o *options, ts []*target, idx []int, spec loadSpec, prog *progress) []MaxStep {
	paths := make([]*target, len(idx))
	for k, i := range idx {
		paths[k] = ts[i]
	}
	total := alternate(ctx, paths, o.MaxRounds, func(_, r int) loadSpec {
		s := spec
		s.Warmup = min(o.Warmup, 100*time.Millisecond)
		if r == 0 {
			s.Warmup = min(o.Warmup, 500*time.Millisecond)
		}
		return s
	}, prog)
	out := make([]MaxStep, len(paths))
	for k, t := range paths {
		out[k] = maxStep(t.Name, spec.Rate, total[k], o.P99Bound)
	}
	return out
}

// maxStep is one path's result at one offered load; the median of round p99s
// is there when st holds three rounds or more.
func maxStep(path string, rate float64, st *runStats, bound time.Duration) MaxStep {
	sum := summarize(st.Lat)
	sum.RoundP99 = medianRoundP99(st.roundP99[0])
	errs := st.Errs.Total()
	lag := summarize(st.Lag)
	ms := MaxStep{Path: path, Offered: rate, Latency: sum, Errors: errs, WarmupErrors: st.WarmupErrs.Total(),
		Pass: maxStepOK(sum, st.Measured, errs, bound), SendLagP99US: lag.P99}
	ms.LoadgenLimited = !ms.Pass && loadgenBehind(lag, sum)
	if u, k, ok := st.cpuPerRequest(); ok {
		ms.CPUUS = ptr(u + k)
	}
	return ms
}

// cappedNotes flags each proxy whose highest rate reached direct's: mockllm or
// the load generator then limited that path as much as the proxy did, and the
// proxies' comparison says little.
func cappedNotes(mr *MaxResult) []string {
	d, ok := mr.Highest[pathDirect]
	if !ok {
		return nil
	}
	var out []string
	for _, p := range []string{pathTollgate, pathNginx} {
		if h, ok := mr.Highest[p]; ok && h > 0 && h >= d {
			out = append(out, p+" sustained as much as direct ("+frate(h)+" req/s): mockllm or the load generator may have limited it as much as the proxy did; with --pin, give them more cores (--upstream-cores, or a smaller --gateway-cores)")
		}
	}
	return out
}
