package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sum(p50, p99 float64) Summary {
	return Summary{Count: 1000, Mean: p50, P50: p50, P90: (p50 + p99) / 2, P99: p99, P999: p99 * 1.5, Max: p99 * 2}
}

func fixedResult() *Result {
	r := &Result{
		Scenario: "stream",
		Started:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Command:  "go run ./bench --scenario stream",
		Machine:  Machine{CPU: "Test CPU", Cores: 8, MemoryGiB: 16, Kernel: "6.1", GoVersion: "go1.26", GOMAXPROCS: 8},
		Settings: Settings{Rate: 1000, Duration: "10s", Warmup: "2s", Rounds: 5, Connections: 256, MaxTokens: 16,
			TTFT: "5ms", TPOT: "1ms", Spin: "0s"},
		Cores: planCores(firstCPUs(8), true, 2, 1),
		Paths: []PathResult{
			{Path: pathDirect, Offered: 1000, Achieved: 999.5, Measured: 10000, OK: 10000, Errors: Errors{},
				Latency: sum(100, 300), TTFT: ptr(sum(5100, 5300)), Gap: ptr(sum(1000, 1100)), SendLag: sum(50, 100),
				WorkerWait: sum(5, 10), Sent: 12000, CPU: &ProcCPU{UserUS: 20.5, SystemUS: 10.25}},
			{Path: pathTollgate, Offered: 1000, Achieved: 999.4, Measured: 10000, OK: 9999, Errors: Errors{"timeout": 1},
				Latency: sum(160, 700), TTFT: ptr(sum(5160, 5700)), Gap: ptr(sum(1010, 1150)), SendLag: sum(50, 100),
				WorkerWait: sum(5, 400), NoFreeWorker: 120,
				Headers: map[string]int64{"stable": 950, "canary": 50},
				Sent:    12000, CPU: &ProcCPU{UserUS: 19, SystemUS: 22, GCCycles: ptr(int64(3))}},
			{Path: pathNginx, Offered: 1000, Achieved: 999.5, Measured: 10000, OK: 10000, Errors: Errors{},
				Latency: sum(180, 900), TTFT: ptr(sum(5180, 5900)), Gap: ptr(sum(1020, 1200)), SendLag: sum(50, 100),
				WorkerWait: sum(5, 10)},
		},
		Extra: map[string]float64{"otlp_spans_received": 4000},
		Notes: []string{"a note"},
	}
	// The latency medians of round p99s; TTFT and gap have them for two paths only.
	r.Paths[0].Latency.RoundP99, r.Paths[1].Latency.RoundP99, r.Paths[2].Latency.RoundP99 = ptr(280.0), ptr(520.0), ptr(580.0)
	r.Paths[0].TTFT.RoundP99, r.Paths[1].TTFT.RoundP99 = ptr(5250.0), ptr(5500.0)
	return r
}

func TestCompare(t *testing.T) {
	r := fixedResult()
	got := compare(r.Paths)
	find := func(measure, label string) Comparison {
		for _, c := range got {
			if c.Measure == measure && c.Label == label {
				return c
			}
		}
		t.Fatalf("no %s / %s in %+v", measure, label, got)
		return Comparison{}
	}
	cases := []struct {
		name, measure, label string
		p50, p99             float64
	}{
		{"latency added by tollgate", "latency", "tollgate − direct", 60, 400},
		{"latency added by nginx", "latency", "nginx − direct", 80, 600},
		{"latency ratio", "latency", "tollgate / nginx", 160.0 / 180, 700.0 / 900},
		{"added ratio", "latency", "added: (tollgate − direct) / (nginx − direct)", 0.75, 400.0 / 600},
		{"ttft added", "ttft", "tollgate − direct", 60, 400},
		{"gap added", "inter-chunk gap", "tollgate − direct", 10, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := find(tc.measure, tc.label)
			if c.P50 == nil || c.P99 == nil || !closeTo(*c.P50, tc.p50) || !closeTo(*c.P99, tc.p99) {
				t.Fatalf("got p50 %v p99 %v, want %v %v", fopt(c.P50, 3), fopt(c.P99, 3), tc.p50, tc.p99)
			}
		})
	}
}

