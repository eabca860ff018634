package main

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// firstCPUs is CPUs 0..n-1, the affinity of a process free to run anywhere.
func firstCPUs(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestPlanCores(t *testing.T) {
	cases := []struct {
		name   string
		cpus   []int
		pin    bool
		gw, up int
		want   CoreMap
	}{
		{"not asked", firstCPUs(16), false, 1, 0, CoreMap{GatewayCores: 16}},
		{"two cores are too few", firstCPUs(2), true, 1, 0, CoreMap{GatewayCores: 2,
			Note: "--pin needs at least 3 cores for upstream (1), gateway (1) and load generator; this process may run on 2"}},
		{"three cores", firstCPUs(3), true, 1, 0, CoreMap{Pinned: true, Upstream: "0", Gateway: "1", Loadgen: "2", GatewayCores: 1, UpstreamCores: 1}},
		{"four cores: the upstream gets one of the three left", firstCPUs(4), true, 1, 0, CoreMap{Pinned: true, Upstream: "0", Gateway: "1", Loadgen: "2-3", GatewayCores: 1, UpstreamCores: 1}},
		{"sixteen cores, two for the gateway: the upstream gets twice that", firstCPUs(16), true, 2, 0,
			CoreMap{Pinned: true, Upstream: "0-3", Gateway: "4-5", Loadgen: "6-15", GatewayCores: 2, UpstreamCores: 4}},
		{"sixteen cores, four for the gateway: the upstream gets half of the twelve left", firstCPUs(16), true, 4, 0,
			CoreMap{Pinned: true, Upstream: "0-5", Gateway: "6-9", Loadgen: "10-15", GatewayCores: 4, UpstreamCores: 6}},
		{"upstream cores given", firstCPUs(16), true, 4, 1, CoreMap{Pinned: true, Upstream: "0", Gateway: "1-4", Loadgen: "5-15", GatewayCores: 4, UpstreamCores: 1}},
		{"upstream cores given leave none for the load generator", firstCPUs(8), true, 2, 6, CoreMap{GatewayCores: 8,
			Note: "--pin needs at least 9 cores for upstream (6), gateway (2) and load generator; this process may run on 8"}},
		{"zero gateway cores means one", firstCPUs(8), true, 0, 0, CoreMap{Pinned: true, Upstream: "0-1", Gateway: "2", Loadgen: "3-7", GatewayCores: 1, UpstreamCores: 2}},
		// A container limited to cpuset 4-7: CPU 0 is not this process's to give.
		{"cpuset 4-7: the cores are the allowed ones", []int{4, 5, 6, 7}, true, 1, 0,
			CoreMap{Pinned: true, Upstream: "4", Gateway: "5", Loadgen: "6-7", GatewayCores: 1, UpstreamCores: 1}},
		{"cpuset with holes: lists, not ranges across them", []int{1, 3, 4, 5, 8, 9, 12}, true, 2, 0,
			CoreMap{Pinned: true, Upstream: "1,3", Gateway: "4-5", Loadgen: "8-9,12", GatewayCores: 2, UpstreamCores: 2}},
		{"cpuset 4-7 unpinned counts its cores", []int{4, 5, 6, 7}, false, 1, 0, CoreMap{GatewayCores: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := planCores(tc.cpus, tc.pin, tc.gw, tc.up); got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// allowedCPUs is this process's affinity: every CPU in it is one taskset may
// pin to, and there are as many as Go counts (runtime.NumCPU reads the same mask).
func TestAllowedCPUsIsTheAffinityMask(t *testing.T) {
	cpus := allowedCPUs()
	if len(cpus) != runtime.NumCPU() {
		t.Fatalf("allowedCPUs %v: %d CPUs, runtime.NumCPU %d", cpus, len(cpus), runtime.NumCPU())
	}
	for i := 1; i < len(cpus); i++ {
		if cpus[i] <= cpus[i-1] {
			t.Fatalf("allowedCPUs %v not ascending", cpus)
		}
	}
	if cpuCount(cpuList(cpus)) != len(cpus) {
		t.Fatalf("cpuList(%v) = %q counts %d", cpus, cpuList(cpus), cpuCount(cpuList(cpus)))
	}
}

func TestCPUCount(t *testing.T) {
	cases := []struct {
		list string
		want int
	}{{"3", 1}, {"2-15", 14}, {"5-5", 1}, {cpuList([]int{1, 2, 3, 4}), 4}, {"0-3,6,8-9", 7}, {cpuList([]int{0, 2, 4, 5}), 4}}
	for _, tc := range cases {
		t.Run(tc.list, func(t *testing.T) {
			if got := cpuCount(tc.list); got != tc.want {
				t.Fatalf("cpuCount(%q) = %d, want %d", tc.list, got, tc.want)
			}
		})
	}
}

func TestMaxRates(t *testing.T) {
	cases := []struct {
		name                 string
		start, factor, limit float64
		want                 []float64
	}{
		{"doubling", 100, 2, 1000, []float64{100, 200, 400, 800}},
		{"limit included", 100, 2, 800, []float64{100, 200, 400, 800}},
		{"rounded, no repeats", 1, 1.3, 4, []float64{1, 2, 3, 4}},
		{"start above limit", 500, 2, 100, nil},
		// The limit bounds the rate offered, the rounded one: 100×1.1 is
		// 110.00000000000001 and must not drop the step on the limit, and
		// 120.55 offers 121, over a limit of 120.6.
		{"step on the limit despite float error", 100, 1.1, 110, []float64{100, 110}},
		{"rounded step over the limit left out", 100, 1.2055, 120.6, []float64{100}},
		// Neither grows: the loop must end all the same (it used to spin forever
		// on a start of 0, counting only the rates it kept).
		{"zero start", 0, 2, 1000, nil},
		{"negative start", -100, 2, 1000, nil},
		{"factor of one", 100, 1, 1000, nil},
		{"factor barely above one ends on its iterations", 100, 1.0000001, 1000, []float64{100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := maxRates(tc.start, tc.factor, tc.limit)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestMaxStepOK(t *testing.T) {
	bound := 5 * time.Millisecond
	cases := []struct {
		name           string
		s              Summary
		measured, errs int64
		want           bool
	}{
		{"under bound", Summary{Count: 100, P99: 4999}, 1000, 0, true},
		{"at bound", Summary{Count: 100, P99: 5000}, 1000, 0, true},
		{"over bound", Summary{Count: 100, P99: 5001}, 1000, 0, false},
		{"0.1 % errors allowed", Summary{Count: 100, P99: 100}, 1000, 1, true},
		{"more errors fail", Summary{Count: 100, P99: 100}, 1000, 2, false},
		{"nothing measured", Summary{}, 0, 0, false},
		{"median of rounds under bound, merged p99 over", Summary{Count: 100, P99: 9000, RoundP99: ptr(4000.0)}, 1000, 0, true},
		{"median of rounds over bound, merged p99 under", Summary{Count: 100, P99: 4000, RoundP99: ptr(5001.0)}, 1000, 0, false},
		{"median of rounds does not excuse errors", Summary{Count: 100, P99: 100, RoundP99: ptr(100.0)}, 1000, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := maxStepOK(tc.s, tc.measured, tc.errs, bound); got != tc.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestStreamsTokens(t *testing.T) {
	// 5 s ramp + 5 s hold + 2 s margin at 500 ms per token.
	if got := streamsTokens(5*time.Second, 5*time.Second); got != 25 {
		t.Fatalf("got %d", got)
	}
}

func TestParseVmRSS(t *testing.T) {
	cases := []struct {
		name, in string
		want     int64
		err      bool
	}{
		{"status file", "Name:\ttollgate\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads: 9\n", 12345, false},
		{"missing", "Name:\tx\n", 0, true},
		{"empty value", "VmRSS:\n", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS(strings.NewReader(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %d, %v", got, err)
			}
		})
	}
}

func TestParseGauge(t *testing.T) {
	body := []byte("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\n" +
		"go_goroutines_extra 5\ngo_goroutines 1234\nx{a=\"b\"} 2\n")
	cases := []struct {
		name, gauge string
		want        int64
		err         bool
	}{
		{"plain", "go_goroutines", 1234, false},
		{"labelled", "x", 2, false},
		{"prefix is not a match", "go_gorout", 0, true},
		{"absent", "nope", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseGauge(body, tc.gauge)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %d, %v", got, err)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		check func(*options) bool
		err   bool
	}{
		{"defaults", nil, func(o *options) bool {
			return o.Rate == 1000 && o.Out == "bench/results" && len(o.Paths) == 3 && o.Scenarios[0] == "chat"
		}, false},
		{"smoke is short and writes nothing", []string{"--smoke"}, func(o *options) bool {
			return o.Smoke && o.Rate == 50 && o.Duration == time.Second && o.Out == "" &&
				strings.Join(o.Scenarios, ",") == strings.Join(scenarioNames, ",") &&
				o.MaxStart == 50 && o.MaxLimit == 100 && o.Step == 500*time.Millisecond
		}, false},
		{"smoke keeps explicit flags", []string{"--smoke", "--rate", "10", "--out", "x"}, func(o *options) bool {
			return o.Rate == 10 && o.Out == "x"
		}, false},
		{"all scenarios", []string{"--scenario", "all"}, func(o *options) bool { return len(o.Scenarios) == len(scenarioNames) }, false},
		{"unknown scenario", []string{"--scenario", "nope"}, nil, true},
		{"unknown path", []string{"--paths", "direct,envoy"}, nil, true},
		{"bad rate", []string{"--rate", "0"}, nil, true},
		{"max in rounds", []string{"--scenario", "max", "--max-rounds", "5"}, func(o *options) bool { return o.MaxRounds == 5 }, false},
		{"max rounds default to one", nil, func(o *options) bool { return o.MaxRounds == 1 }, false},
		{"two rounds have no median", []string{"--max-rounds", "2"}, nil, true},
		{"zero rounds", []string{"--max-rounds", "0"}, nil, true},
		{"stray argument", []string{"chat"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if err == nil && !tc.check(o) {
				t.Fatalf("options %+v", o)
			}
		})
	}
}

// A --max-start of 0 or less never grows (maxRates used to spin forever on it,
// after every process was started), and one above --max-limit leaves the ladder
// without a step (and plotMax used to panic on the empty plot): parseFlags
// refuses both.
func TestParseFlagsRefusesMaxLadderWithoutSteps(t *testing.T) {
	cases := []struct {
		name string
		args []string
		ok   bool
	}{
		{"zero start", []string{"--max-start", "0"}, false},
		{"negative start", []string{"--max-start", "-100"}, false},
		{"start above limit", []string{"--max-start", "1000", "--max-limit", "100"}, false},
		{"smoke with a start above its limit", []string{"--smoke", "--max-start", "500"}, false},
		{"start equal to limit: one step", []string{"--max-start", "100", "--max-limit", "100"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--scenario", "max"}, tc.args...))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("accepted (max-start %v, max-limit %v), want an error", o.MaxStart, o.MaxLimit)
			}
		})
	}
}

func TestCommandNamesTheBaselineStack(t *testing.T) {
	t.Setenv("TOLLGATE_BASELINE", "fasthttp")
	o, err := parseFlags([]string{"--scenario", "max", "--tollgate-bin", "/tmp/baseline"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "TOLLGATE_BASELINE=fasthttp go run ./bench --scenario max --tollgate-bin /tmp/baseline"; o.command != want {
		t.Fatalf("command %q, want %q", o.command, want)
	}
	// Without --tollgate-bin the gateway is built from the checkout and the variable
	// means nothing.
	if o, err = parseFlags([]string{"--scenario", "max"}); err != nil || o.command != "go run ./bench --scenario max" {
		t.Fatalf("command %q, %v", o.command, err)
	}
}

func TestTicks125(t *testing.T) {
	cases := []struct {
		name   string
		lo, hi float64
		labels string
	}{
		{"one decade", 400, 2500, "500,1000,2000"},
		{"latency decades", 80, 12000, "100,200,500,1000,2000,5000,10000"},
		{"empty range", 5, 5, ""},
		{"non-positive", 0, 10, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, tk := range (ticks125{}).Ticks(tc.lo, tc.hi) {
				if tk.Value < tc.lo || tk.Value > tc.hi {
					t.Fatalf("tick %v outside [%v, %v]", tk.Value, tc.lo, tc.hi)
				}
				if tk.Label != "" {
					got = append(got, tk.Label)
				}
			}
			if strings.Join(got, ",") != tc.labels {
				t.Fatalf("labels %v, want %s", got, tc.labels)
			}
		})
	}
}

func TestScriptCalls(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_ping:calls=3,usec=4,usec_per_call=1.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=9015,usec=366225,usec_per_call=40.62,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_eval:calls=2,usec=100,usec_per_call=50.00,rejected_calls=0,failed_calls=1\r\n" +
		"cmdstat_evalsha_ro:calls=7,usec=1\r\n"
	if got := scriptCalls(info); got != 9017 {
		t.Fatalf("scriptCalls = %d, want 9017", got)
	}
	if got := scriptCalls(""); got != 0 {
		t.Fatalf("scriptCalls of nothing = %d", got)
	}
}
