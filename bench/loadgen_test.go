package main

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
)

func quietProgress() *progress { return &progress{quiet: true} }

func shortSpec(k reqKind) loadSpec {
	return loadSpec{Kind: k, Rate: 400, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond,
		Conns: 8, MaxTokens: 4, Timeout: 5 * time.Second}
}

func TestRunLoadAgainstStandIn(t *testing.T) {
	cases := []struct {
		name  string
		kind  reqKind
		fault string
		want  string // error kind every request should fail with; "" = success
	}{
		{"chat succeeds", kindChat, "", ""},
		{"stream succeeds with ttft and gaps", kindStream, "", ""},
		{"embeddings succeed", kindEmbeddings, "", ""},
		{"rerank succeeds", kindRerank, "", ""},
		{"non-json rerank body", kindRerank, "garbage", "bad body"},
		{"rerank answer cut short", kindRerank, "cut json", "bad body"},
		// A 200 of another kind (a chat completion) holds no "results".
		{"rerank answered with a completion", kindRerank, "wrong kind", "bad body"},
		// The stand-in refuses a Messages API call without anthropic-version.
		{"messages succeed with anthropic-version", kindMessages, "", ""},
		{"non-json messages body", kindMessages, "garbage", "bad body"},
		{"message cut short", kindMessages, "cut json", "bad body"},
		// A completion is no message, even one whose usage has output_tokens.
		{"messages answered with a completion", kindMessages, "wrong kind", "bad body"},
		{"upstream status counted by code", kindChat, "503", "status 503"},
		{"non-json chat body", kindChat, "garbage", "bad body"},
		{"stream without a content chunk", kindStream, "garbage", "bad body"},
		{"stream cut before [DONE]", kindStream, "cut", "stream cut"},
		// The gateway counts such a stream as failed: the client got an error,
		// not a completion, whatever follows the error event.
		{"stream with an error event before [DONE]", kindStream, "error event", "stream error"},
		{"event stream to a non-streaming chat", kindChat, "event stream", "bad body"},
		{"chat completion cut short", kindChat, "cut json", "bad body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startStandIn(t, tc.fault)
			spec := shortSpec(tc.kind)
			tg := &target{Name: "standin", Addr: s.addr(), Model: "m",
				client: newClient(s.addr(), spec.Conns, spec.Timeout, tc.kind == kindStream, 0)}
			st := runLoad(context.Background(), tg, &spec, quietProgress())
			total := pacer{rate: spec.Rate}.count(spec.Warmup + spec.Duration)
			if st.Sent != total {
				t.Fatalf("sent %d, want %d", st.Sent, total)
			}
			if st.Measured == 0 {
				t.Fatal("nothing measured")
			}
			if tc.want == "" {
				if st.Errs.Total() != 0 || st.OK != st.Measured {
					t.Fatalf("ok %d of %d, errors %v", st.OK, st.Measured, st.Errs)
				}
				if st.Lat.TotalCount() != st.OK || st.Lag.TotalCount() != st.OK {
					t.Fatalf("latency samples %d, lag samples %d, want %d", st.Lat.TotalCount(), st.Lag.TotalCount(), st.OK)
				}
				if tc.kind == kindStream && (st.TTFT.TotalCount() != st.OK || st.Gap.TotalCount() != 2*st.OK) {
					t.Fatalf("ttft samples %d, gap samples %d for %d streams of 3 chunks", st.TTFT.TotalCount(), st.Gap.TotalCount(), st.OK)
				}
				return
			}
			if st.OK != 0 || st.Errs[tc.want] != st.Measured || st.Errs[tc.want]+st.WarmupErrs[tc.want] != st.Sent {
				t.Fatalf("errors %v, in warm-up %v (ok %d), want %d of %q, %d measured", st.Errs, st.WarmupErrs, st.OK, st.Sent, tc.want, st.Measured)
			}
		})
	}
}