// The issue asks for both ratios, tollgate / direct and tollgate / nginx, on
// every measure, the medians of rounds included.
func TestCompareTollgateOverDirect(t *testing.T) {
	r := fixedResult()
	cases := []struct {
		measure            string
		p50, p99, p99Round *float64
	}{
		{"latency", ptr(160.0 / 100), ptr(700.0 / 300), ptr(520.0 / 280)},
		{"ttft", ptr(5160.0 / 5100), ptr(5700.0 / 5300), ptr(5500.0 / 5250)},
		{"inter-chunk gap", ptr(1010.0 / 1000), ptr(1150.0 / 1100), nil},
	}
	got := compare(r.Paths)
	for _, tc := range cases {
		t.Run(tc.measure, func(t *testing.T) {
			for _, c := range got {
				if c.Measure != tc.measure || c.Label != "tollgate / direct" {
					continue
				}
				if c.Kind != "ratio" || !sameOpt(c.P50, tc.p50) || !sameOpt(c.P99, tc.p99) || !sameOpt(c.P99Rounds, tc.p99Round) {
					t.Fatalf("%s: p50 %s p99 %s rounds %s, want %s %s %s", c.Kind, fopt(c.P50, 3), fopt(c.P99, 3), fopt(c.P99Rounds, 3),
						fopt(tc.p50, 3), fopt(tc.p99, 3), fopt(tc.p99Round, 3))
				}
				return
			}
			t.Fatalf("no tollgate / direct ratio among %+v", got)
		})
	}
}

func sameOpt(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || closeTo(*a, *b)) }

func TestCompareBaselineAndMissingPaths(t *testing.T) {
	paths := []PathResult{
		{Path: pathTollgate, Latency: sum(200, 600)},
		{Path: pathBase, Latency: sum(150, 500)},
	}
	got := compare(paths)
	if len(got) != 1 || got[0].Label != "tollgate − tollgate-base" || *got[0].P50 != 50 || *got[0].P99 != 100 {
		t.Fatalf("got %+v", got)
	}
	if len(compare([]PathResult{{Path: pathDirect, Latency: sum(1, 2)}})) != 0 {
		t.Fatal("a single path has nothing to compare")
	}
}

func TestCompareRatioWithoutPositiveBase(t *testing.T) {
	paths := []PathResult{
		{Path: pathDirect, Latency: sum(100, 300)},
		{Path: pathTollgate, Latency: sum(150, 400)},
		{Path: pathNginx, Latency: sum(100, 290)},
	}
	for _, c := range compare(paths) {
		if c.Label == "added: (tollgate − direct) / (nginx − direct)" {
			if c.P50 != nil || c.P99 != nil {
				t.Fatalf("ratio over a non-positive base should be absent: %v %v", fopt(c.P50, 2), fopt(c.P99, 2))
			}
			return
		}
	}
	t.Fatal("added ratio row missing")
}

