package main

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ladderOptions is a short max ladder for stand-ins: 10 ms of warm-up and
// 200 ms steps. The bound is above what a loaded test machine adds to a
// stand-in's answer (a p99 near 500 ms was seen beside the whole -race suite on
// two cores, over a bound of 100 ms then), and below the stall the tests plant.
func ladderOptions(start, limit float64, rounds int) *options {
	return &options{P99Bound: testBound, MaxStart: start, MaxFactor: 2, MaxLimit: limit,
		Step: 200 * time.Millisecond, Warmup: 10 * time.Millisecond, MaxRounds: rounds,
		Conns: 64, MaxTokens: 4, Timeout: 5 * time.Second}
}

const (
	testBound = time.Second
	testStall = 2 * time.Second
	// anyLatency is the bound of ladders judged by their errors alone.
	anyLatency = time.Minute
)

func standInTarget(name string, s *standIn) *target {
	return &target{Name: name, Addr: s.addr(), Model: "m", client: newClient(s.addr(), 64, 5*time.Second, false, 0)}
}

func TestMaxLadderSaturatesAndReachesLimit(t *testing.T) {
	for _, rounds := range []int{1, 3} {
		t.Run("rounds "+strconv.Itoa(rounds), func(t *testing.T) {
			ok, busy := startStandIn(t, ""), startStandIn(t, "503")
			o := ladderOptions(100, 200, rounds)
			o.P99Bound = anyLatency
			ts := []*target{standInTarget("ok", ok), standInTarget("busy", busy)}
			mr, alive := maxLadder(context.Background(), o, ts, quietProgress())
			if !alive[0] || alive[1] {
				t.Fatalf("alive %v, want the healthy path only", alive)
			}
			if mr.Highest["ok"] != 200 || mr.Highest["busy"] != 0 {
				t.Fatalf("highest %v", mr.Highest)
			}
			// Step one: both paths, the healthy first; step two: the healthy
			// path alone, since the other is out.
			var got []string
			for _, s := range mr.Steps {
				got = append(got, s.Path+"@"+frate(s.Offered)+"="+map[bool]string{true: "pass", false: "fail"}[s.Pass])
			}
			if want := "ok@100=pass busy@100=fail ok@200=pass"; strings.Join(got, " ") != want {
				t.Fatalf("steps %q, want %q", strings.Join(got, " "), want)
			}
			per := pacer{rate: 100}.count(o.Warmup + o.Step)
			wantBusy := 2 * per // tried once more
			if rounds == 3 {
				wantBusy = 3 * per // three rounds, no second try
			}
			if mr.Rounds != map[bool]int{true: 3}[rounds == 3] {
				t.Fatalf("rounds per step %d", mr.Rounds)
			}
			if n := busy.calls.Load(); n != wantBusy {
				t.Fatalf("busy path got %d requests, want %d", n, wantBusy)
			}
			if mr.Steps[1].Errors == 0 || mr.Steps[0].Errors != 0 {
				t.Fatalf("errors %d and %d", mr.Steps[0].Errors, mr.Steps[1].Errors)
			}
			if (mr.Steps[0].Latency.RoundP99 != nil) != (rounds == 3) {
				t.Fatalf("median of rounds %v with %d rounds", mr.Steps[0].Latency.RoundP99, rounds)
			}
		})
	}
}

// A stall that holds every request of one round past the bound: judged by the
// median of three rounds' p99s, the step passes although the p99 of all its
// requests is over the bound; judged on one measurement, it fails. At 30 req/s
// a round sends 7 requests, which the stall holds open together on 7 of the 64
// connections.
func TestMaxLadderRoundsOutlastAStall(t *testing.T) {
	const rate = 30
	cases := []struct {
		rounds int
		pass   bool
	}{{3, true}, {1, false}}
	for _, tc := range cases {
		s := startStandIn(t, "")
		o := ladderOptions(rate, rate, tc.rounds)
		first := pacer{rate: rate}.count(o.Warmup + o.Step)
		// Rounds after the first have the same warm-up (10 ms < 100 ms), so
		// the second round is calls [first, 2·first). With one round, the
		// stall hits both tries.
		s.delay = func(n int64) time.Duration {
			if tc.rounds == 1 || (n >= first && n < 2*first) {
				return testStall
			}
			return 0
		}
		mr, _ := maxLadder(context.Background(), o, []*target{standInTarget("p", s)}, quietProgress())
		if len(mr.Steps) != 1 {
			t.Fatalf("%d rounds: steps %+v", tc.rounds, mr.Steps)
		}
		st := mr.Steps[0]
		if st.Pass != tc.pass {
			t.Fatalf("%d rounds: pass %v, p99 %.0f µs, median of rounds %v", tc.rounds, st.Pass, st.Latency.P99, fopt(st.Latency.RoundP99, 0))
		}
		if st.Latency.P99 < float64(testStall.Microseconds()) {
			t.Fatalf("%d rounds: p99 of all requests %.0f µs, want the stall in it", tc.rounds, st.Latency.P99)
		}
		if tc.rounds == 3 && *st.Latency.RoundP99 > float64(testBound.Microseconds()) {
			t.Fatalf("median of rounds %.0f µs", *st.Latency.RoundP99)
		}
	}
}