func TestRunLoadConnectError(t *testing.T) {
	held, err := freeport.Hold() // refuses connections, and no other test can take it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr()
	spec := shortSpec(kindChat)
	tg := &target{Name: "closed", Addr: addr, Model: "m", client: newClient(addr, spec.Conns, spec.Timeout, false, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Errs["connect"]+st.WarmupErrs["connect"] != st.Sent || st.Errs["connect"] != st.Measured || st.Sent == 0 {
		t.Fatalf("errors %v, in warm-up %v, for %d sent, want all connect", st.Errs, st.WarmupErrs, st.Sent)
	}
}

func TestRunLoadCountsHeaderAndUsers(t *testing.T) {
	s := startStandIn(t, "")
	spec := shortSpec(kindChat)
	spec.Users = 3
	spec.CountHeader = "Content-Type"
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, false, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Headers["application/json"] != st.OK || st.OK == 0 {
		t.Fatalf("header counts %v, ok %d", st.Headers, st.OK)
	}
}

// A round that starts at FirstUser names the users after it, so rounds that follow one
// another cover every user instead of the first ones again and again.
func TestRunLoadUsersStartAtFirstUser(t *testing.T) {
	s := startStandIn(t, "")
	spec := shortSpec(kindChat)
	spec.Users, spec.FirstUser = 1000, 900
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, false, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	n := pacer{rate: spec.Rate}.count(spec.Warmup + spec.Duration)
	if st.OK == 0 || n < 100 {
		t.Fatalf("ok %d of %d", st.OK, n)
	}
	want := map[string]bool{}
	for i := range n {
		want["u"+strconv.FormatInt((900+i)%1000, 10)] = true
	}
	seen := 0
	s.users.Range(func(k, _ any) bool {
		seen++
		if !want[k.(string)] {
			t.Errorf("user %s outside u900… (%d requests)", k, n)
		}
		return true
	})
	if seen != len(want) {
		t.Fatalf("%d users named, want %d", seen, len(want))
	}
}

func TestRunLoadActiveStreamsReturnToZero(t *testing.T) {
	s := startStandIn(t, "")
	var active atomic.Int64
	spec := shortSpec(kindStream)
	spec.Active = &active
	spec.ReadBuf = 4096
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, true, 4096)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.OK == 0 || active.Load() != 0 {
		t.Fatalf("ok %d, active after run %d", st.OK, active.Load())
	}
}

// TestRunLoadStreamsKeepConnections: a stream is read to the body's end, so its
// connection serves the next request instead of being closed with the chunked
// terminator unread.
func TestRunLoadStreamsKeepConnections(t *testing.T) {
	s := startStandIn(t, "")
	spec := shortSpec(kindStream)
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, true, 0)}
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.OK == 0 || st.Errs.Total() != 0 {
		t.Fatalf("ok %d, errors %v", st.OK, st.Errs)
	}
	if n := s.conns.Load(); n > int64(spec.Conns) {
		t.Fatalf("%d streams opened %d connections, want at most %d (one per worker)", st.Sent, n, spec.Conns)
	}
}

// TestRunClosedLoop: closed-loop workers send back to back for warm-up plus
// duration, and only what was sent after the warm-up is measured.
func TestRunClosedLoop(t *testing.T) {
	s := startStandIn(t, "")
	spec := shortSpec(kindChat)
	spec.Closed, spec.Conns, spec.Rate = true, 4, 0
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, false, 0)}
	start := time.Now()
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	took := time.Since(start)
	if st.Errs.Total() != 0 || st.OK == 0 || st.OK != st.Measured || st.Sent <= st.Measured {
		t.Fatalf("sent %d, measured %d, ok %d, errors %v", st.Sent, st.Measured, st.OK, st.Errs)
	}
	if st.Lat.TotalCount() != st.OK {
		t.Fatalf("latency samples %d for %d answers", st.Lat.TotalCount(), st.OK)
	}
	if took < spec.Warmup+spec.Duration || took > spec.Warmup+spec.Duration+2*time.Second {
		t.Fatalf("the run took %v for %v of warm-up and load", took, spec.Warmup+spec.Duration)
	}
	if s.conns.Load() > int64(spec.Conns) {
		t.Fatalf("%d connections for %d clients", s.conns.Load(), spec.Conns)
	}
}