func closeTo(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestMarkdown(t *testing.T) {
	r := fixedResult()
	r.Compare = compare(r.Paths)
	golden(t, "report-stream.md", []byte(r.markdown()))
}

func TestMarkdownMaxAndStreams(t *testing.T) {
	r := fixedResult()
	r.Scenario = "max"
	r.Paths = nil
	r.Max = &MaxResult{BoundUS: 5000, HalfRate: 5000, Plot: "20250102T030405Z-max.svg",
		Highest: map[string]float64{pathDirect: 30000, pathTollgate: 10000, pathNginx: 12000},
		Steps: []MaxStep{
			{Path: pathDirect, Offered: 10000, Latency: sum(100, 400), Pass: true},
			{Path: pathTollgate, Offered: 12500, Latency: sum(900, 7000), Errors: 3, WarmupErrors: 2, RetriedErrors: 7,
				Pass: false, CPUUS: ptr(41.5), SendLagP99US: 120},
			{Path: pathNginx, Offered: 12500, Latency: sum(3000, 8000), SendLagP99US: 6000, LoadgenLimited: true},
		}}
	r.Streams = []StreamsResult{
		{Path: pathTollgate, Process: "tollgate", Streams: 10000, PeakOpen: 10000, Errors: Errors{},
			RSSBeforeKB: 20000, RSSPeakKB: 220000, PerStreamKB: 20, HeapPerStreamKB: 12.5, StackPerStreamKB: 8,
			GoroutinesBefore: 20, GoroutinesPeak: 20020,
			GoroutinesPer: 2, TTFT: sum(60000, 90000), Gap: sum(500000, 510000)},
		{Path: pathNginx, Process: "nginx", Streams: 10000, PeakOpen: 9990, Errors: Errors{"connect": 10},
			RSSBeforeKB: 5000, RSSPeakKB: 45000, PerStreamKB: 4, TTFT: sum(60000, 80000), Gap: sum(500000, 505000)},
	}
	golden(t, "report-max-streams.md", []byte(r.markdown()))

	r.Streams = nil
	r.Max.Rounds = 5
	for i := range r.Max.Steps {
		r.Max.Steps[i].Latency.RoundP99 = ptr(r.Max.Steps[i].Latency.P99 / 2)
	}
	golden(t, "report-max-rounds.md", []byte(r.markdown()))
}

// When the load generator's send lag is most of the latency p99, every path's
// latency is the harness's own lateness: the report flags it (⚠ and a note in
// the send lag section), as it flags a path's own shortfall, and the JSON says
// so per path.
func TestMarkdownFlagsLoadgenBehind(t *testing.T) {
	r := fixedResult()
	for i := range r.Paths {
		r.Paths[i].NoFreeWorker = 0
		r.Paths[i].Latency = sum(40_100, 60_000)
	}
	r.Paths[1].SendLag = sum(40_000, 59_000) // 98 % of the latency p99
	md := r.markdown()
	lag := md[strings.Index(md, "## Send lag"):]
	lag = lag[:strings.Index(lag, "## Wait for a free worker")]
	if !strings.Contains(lag, "| tollgate | 1000 | 40000.0 | 49500.0 | **59000.0** ⚠ |") ||
		!strings.Contains(lag, "⚠ tollgate: send lag p99 59000.0 µs of a latency p99 of 60000.0 µs: the load generator was behind its schedule") {
		t.Fatalf("send lag of 98 %% of the latency p99 not flagged:\n%s", lag)
	}
	if strings.Count(lag, "⚠") != 2 {
		t.Fatalf("paths with a send lag of 100 µs flagged too:\n%s", lag)
	}

	st := newRunStats()
	for range 100 {
		_ = st.Lat.RecordValue(60_000_000)
		_ = st.Lag.RecordValue(59_000_000)
	}
	if p := pathResult(pathTollgate, 1000, st, false); !p.LoadgenBehind {
		t.Fatalf("pathResult: load_generator_behind unset with send lag p99 %.0f of latency p99 %.0f µs", p.SendLag.P99, p.Latency.P99)
	}
	st = newRunStats()
	for range 100 {
		_ = st.Lat.RecordValue(60_000_000)
		_ = st.Lag.RecordValue(100_000)
	}
	if p := pathResult(pathTollgate, 1000, st, false); p.LoadgenBehind {
		t.Fatal("pathResult: load_generator_behind set with a send lag of 100 µs")
	}
}

func TestResultWrite(t *testing.T) {
	dir := t.TempDir()
	r := fixedResult()
	files, err := r.write(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"20250102T030405Z-stream.json", "20250102T030405Z-stream.md", "latest-stream.json", "latest-stream.md"}
	if len(files) != len(want) {
		t.Fatalf("files %v", files)
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Fatalf("file %d is %s, want %s", i, filepath.Base(f), want[i])
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "latest-stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Paths[1].Latency.P99 != 700 || back.Paths[1].Errors["timeout"] != 1 || back.Paths[0].TTFT == nil {
		t.Fatalf("round trip lost data: %+v", back.Paths[1])
	}
}

func TestCountsString(t *testing.T) {
	got := countsString(map[string]int64{"stable": 95, "canary": 5, "": 0})
	if got != "(none)=0 (0.0 %), canary=5 (5.0 %), stable=95 (95.0 %)" {
		t.Fatalf("got %q", got)
	}
}

func TestPlotMax(t *testing.T) {
	file := filepath.Join(t.TempDir(), "max.svg")
	m := &MaxResult{BoundUS: 5000, Steps: []MaxStep{
		{Path: pathDirect, Offered: 1000, Latency: sum(80, 200)},
		{Path: pathDirect, Offered: 2000, Latency: sum(90, 250)},
		{Path: pathTollgate, Offered: 1000, Latency: sum(120, 400)},
		{Path: pathNginx, Offered: 1000},
	}}
	if err := plotMax(m, file); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "tollgate p99") {
		t.Fatalf("not the expected SVG: %.200s", b)
	}
	m.Rounds = 3
	m.Steps[0].Latency.RoundP99 = ptr(150.0)
	if err := plotMax(m, file); err != nil {
		t.Fatal(err)
	}
	if b, err = os.ReadFile(file); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "p99 (median of rounds)") {
		t.Fatalf("the p99 lines of a ladder in rounds are not labelled as medians: %.200s", b)
	}
}