// --smoke fails on any failed request, warm-up included, and a max run's
// requests are mostly the ladder's: errorCount holds every failure of every
// step, a first try's and the warm-ups' included, also when Tollgate sustained
// nothing and so there is no half-rate run at all.
func TestMaxErrorCountHoldsEveryLadderFailure(t *testing.T) {
	cases := []struct {
		name   string
		rounds int
		fail   func(n int64) bool
		pass   bool
	}{
		// 100 req/s with 10 ms of warm-up: call 0 is the warm-up's only request.
		{"every request of both tries", 1, func(int64) bool { return true }, false},
		{"every request of every round", 3, func(int64) bool { return true }, false},
		{"the warm-up's only, the step passing", 1, func(n int64) bool { return n == 0 }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startStandIn(t, "")
			var failed atomic.Int64
			s.fail = func(n int64) bool {
				f := tc.fail(n)
				if f {
					failed.Add(1)
				}
				return f
			}
			o := ladderOptions(100, 100, tc.rounds)
			o.P99Bound = anyLatency
			mr, _ := maxLadder(context.Background(), o, []*target{standInTarget(pathTollgate, s)}, quietProgress())
			if len(mr.Steps) != 1 || mr.Steps[0].Pass != tc.pass {
				t.Fatalf("steps %+v, want one that passes: %v", mr.Steps, tc.pass)
			}
			// What runMax builds when Tollgate sustained nothing: no half-rate run.
			res := &Result{Scenario: "max", Max: mr}
			if n := res.errorCount(); n != failed.Load() || n == 0 {
				t.Fatalf("errorCount %d, want the %d requests the stand-in failed (step %+v)", n, failed.Load(), mr.Steps[0])
			}
		})
	}
}

func TestCappedNotes(t *testing.T) {
	mr := &MaxResult{Highest: map[string]float64{pathDirect: 20000, pathTollgate: 20000, pathNginx: 16000}}
	notes := cappedNotes(mr)
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "tollgate sustained as much as direct (20000 req/s)") {
		t.Fatalf("notes %q", notes)
	}
	mr.Highest[pathTollgate] = 12500
	if notes := cappedNotes(mr); len(notes) != 0 {
		t.Fatalf("a proxy below direct flagged: %q", notes)
	}
	delete(mr.Highest, pathDirect)
	if notes := cappedNotes(mr); len(notes) != 0 {
		t.Fatalf("flagged without a direct path: %q", notes)
	}
	mr.Highest = map[string]float64{pathDirect: 0, pathNginx: 0}
	if notes := cappedNotes(mr); len(notes) != 0 {
		t.Fatalf("a path that sustained nothing flagged: %q", notes)
	}
}

// A step that fails because the load generator sent late (its send lag is most
// of the latency p99) is marked as the load generator's, not the path's; one
// that fails with a punctual load generator is the path's.
func TestMaxStepLimitedByLoadgen(t *testing.T) {
	cases := []struct {
		name       string
		latNS      int64
		lagNS      int64
		pass       bool
		loadgenLim bool
	}{
		{"late load generator", 20_000_000, 18_000_000, false, true},
		{"slow path", 20_000_000, 50_000, false, false},
		{"passing step with lag", 1_000_000, 900_000, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newRunStats()
			for range 100 {
				_ = st.Lat.RecordValue(tc.latNS)
				_ = st.Lag.RecordValue(tc.lagNS)
			}
			st.Measured = 100
			ms := maxStep(pathTollgate, 1000, st, 5*time.Millisecond)
			if ms.Pass != tc.pass || ms.LoadgenLimited != tc.loadgenLim {
				t.Fatalf("pass %v, load generator limited %v; want %v, %v", ms.Pass, ms.LoadgenLimited, tc.pass, tc.loadgenLim)
			}
			if want := float64(tc.lagNS) / 1e3; ms.SendLagP99US < want*0.99 || ms.SendLagP99US > want*1.01 {
				t.Fatalf("send lag p99 %.1f µs, want %.1f", ms.SendLagP99US, want)
			}
		})
	}
}
