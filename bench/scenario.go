package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// scenario is what differs between the fixed-rate scenarios.
type scenario struct {
	name    string
	kind    reqKind
	redis   bool // two Redis-backed limits on the chat endpoint
	tracing bool // OTLP export at ratio 0.1 to a local receiver
	ab      bool // two upstreams, 95/5 sticky split with a canary
	// baseline adds a tollgate-base path: the same gateway without the
	// feature, so the feature's own cost is measured in the same run.
	baseline bool
	// proxyConns is how many connections nginx must hold at once; 0 means
	// enough for --connections.
	proxyConns int
	// memoryBase gives tollgate-base the same limits in the memory store, so
	// that tollgate (redis store) is compared with it.
	memoryBase bool
	// closed runs --clients closed-loop clients per path instead of the
	// fixed rate: the figure is each path's achieved rate.
	closed bool
}

func lookupScenario(name string) scenario {
	switch name {
	case "stream":
		return scenario{name: name, kind: kindStream}
	case "embeddings":
		return scenario{name: name, kind: kindEmbeddings}
	case "responses":
		return scenario{name: name, kind: kindResponses}
	case "rerank":
		return scenario{name: name, kind: kindRerank}
	case "messages":
		return scenario{name: name, kind: kindMessages}
	case "redis-limits":
		return scenario{name: name, kind: kindChat, redis: true, baseline: true}
	case "limits-throughput":
		return scenario{name: name, kind: kindChat, redis: true, baseline: true, memoryBase: true, closed: true}
	case "tracing":
		return scenario{name: name, kind: kindChat, tracing: true, baseline: true}
	case "ab":
		return scenario{name: name, kind: kindChat, ab: true}
	default:
		return scenario{name: name, kind: kindChat}
	}
}

// abUsers is how many distinct X-User-ID values the ab scenario cycles.
const abUsers = 10000

func runScenario(ctx context.Context, o *options, b *bins, cores CoreMap, prog *progress, name string) (*Result, error) {
	switch name {
	case "max":
		return runMax(ctx, o, b, cores, prog)
	case "streams-10k":
		return runStreams(ctx, o, b, cores, prog)
	}
	sc := lookupScenario(name)
	timing := upstreamTiming{MaxTokens: upstreamCap(o.MaxTokens)}
	if sc.kind == kindStream {
		timing.TTFT, timing.TPOT = o.TTFT, o.TPOT
	}
	e, err := newEnv(o, b, cores)
	if err != nil {
		return nil, err
	}
	defer e.close()
	ts, err := e.setup(ctx, sc, timing)
	if err != nil {
		return nil, err
	}
	res := newResult(o, cores, name, timing)
	spec := loadSpec{Kind: sc.kind, Rate: o.Rate, Conns: o.Conns, MaxTokens: o.MaxTokens,
		Timeout: o.Timeout, Spin: o.Spin}
	if sc.closed {
		spec.Closed, spec.Conns, spec.Rate = true, o.Clients, 0
		res.Settings.Rate, res.Settings.Connections, res.Settings.Closed = 0, o.Clients, true
	}
	var calls0 int64
	if sc.redis {
		calls0 = e.redisScriptCalls(ctx)
	}
	switch {
	case sc.ab:
		spec.Users, spec.CountHeader = abUsers, "x-tollgate-variant"
	case sc.redis:
		// Tallied to show the limits were applied on every request.
		spec.CountHeader = "x-ratelimit-limit-requests"
	}
	res.Paths = measure(ctx, o, ts, spec, prog)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Compare = compare(res.Paths)
	if sc.tracing && e.otlp != nil {
		// Stop the gateways first: their exporters flush on shutdown.
		for i := len(e.procs) - 1; i >= 0; i-- {
			if e.procs[i].name == pathTollgate || e.procs[i].name == pathBase {
				e.procs[i].stop(10 * time.Second)
			}
		}
		var measured, sent int64
		for _, p := range res.Paths {
			if p.Path == pathTollgate {
				measured, sent = p.Measured, p.Sent
			}
		}
		res.Extra = map[string]float64{
			"otlp_spans_received":        float64(e.otlp.spans.Load()),
			"otlp_export_calls":          float64(e.otlp.exports.Load()),
			"tollgate_measured_requests": float64(measured),
			"tollgate_sent_requests":     float64(sent),
		}
		if sent > 0 {
			// Every request the gateway served exported its spans, the warm-up's
			// and the probe's too.
			res.Extra["otlp_spans_per_request"] = float64(e.otlp.spans.Load()) / float64(sent+1)
		}
		res.Notes = append(res.Notes, "otlp_spans_per_request divides the spans received by every request the gateway served (warm-up and the probe included); at sample_ratio 0.1 expect about 0.1 × spans per trace")
	}
	if sc.ab {
		res.Notes = append(res.Notes, fmt.Sprintf("X-User-ID cycles over %d users; tollgate splits 95/5 sticky with a canary at its first step, nginx with split_clients on the same header", abUsers))
	}
	prefetch := "limiter.prefetch " + o.Prefetch
	if o.Prefetch == "" {
		prefetch = "limiter.prefetch at its default (checks far from the limit are answered from units prefetched from Redis)"
	}
	if sc.redis && !sc.memoryBase {
		res.Notes = append(res.Notes, "tollgate checks two buckets (requests and tokens, per endpoint) in the redis store on every request, "+prefetch+"; tollgate-base is the same gateway with no limits")
	}
	var tg *PathResult
	for i := range res.Paths {
		if res.Paths[i].Path == pathTollgate {
			tg = &res.Paths[i]
		}
	}
	if sc.redis {
		if calls := e.redisScriptCalls(ctx); tg != nil && calls > calls0 && tg.Sent > 0 {
			// Every request of the tollgate path is counted (warm-up too).
			res.Extra = map[string]float64{"redis_script_calls_per_1000_requests": 1000 * float64(calls-calls0) / float64(tg.Sent)}
		}
	}
	if sc.memoryBase {
		res.Notes = append(res.Notes, fmt.Sprintf("%d closed-loop clients per path; tollgate checks two buckets (requests and tokens, per endpoint) in the redis store on every request, %s; tollgate-base the same two in the memory store", o.Clients, prefetch))
		if res.Extra == nil {
			res.Extra = map[string]float64{}
		}
		var base *PathResult
		for i := range res.Paths {
			if res.Paths[i].Path == pathBase {
				base = &res.Paths[i]
			}
		}
		if tg != nil && base != nil && base.Achieved > 0 {
			res.Extra["redis_store_rps"] = tg.Achieved
			res.Extra["memory_store_rps"] = base.Achieved
			res.Extra["redis_over_memory_throughput"] = tg.Achieved / base.Achieved
		}
	}
	return res, nil
}

