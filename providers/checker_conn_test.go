package providers

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The connection that health checks and /metrics reads use is replaced once it is
// maxConnAge old, as request connections are: reads every metrics_interval, under
// idle_conn_timeout, would otherwise keep one connection, and the address its name
// had at the first dial, for good.
func TestCheckerConnectionReplacedWhenOld(t *testing.T) {
	setForTest(t, &maxConnAge, 100*time.Millisecond)
	ln := countingUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain; version=0.0.4")
		ctx.SetBodyString("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"up\"} 0\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"up\"} 0\n")
	})
	b := newPoolBackend(t, Config{BaseURL: "http://" + ln.Addr().String() + "/v1", Balance: "vllm_queue"}, nil)
	read := func() {
		t.Helper()
		b.readLoad(0, nil)
		if !b.pool.states[0].load.ok.Load() {
			t.Fatal("the /metrics read failed")
		}
	}
	read()
	read()
	if n := ln.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for two reads in a row, want one kept alive", n)
	}
	// Past the age, the next read goes over the old connection, which is then closed:
	// the one after dials again.
	time.Sleep(maxConnAge + 50*time.Millisecond)
	read()
	read()
	if n := ln.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want the checker's connection replaced once %v old", n, maxConnAge)
	}
}