// A ladder with no measured step (none run, or none answered) has no point for
// gonum's log axes, which panic on one: plotMax says so instead, and writes no
// file, so runMax still writes its report.
func TestPlotMaxWithoutPointsIsAnError(t *testing.T) {
	cases := []struct {
		name  string
		steps []MaxStep
	}{
		{"no step", nil},
		{"no step answered", []MaxStep{{Path: pathTollgate, Offered: 1000, Errors: 3000}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "max.svg")
			err := plotMax(&MaxResult{BoundUS: 5000, Highest: map[string]float64{}, Steps: tc.steps}, file)
			if !errors.Is(err, errNoPlotPoints) {
				t.Fatalf("err %v, want errNoPlotPoints", err)
			}
			if _, err := os.Stat(file); err == nil {
				t.Fatal("a plot was written")
			}
		})
	}
}

func TestProcCPU(t *testing.T) {
	u0, s0, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn 300 ms of CPU on this goroutine, as the kernel's own account of this
	// process (getrusage) counts it: wall time says nothing on a busy machine.
	x := 0
	r0 := rusageCPU(t)
	for end := time.Now().Add(20 * time.Second); rusageCPU(t)-r0 < 300*time.Millisecond && time.Now().Before(end); {
		for i := range 100000 {
			x += i
		}
	}
	u1, s1, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if used := (u1 - u0) + (s1 - s0); used < 150*time.Millisecond || used > 10*time.Second {
		t.Errorf("procCPU counted %v for 300 ms of spinning (x=%d)", used, x)
	}
	if _, _, err := procCPU(1 << 30); err == nil {
		t.Error("procCPU of a process that does not exist: no error")
	}
}

func TestPathResultCPU(t *testing.T) {
	st := newRunStats()
	for range 2 {
		r := newRunStats()
		r.Sent = 1000
		(procSample{user: 30 * time.Millisecond, sys: 12 * time.Millisecond, gc: 7, cpuOK: true, gcOK: true}).
			since(procSample{user: 10 * time.Millisecond, sys: 2 * time.Millisecond, gc: 5, cpuOK: true, gcOK: true}, r)
		st.merge(r)
	}
	p := pathResult(pathTollgate, 1000, st, false)
	if p.CPU == nil || p.CPU.UserUS != 20 || p.CPU.SystemUS != 10 || p.CPU.GCCycles == nil || *p.CPU.GCCycles != 4 {
		t.Fatalf("CPU %+v", p.CPU)
	}
	// A round whose process could not be read leaves the figure out rather than
	// dividing part of the CPU by all of the requests.
	r := newRunStats()
	r.Sent = 1000
	(procSample{}).since(procSample{}, r)
	st.merge(r)
	if p := pathResult(pathTollgate, 1000, st, false); p.CPU != nil {
		t.Fatalf("CPU %+v with a round unread", p.CPU)
	}
}

func TestMedianRoundP99(t *testing.T) {
	cases := []struct {
		name string
		ns   []int64
		want *float64
	}{
		{"no rounds", nil, nil},
		{"two rounds are too few", []int64{1000, 9000}, nil},
		{"odd", []int64{9000, 1000, 3000}, ptr(3.0)},
		{"even: mean of the middle two", []int64{4000, 1000, 90000, 2000}, ptr(3.0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := medianRoundP99(tc.ns)
			if (got == nil) != (tc.want == nil) || (got != nil && !closeTo(*got, *tc.want)) {
				t.Fatalf("got %v, want %v", fopt(got, 3), fopt(tc.want, 3))
			}
		})
	}
}