// The same pacer drives a path that keeps up and one whose 2 workers cannot
// (20 ms answers at 200 req/s): the send lag is the pacer's own, the slow path's
// shortfall shows as its wait for a worker, as requests that found no free
// worker, and as an achieved rate below the offered one. The slow path's send lag
// is held against the worker wait it must leave out (hundreds of ms by the end of
// the run; a lag that held it would be at least as long), not against the fast
// path's lag: both are the pacer's scheduling, which a loaded machine stretches
// to tens of ms on one run and not the other.
func TestRunLoadSendLagExcludesWorkerWait(t *testing.T) {
	fast, slow := startStandIn(t, ""), startStandIn(t, "")
	slow.delay = func(int64) time.Duration { return 20 * time.Millisecond }
	run := func(s *standIn) PathResult {
		spec := loadSpec{Kind: kindChat, Rate: 200, Warmup: 20 * time.Millisecond, Duration: 400 * time.Millisecond,
			Conns: 2, MaxTokens: 4, Timeout: 5 * time.Second}
		tg := &target{Name: "p", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, false, 0)}
		return pathResult("p", spec.Rate, runLoad(context.Background(), tg, &spec, quietProgress()), false)
	}
	f, sl := run(fast), run(slow)
	if f.OK == 0 || sl.OK == 0 || sl.OK != sl.Measured {
		t.Fatalf("setup: ok %d, and %d of %d", f.OK, sl.OK, sl.Measured)
	}
	if 4*sl.SendLag.P99 > sl.WorkerWait.P99 {
		t.Errorf("send lag p99 %.0f µs on the slow path against a worker wait p99 of %.0f µs: the wait for a worker is in it",
			sl.SendLag.P99, sl.WorkerWait.P99)
	}
	if sl.SendLag.Count != sl.OK || sl.WorkerWait.Count != sl.OK {
		t.Errorf("send lag %d and worker wait %d samples for %d answers", sl.SendLag.Count, sl.WorkerWait.Count, sl.OK)
	}
	// Two workers answer at most 100 of the 200 req/s; the rest queue.
	if sl.NoFreeWorker < sl.Measured/4 || sl.WorkerWait.P99 < 20_000 {
		t.Errorf("%d of %d requests found no free worker, worker wait p99 %.0f µs", sl.NoFreeWorker, sl.Measured, sl.WorkerWait.P99)
	}
	if sl.Achieved > 0.75*sl.Offered {
		t.Errorf("achieved %.0f of %.0f req/s offered with two workers answering in 20 ms", sl.Achieved, sl.Offered)
	}
	if sl.Achieved == 0 || f.Achieved < sl.Achieved {
		t.Errorf("achieved %.0f on the fast path, %.0f on the slow one", f.Achieved, sl.Achieved)
	}
}

func TestRunLoadStopsOnCancel(t *testing.T) {
	s := startStandIn(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	spec := shortSpec(kindChat)
	spec.Duration = time.Hour
	tg := &target{Name: "standin", Addr: s.addr(), Model: "m", client: newClient(s.addr(), spec.Conns, spec.Timeout, false, 0)}
	st := runLoad(ctx, tg, &spec, quietProgress())
	if st.Sent != 0 {
		t.Fatalf("sent %d after cancel", st.Sent)
	}
}

func TestRequestBody(t *testing.T) {
	cases := []struct {
		name string
		kind reqKind
		want string
	}{
		{"chat", kindChat, `{"model":"chat","messages":[{"role":"user","content":"Write a short note about load testing gateways."}],"max_tokens":7}`},
		{"stream", kindStream, `{"model":"chat","messages":[{"role":"user","content":"Write a short note about load testing gateways."}],"max_tokens":7,"stream":true}`},
		{"embeddings", kindEmbeddings, `{"model":"chat","input":"The quick brown fox jumps over the lazy dog.","encoding_format":"float"}`},
		{"responses", kindResponses, `{"model":"chat","input":"Write a short note about load testing gateways.","store":false,"max_output_tokens":7}`},
		{"rerank", kindRerank, `{"model":"chat","query":"Which gateway adds the least latency to LLM requests?","documents":[` +
			`"Tollgate is a gateway for LLM requests.","nginx is a reverse proxy in front of web servers.",` +
			`"Latency is the time a request waits for its answer.","A banana is a yellow fruit.",` +
			`"Rate limits keep a shared gateway fair.","The least latency comes from no proxy at all.",` +
			`"Canaries shift traffic between model versions.","Redis stores the token buckets every replica shares."],"top_n":3}`},
		{"messages", kindMessages, `{"model":"chat","max_tokens":7,"system":"You are a concise technical writer.","messages":[{"role":"user","content":[` +
			`{"type":"text","text":"Write a short note about load testing gateways."}]}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(requestBody(tc.kind, "chat", 7)); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestErrKind(t *testing.T) {
	for i, tc := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: errString("refused")}, "connect"},
		{errString("weird"), "other"},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			if got := errKind(tc.err); got != tc.want {
				t.Fatalf("errKind(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }
