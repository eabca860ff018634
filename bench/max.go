package main

import (
	"context"
	"math"
	"path/filepath"
	"time"
)

// maxStepOK is the sustainability rule of the max scenario: p99 within the
// bound and at most 0.1 % failed requests.
func maxStepOK(s Summary, measured, errs int64, bound time.Duration) bool {
	if s.Count == 0 || measured == 0 {
		return false
	}
	return s.P99 <= float64(bound)/1e3 && errs*1000 <= measured
}

// maxRates is the ladder of offered loads: start, start×factor, … up to
// limit, rounded to whole requests per second.
func maxRates(start, factor, limit float64) []float64 {
	var out []float64
	for r := start; r <= limit && len(out) < 200; r *= factor {
		v := math.Round(r)
		if len(out) == 0 || v > out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

// runMax steps the offered load of non-streaming chat up, path by path in
// alternation, until each path's p99 crosses the bound; a path that fails a
// step gets one second try at the same load so a single noisy step on a
// shared machine does not end it. Then it measures all paths at half of
// Tollgate's highest sustainable rate, where the added latency is read.
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
	mr := &MaxResult{BoundUS: float64(o.P99Bound) / 1e3, Highest: map[string]float64{}}
	alive := make([]bool, len(ts))
	for i := range alive {
		alive[i] = true
	}
	for step, rate := range maxRates(o.MaxStart, o.MaxFactor, o.MaxLimit) {
		ran := false
		for j := range ts {
			i := (j + step) % len(ts)
			if !alive[i] || ctx.Err() != nil {
				continue
			}
			ran = true
			var ms MaxStep
			for try := 0; try < 2; try++ {
				spec := loadSpec{Kind: kindChat, Rate: rate, Warmup: min(o.Warmup, 500*time.Millisecond),
					Duration: o.Step, Conns: o.Conns, MaxTokens: o.MaxTokens, Timeout: o.Timeout, Spin: o.Spin}
				st := runLoadSampled(ctx, ts[i], &spec, prog)
				sum := summarize(st.Lat)
				errs := st.Errs.Total()
				ms = MaxStep{Path: ts[i].Name, Offered: rate, Latency: sum, Errors: errs,
					Pass: maxStepOK(sum, st.Measured, errs, o.P99Bound)}
				if u, k, ok := st.cpuPerRequest(); ok {
					ms.CPUUS = ptr(u + k)
				}
				if ms.Pass || ctx.Err() != nil {
					break
				}
			}
			mr.Steps = append(mr.Steps, ms)
			if ms.Pass {
				mr.Highest[ts[i].Name] = rate
			} else {
				alive[i] = false
				if _, ok := mr.Highest[ts[i].Name]; !ok {
					mr.Highest[ts[i].Name] = 0
				}
			}
		}
		if !ran || ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for i, t := range ts {
		if alive[i] {
			res.Notes = append(res.Notes, t.Name+" still met the bound at --max-limit; its highest rate is a lower bound")
		}
	}
	res.Max = mr
	if half := mr.Highest[pathTollgate] / 2; half > 0 {
		mr.HalfRate = math.Round(half)
		spec := loadSpec{Kind: kindChat, Rate: mr.HalfRate, Conns: o.Conns, MaxTokens: o.MaxTokens,
			Timeout: o.Timeout, Spin: o.Spin}
		res.Paths = measure(ctx, o, ts, spec, prog)
		res.Compare = compare(res.Paths)
		res.Settings.Rate = mr.HalfRate
	}
	if o.Out != "" {
		stamped, latest := resultFiles(o.Out, "max", res.Started)
		for _, f := range []string{stamped + ".svg", latest + ".svg"} {
			if err := plotMax(mr, f); err != nil {
				return nil, err
			}
		}
		mr.Plot = filepath.Base(stamped) + ".svg"
	}
	return res, nil
}