// TestRoundP99 merges five rounds, one of them disturbed: the p99 of the merged
// rounds follows the disturbance, the median of the rounds' own p99s does not, and
// the comparison carries the difference of the medians.
func TestRoundP99(t *testing.T) {
	path := func(base int64, disturbed int) *runStats {
		st := newRunStats()
		for i := range 5 {
			r := newRunStats()
			for j := range int64(100) {
				v := base + j*1000
				if i == disturbed && j >= 90 {
					v = 50_000_000 // 50 ms
				}
				_ = r.Lat.RecordValue(v)
				_ = r.TTFT.RecordValue(v)
			}
			r.markRound()
			st.merge(r)
		}
		return st
	}
	d := pathResult(pathDirect, 1000, path(100_000, -1), true)
	tg := pathResult(pathTollgate, 1000, path(150_000, 2), true)
	if d.Latency.RoundP99 == nil || tg.Latency.RoundP99 == nil || tg.TTFT.RoundP99 == nil {
		t.Fatalf("no round medians: %+v %+v", d.Latency, tg.Latency)
	}
	if tg.Latency.P99 < 40_000 {
		t.Fatalf("merged p99 %.1f µs: the disturbed round should show", tg.Latency.P99)
	}
	if got := *tg.Latency.RoundP99 - *d.Latency.RoundP99; got < 49 || got > 51 {
		t.Fatalf("round medians %.1f and %.1f µs, difference %.1f, want ~50", *tg.Latency.RoundP99, *d.Latency.RoundP99, got)
	}
	if tg.Gap.RoundP99 != nil {
		t.Fatalf("gap median %v from rounds without gaps", *tg.Gap.RoundP99)
	}
	for _, c := range compare([]PathResult{d, tg}) {
		if c.Measure == "latency" && c.Label == "tollgate − direct" {
			if c.P99Rounds == nil || *c.P99Rounds < 49 || *c.P99Rounds > 51 {
				t.Fatalf("comparison %v", fopt(c.P99Rounds, 1))
			}
			return
		}
	}
	t.Fatal("latency comparison missing")
}

// rusageCPU is this process's user and system CPU time as getrusage reports it.
func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A max run whose Tollgate path sustained no step has no half-rate run, so its
// report does not claim the --rate it never offered as its load.
func TestMarkdownMaxWithoutHalfRate(t *testing.T) {
	r := fixedResult()
	r.Scenario = "max"
	r.Paths = nil
	r.Settings.Rate = 0
	r.Max = &MaxResult{BoundUS: 5000, Highest: map[string]float64{pathNginx: 500},
		Steps: []MaxStep{
			{Path: pathTollgate, Offered: 500, Latency: sum(900, 7000), Pass: false},
			{Path: pathNginx, Offered: 500, Latency: sum(300, 900), Pass: true},
		}}
	md := r.markdown()
	if !strings.Contains(md, "- load: the ladder below only (Tollgate sustained no step, so no half-rate run)") ||
		strings.Contains(md, "req/s open loop") {
		t.Fatalf("load line of a max run without its half-rate run:\n%s", md[:strings.Index(md, "\n\n")])
	}
}

// A max run on --paths without tollgate (direct,nginx) has no half-rate run
// either; its load line says why, claiming nothing of a path that never ran.
func TestMarkdownMaxWithoutTollgatePath(t *testing.T) {
	r := fixedResult()
	r.Scenario = "max"
	r.Paths = nil
	r.Settings.Rate = 0
	r.Max = &MaxResult{BoundUS: 5000, Highest: map[string]float64{pathDirect: 500, pathNginx: 500},
		Steps: []MaxStep{
			{Path: pathDirect, Offered: 500, Latency: sum(200, 600), Pass: true},
			{Path: pathNginx, Offered: 500, Latency: sum(300, 900), Pass: true},
		}}
	md := r.markdown()
	if !strings.Contains(md, "- load: the ladder below only (tollgate was not among --paths, so no half-rate run)") ||
		strings.Contains(md, "Tollgate sustained no step") {
		t.Fatalf("load line of a max run without a tollgate path:\n%s", md[:strings.Index(md, "\n\n")])
	}
}

// A send-lag p99 over fewer than 100 samples is the single slowest send; it
// flags nothing, as in a --smoke run's 50 requests a path.
func TestLoadgenBehindNeedsSamples(t *testing.T) {
	lat := sum(40_000, 60_000)
	lag := sum(40_000, 59_000)
	lag.Count = 50
	if loadgenBehind(lag, lat) {
		t.Fatal("50 samples flagged the load generator behind")
	}
	lag.Count = 100
	if !loadgenBehind(lag, lat) {
		t.Fatal("100 samples with a send lag of 98 % of the latency p99 not flagged")
	}
}
