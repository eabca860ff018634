// Command bench is Tollgate's load harness: it starts mockllm, the gateway
// and nginx, drives the same open-loop load through each in alternating
// rounds, and reports the latency each path adds.
//
//	go run ./bench --scenario chat
//	go run ./bench --smoke
//
// See bench/README.md for every scenario and what each figure means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	Scenarios    []string
	Rate         float64
	Duration     time.Duration
	Warmup       time.Duration
	Rounds       int
	Conns        int
	Clients      int
	Timeout      time.Duration
	MaxTokens    int
	TTFT, TPOT   time.Duration
	Smoke        bool
	Out          string
	Pin          bool
	GatewayCore  int
	UpstreamCore int
	Spin         time.Duration
	Paths        []string
	Quiet        bool
	Keep         bool

	P99Bound  time.Duration
	MaxStart  float64
	MaxFactor float64
	MaxLimit  float64
	Step      time.Duration
	MaxRounds int

	Streams    int
	StreamRate float64
	Hold       time.Duration

	MockllmBin, TollgateBin, NginxBin string
	Prefetch                          string

	command string
}

var scenarioNames = []string{"chat", "stream", "embeddings", "responses", "rerank", "messages", "redis-limits", "limits-throughput", "tracing", "ab", "max", "streams-10k"}

