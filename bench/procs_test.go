package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serveHandler serves h on a loopback port for the test's lifetime.
func serveHandler(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// Failures in the warm-up are not failures of the measured requests: a path that
// fails a few warm-up requests (here the first 10 of 20) and answers every measured
// one passes its max step, and its row counts the warm-up's apart.
func TestWarmupErrorsApartFromMeasured(t *testing.T) {
	var calls atomic.Int64
	addr := serveHandler(t, func(ctx *fasthttp.RequestCtx) {
		if calls.Add(1) <= 10 {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}`)
	})
	spec := loadSpec{Kind: kindChat, Rate: 200, Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond,
		Conns: 8, MaxTokens: 4, Timeout: 5 * time.Second}
	tg := &target{Name: "p", Addr: addr, Model: "m", client: newClient(addr, spec.Conns, spec.Timeout, false, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	st.markRound()
	if st.Measured == 0 || st.OK != st.Measured {
		t.Fatalf("setup: measured %d, ok %d (every measured request should succeed)", st.Measured, st.OK)
	}
	ms := maxStep("p", spec.Rate, st, 5*time.Second)
	if !ms.Pass || ms.Errors != 0 {
		t.Errorf("max step: pass %v with %d errors, but all %d measured requests succeeded (errors came from the warm-up)",
			ms.Pass, ms.Errors, st.Measured)
	}
	p := pathResult("p", spec.Rate, st, false)
	if got := p.Errors.Total(); got != p.Measured-p.OK {
		t.Errorf("path row: ok %d, errors %d of %d measured requests: warm-up failures reported as measured ones",
			p.OK, got, p.Measured)
	}
	// They still make the run unclean (--smoke fails on them).
	if w := p.WarmupErrors.Total(); w != 10 {
		t.Errorf("warm-up errors %d, want 10", w)
	}
	if n := (&Result{Paths: []PathResult{p}}).errorCount(); n != 10 {
		t.Errorf("errorCount %d, want the 10 warm-up failures", n)
	}
}

// The gateway's CPU per request leaves out the admin scrape that reads its GC count
// (about 2 ms of Tollgate's CPU per scrape, 1-3 µs per request at the rates of the
// early max steps). Here the "gateway" is this process, its /metrics burns 150 ms of
// CPU, and one request is sent.
func TestCPUWindowExcludesAdminScrape(t *testing.T) {
	admin := serveHandler(t, func(ctx *fasthttp.RequestCtx) {
		x := 0
		for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); {
			for i := range 1000 {
				x += i
			}
		}
		ctx.SetBodyString("# burned " + string(rune('0'+x%10)) + "\ngo_gc_duration_seconds_count 3\n")
	})
	s := startStandIn(t, "")
	spec := loadSpec{Kind: kindChat, Rate: 1000, Duration: time.Millisecond, Conns: 1, MaxTokens: 4, Timeout: 5 * time.Second}
	tg := &target{Name: pathTollgate, Addr: s.addr(), Model: "m", Pid: os.Getpid(), AdminAddr: admin,
		client: newClient(s.addr(), 1, spec.Timeout, false, 0)}
	st := runLoadSampled(context.Background(), tg, &spec, quietProgress())
	if st.cpuRounds != 1 || st.Sent != 1 {
		t.Fatalf("setup: cpu rounds %d, sent %d", st.cpuRounds, st.Sent)
	}
	if used := st.User + st.Sys; used >= 100*time.Millisecond {
		t.Errorf("one request charged %v of process CPU: the admin scrape's 150 ms falls inside the measured window", used)
	}
}

// stop ends the whole process group startProc made, not only its leader: a
// child that outlives its parent (nginx's workers when the master is killed
// after the grace, a wrapper's children) would keep its ports and cores through
// the next scenario. Here the leader ignores SIGTERM, as a stuck nginx master
// would, and its child inherits that, so only the group's SIGKILL ends them.
func TestProcStopEndsWholeGroup(t *testing.T) {
	dir := t.TempDir()
	p, err := startProc(dir, "group", "", "/bin/sh", "-c", "trap '' TERM; sleep 30 & wait")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if kids = childPids(p.pid()); len(kids) > 0 {
			break
		}
	}
	if len(kids) == 0 {
		p.stop(time.Second)
		t.Fatal("setup: the shell started no child")
	}
	child := kids[0]
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) }) // only the process this test started
	p.stop(200 * time.Millisecond)
	// stop returns once the group is gone: no polling here.
	if running(child) {
		t.Fatalf("after stop, group member %d of %s (pid %d) is still running", child, p.name, p.pid())
	}
	if groupAlive(p.pid()) {
		t.Fatalf("after stop, group %d still has a running member", p.pid())
	}
	// A second stop (env.close after the tracing scenario stopped the gateways)
	// finds nothing to do.
	p.stop(200 * time.Millisecond)
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	f := procStatFields(strconv.Itoa(pid))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