func newResult(o *options, cores CoreMap, name string, t upstreamTiming) *Result {
	return &Result{
		Scenario: name,
		Started:  time.Now(),
		Command:  o.command,
		Machine:  machine(),
		Cores:    cores,
		Settings: Settings{
			Rate: o.Rate, Duration: o.Duration.String(), Warmup: o.Warmup.String(), Rounds: o.Rounds,
			Connections: o.Conns, MaxTokens: o.MaxTokens, TTFT: t.TTFT.String(), TPOT: t.TPOT.String(),
			Spin: o.Spin.String(),
		},
	}
}

// setup starts the upstream(s), the gateway(s) and nginx for sc, probes
// each path once, and returns the targets in report order.
func (e *env) setup(ctx context.Context, sc scenario, timing upstreamTiming) ([]*target, error) {
	o := e.o
	mock, upAddr, err := e.startMock(ctx, "mockllm", timing)
	if err != nil {
		return nil, err
	}
	gp := gwParams{Upstream: upAddr, UpstreamConns: sc.proxyConns}
	canaryAddr := ""
	if sc.ab {
		if _, canaryAddr, err = e.startMock(ctx, "mockllm-canary", timing); err != nil {
			return nil, err
		}
		gp.Canary = canaryAddr
	}
	if sc.redis {
		if gp.RedisURL, err = e.startRedis(ctx); err != nil {
			return nil, err
		}
		gp.Prefetch = o.Prefetch
	}
	if sc.tracing {
		if e.otlp, err = startOTLP("127.0.0.1:0"); err != nil {
			return nil, err
		}
		gp.OTLPEndpoint = e.otlp.addr()
	}
	model := gatewayModel(sc.kind)
	var ts []*target
	if o.wantsPath(pathDirect) {
		ts = append(ts, &target{Name: pathDirect, Addr: upAddr, Model: mockModel, Pid: mock.pid()})
	}
	if o.wantsPath(pathTollgate) {
		_, t, err := e.startGateway(ctx, pathTollgate, gp)
		if err != nil {
			return nil, err
		}
		t.Model = model
		ts = append(ts, t)
	}
	if o.wantsPath(pathNginx) {
		_, t, err := e.startNginx(ctx, nginxParams{Upstream: upAddr, Canary: canaryAddr,
			Stream: sc.kind == kindStream, MaxConns: max(sc.proxyConns, o.Conns*4)})
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	if sc.baseline && o.wantsPath(pathTollgate) {
		_, t, err := e.startGateway(ctx, pathBase, gwParams{Upstream: upAddr, MemoryLimits: sc.memoryBase})
		if err != nil {
			return nil, err
		}
		t.Model = model
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, errors.New("no paths to measure")
	}
	for _, t := range ts {
		if err := probe(t, sc.kind, o.MaxTokens); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// measure runs the same load through every target in alternating rounds
// (rotating the order each round, so no path always follows the same
// neighbour) and merges each path's rounds.
func measure(ctx context.Context, o *options, ts []*target, spec loadSpec, prog *progress) []PathResult {
	stream := spec.Kind == kindStream
	for _, t := range ts {
		if t.client != nil {
			t.client.CloseIdleConnections()
		}
		t.client = newClient(t.Addr, spec.Conns, spec.Timeout, stream, 0)
	}
	per := o.Duration / time.Duration(o.Rounds)
	nextUser := make([]int64, len(ts))
	total := alternate(ctx, ts, o.Rounds, func(i, r int) loadSpec {
		s := spec
		s.Duration = per
		s.Warmup = min(o.Warmup, 100*time.Millisecond)
		if r == 0 {
			s.Warmup = o.Warmup
		}
		s.FirstUser = nextUser[i]
		nextUser[i] += pacer{rate: s.Rate}.count(s.Warmup + s.Duration)
		return s
	}, prog)
	out := make([]PathResult, len(ts))
	for i, t := range ts {
		out[i] = pathResult(t.Name, spec.Rate, total[i], stream)
	}
	return out
}

// alternate runs rounds of load through ts, every path once per round, rotating
// the order each round so that no path always follows the same neighbour, and
// merges each path's rounds. spec is path i's load in round r.
func alternate(ctx context.Context, ts []*target, rounds int, spec func(i, r int) loadSpec, prog *progress) []*runStats {
	total := make([]*runStats, len(ts))
	for i := range total {
		total[i] = newRunStats()
	}
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		for j := range ts {
			i := (j + r) % len(ts)
			s := spec(i, r)
			total[i].merge(runLoadSampled(ctx, ts[i], &s, prog))
		}
	}
	return total
}

// runLoadSampled is runLoad with what the target's own process used meanwhile.
func runLoadSampled(ctx context.Context, t *target, spec *loadSpec, prog *progress) *runStats {
	before := sampleProc(t, false)
	st := runLoad(ctx, t, spec, prog)
	sampleProc(t, true).since(before, st)
	st.markRound()
	return st
}

// procSample is a path's own process at one moment: its CPU time and, for a Go
// process with an admin listener, its garbage collections so far.
type procSample struct {
	user, sys   time.Duration
	gc          int64
	cpuOK, gcOK bool
}

// sampleProc samples t's process before (after false) or after a round. The admin
// scrape for the GC count costs the gateway CPU of its own (about 2 ms), so it is
// taken outside the CPU window: before the CPU reading that opens it, after the one
// that closes it.
func sampleProc(t *target, after bool) procSample {
	var p procSample
	cpu := func() {
		if t.Pid > 0 {
			var err error
			p.user, p.sys, err = treeCPU(t.Pid)
			p.cpuOK = err == nil
		}
	}
	if after {
		cpu()
	}
	if t.AdminAddr != "" {
		var err error
		p.gc, err = readGCCycles(t.AdminAddr)
		p.gcOK = err == nil
	}
	if !after {
		cpu()
	}
	return p
}

// since records in st what the process used from before to p.
func (p procSample) since(before procSample, st *runStats) {
	st.rounds = 1
	if p.cpuOK && before.cpuOK {
		st.User, st.Sys = p.user-before.user, p.sys-before.sys
		st.cpuRounds = 1
	}
	if p.gcOK && before.gcOK {
		st.GCCycles = p.gc - before.gc
		st.gcRounds = 1
	}
}