func (o *options) wantsPath(p string) bool { return slices.Contains(o.Paths, p) }

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	scen := fs.String("scenario", "chat", "scenario(s), comma-separated: "+strings.Join(scenarioNames, ", ")+", or all")
	fs.Float64Var(&o.Rate, "rate", 1000, "offered load, requests per second (open loop)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per path, split over --rounds")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before each path's first round")
	fs.IntVar(&o.Rounds, "rounds", 5, "alternating rounds (direct, tollgate, nginx, …) per path")
	fs.IntVar(&o.Conns, "connections", 256, "connections (and workers) per path")
	fs.IntVar(&o.Clients, "clients", 64, "limits-throughput: closed-loop clients (and connections) per path")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&o.MaxTokens, "max-tokens", 16, "completion tokens per answer: the request's max_tokens (mockllm's cap is twice it, so every answer is this long)")
	fs.DurationVar(&o.TTFT, "ttft", 5*time.Millisecond, "mockllm time to first token in the stream scenario (0 elsewhere)")
	fs.DurationVar(&o.TPOT, "tpot", time.Millisecond, "mockllm time per output token in the stream scenario (0 elsewhere)")
	fs.BoolVar(&o.Smoke, "smoke", false, "every scenario briefly on all paths at a low rate (about a minute); exit 1 on any error")
	fs.StringVar(&o.Out, "out", "bench/results", "directory for the Markdown, JSON and SVG results")
	fs.BoolVar(&o.Pin, "pin", false, "pin upstream, gateway/nginx and load generator to separate cores (taskset)")
	fs.IntVar(&o.GatewayCore, "gateway-cores", 1, "cores given to the gateway (and to nginx) with --pin")
	fs.IntVar(&o.UpstreamCore, "upstream-cores", 0, "cores given to mockllm (and redis-server) with --pin; 0: twice --gateway-cores, at most half of the cores the gateway leaves")
	fs.DurationVar(&o.Spin, "spin", 0, "busy-wait this long before each send for µs pacing precision (costs a core)")
	paths := fs.String("paths", "direct,tollgate,nginx", "paths to measure")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress line")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (configs, process logs)")
	fs.DurationVar(&o.P99Bound, "p99-bound", 5*time.Millisecond, "max: the p99 a sustainable rate must stay under")
	fs.Float64Var(&o.MaxStart, "max-start", 500, "max: first offered load, req/s")
	fs.Float64Var(&o.MaxFactor, "max-factor", 1.25, "max: each step multiplies the load by this")
	fs.Float64Var(&o.MaxLimit, "max-limit", 200000, "max: stop stepping here, req/s")
	fs.DurationVar(&o.Step, "step", 2*time.Second, "max: measured time per path per step (per round with --max-rounds)")
	fs.IntVar(&o.MaxRounds, "max-rounds", 1, "max: alternating rounds per path per step, judged by the median of their p99s (1, or 3 and more)")
	fs.IntVar(&o.Streams, "streams", 10000, "streams-10k: concurrent streams")
	fs.Float64Var(&o.StreamRate, "stream-rate", 2000, "streams-10k: new streams per second while ramping up")
	fs.DurationVar(&o.Hold, "hold", 5*time.Second, "streams-10k: how long all streams stay open after the ramp")
	fs.StringVar(&o.MockllmBin, "mockllm-bin", "", "use this mockllm instead of building ./cmd/mockllm")
	fs.StringVar(&o.TollgateBin, "tollgate-bin", "", "use this tollgate instead of building ./cmd/tollgate")
	fs.StringVar(&o.Prefetch, "prefetch", "", "redis-limits, limits-throughput: the gateway's limiter.prefetch (0s: every check goes to Redis); empty keeps the default")
	fs.StringVar(&o.NginxBin, "nginx-bin", "/usr/sbin/nginx", "nginx binary (installed with apt-get when missing)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.Paths = splitList(*paths)
	for _, p := range o.Paths {
		if p != pathDirect && p != pathTollgate && p != pathNginx {
			return nil, fmt.Errorf("--paths: unknown path %q (direct, tollgate, nginx)", p)
		}
	}
	if *scen == "all" {
		o.Scenarios = slices.Clone(scenarioNames)
	} else {
		o.Scenarios = splitList(*scen)
	}
	if o.Smoke {
		// Every scenario and path, each for a few seconds, so that none rots
		// unrun; the max ladder climbs two low steps.
		if !set["scenario"] {
			o.Scenarios = slices.Clone(scenarioNames)
		}
		if !set["max-start"] {
			o.MaxStart = 50
		}
		if !set["max-limit"] {
			o.MaxLimit = 100
		}
		if !set["step"] {
			o.Step = 500 * time.Millisecond
		}
		if !set["rate"] {
			o.Rate = 50
		}
		if !set["duration"] {
			o.Duration = time.Second
		}
		if !set["warmup"] {
			o.Warmup = 200 * time.Millisecond
		}
		if !set["rounds"] {
			o.Rounds = 2
		}
		if !set["connections"] {
			o.Conns = 16
		}
		if !set["out"] {
			o.Out = ""
		}
		if !set["streams"] {
			o.Streams = 200
		}
		if !set["hold"] {
			o.Hold = time.Second
		}
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(scenarioNames, s) {
			return nil, fmt.Errorf("--scenario: unknown %q (%s)", s, strings.Join(scenarioNames, ", "))
		}
	}
	switch {
	case o.Rate <= 0:
		return nil, errors.New("--rate must be > 0")
	case o.Duration <= 0:
		return nil, errors.New("--duration must be > 0")
	case o.Rounds < 1:
		return nil, errors.New("--rounds must be >= 1")
	case o.Conns < 1 || o.Clients < 1:
		return nil, errors.New("--connections and --clients must be >= 1")
	case o.MaxStart <= 0:
		return nil, errors.New("--max-start must be > 0")
	case o.MaxFactor <= 1:
		return nil, errors.New("--max-factor must be > 1")
	case o.MaxStart > o.MaxLimit:
		return nil, fmt.Errorf("--max-start (%s) must be <= --max-limit (%s): the max ladder would have no step", frate(o.MaxStart), frate(o.MaxLimit))
	case o.MaxRounds < 1 || o.MaxRounds == 2:
		return nil, errors.New("--max-rounds must be 1, or 3 or more (a median needs three rounds)")
	case o.Streams < 1 || o.StreamRate <= 0:
		return nil, errors.New("--streams and --stream-rate must be > 0")
	}
	o.command = "go run ./bench " + strings.Join(args, " ")
	// bench/baseline, run as --tollgate-bin, picks its stack from the environment.
	if mode := os.Getenv("TOLLGATE_BASELINE"); mode != "" && o.TollgateBin != "" {
		o.command = "TOLLGATE_BASELINE=" + mode + " " + o.command
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		logf("%v", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cores := planCores(allowedCPUs(), o.Pin, o.GatewayCore, o.UpstreamCore)
	if cores.Note != "" {
		logf("%s", cores.Note)
	}
	logf("cores: %s", cores)
	buildDir, err := os.MkdirTemp("", "tollgate-bench-bin-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	b, err := prepareBins(o, buildDir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	// Pin only after building: the compiler should not be squeezed onto
	// the load generator's cores.
	if err := pinSelf(cores); err != nil {
		logf("%v", err)
		return 1
	}
	prog := newProgress(o.Quiet)
	failed := false
	for _, name := range o.Scenarios {
		if ctx.Err() != nil {
			break
		}
		logf("scenario %s", name)
		res, err := runScenario(ctx, o, b, cores, prog, name)
		if err != nil {
			logf("scenario %s: %v", name, err)
			failed = true
			continue
		}
		fmt.Println(res.markdown())
		if o.Out != "" {
			files, err := res.write(o.Out)
			if err != nil {
				logf("writing results: %v", err)
				failed = true
			}
			for _, f := range files {
				logf("wrote %s", f)
			}
		}
		if n := res.errorCount(); n > 0 {
			logf("scenario %s: %d failed requests", name, n)
			if o.Smoke {
				failed = true
			}
		}
	}
	if ctx.Err() != nil {
		logf("interrupted")
		return 130
	}
	if failed {
		return 1
	}
	return 0
}

// errorCount is every failed request of the run, on every path: warm-ups
// included, and every step of the max ladder, a first try included.
func (r *Result) errorCount() int64 {
	var n int64
	for _, p := range r.Paths {
		n += p.Errors.Total() + p.WarmupErrors.Total()
	}
	if r.Max != nil {
		for _, s := range r.Max.Steps {
			n += s.Errors + s.WarmupErrors + s.RetriedErrors
		}
	}
	for _, s := range r.Streams {
		n += s.Errors.Total()
	}
	return n
}
