package providers

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// nopEvents is a stream that ends at once, to measure the lease around it.
type nopEvents struct{}

func (nopEvents) Next(ev *Event) error { ev.Done = true; return nil }
func (nopEvents) Close() error         { return nil }

// pickConfigs are the pool set-ups whose picking is measured; the targets are never
// dialed.
var pickConfigs = []struct {
	name string
	cfg  Config
}{
	{"single", Config{BaseURL: "http://127.0.0.1:1/v1"}},
	{"round_robin", Config{Targets: benchTargets(8)}},
	{"least_loaded", Config{Targets: benchTargets(8), Balance: "least_loaded"}},
	{"vllm_queue", Config{Targets: benchTargets(8), Balance: "vllm_queue"}},
	{"affinity", Config{Targets: benchTargets(8), Affinity: AffinityConfig{By: "prefix"}}},
	{"capped", Config{Targets: benchTargets(8), Balance: "least_loaded", MaxConcurrency: 64, Queue: QueueConfig{Size: 8}}},
}

func benchTargets(n int) []string {
	var t []string
	for i := range n {
		t = append(t, "http://127.0.0.1:"+strconv.Itoa(10001+i)+"/v1")
	}
	return t
}

// benchCall is a chat request with a system prompt of a realistic size.
func benchCall() *Call {
	system := ""
	for range 20 {
		system += "You are a helpful assistant that answers briefly. "
	}
	return promptCall(system+`"},{"role":"user","content":"What is a gateway?`, false)
}

// pickOnce is the pool's whole share of a plain Send: pick, take a slot, report, free it.
func pickOnce(b *Backend, call *Call, res *Result) {
	l, err := b.acquire(call)
	if err != nil {
		panic(err)
	}
	_ = b.settle(l, nil, res)
}

func BenchmarkPick(b *testing.B) {
	for _, pc := range pickConfigs {
		b.Run(pc.name, func(b *testing.B) {
			be := newPoolBackend(b, pc.cfg, nil)
			call, res := benchCall(), &Result{}
			b.ReportAllocs()
			for b.Loop() {
				pickOnce(be, call, res)
			}
		})
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, pc := range pickConfigs[1:] {
		b.Run(pc.name, func(b *testing.B) {
			be := newPoolBackend(b, pc.cfg, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				call, res := benchCall(), &Result{}
				for pb.Next() {
					pickOnce(be, call, res)
				}
			})
		})
	}
}

// streamOnce leases a stream, reads it and closes it.
func streamOnce(b *Backend, call *Call, res *Result, ev *Event) {
	l, err := b.acquire(call)
	if err != nil {
		panic(err)
	}
	res.Stream = nopEvents{}
	_ = b.settle(l, nil, res)
	_ = res.Stream.Next(ev)
	_ = res.Stream.Close()
}

func BenchmarkStreamLease(b *testing.B) {
	be := newPoolBackend(b, Config{Targets: benchTargets(4), Balance: "least_loaded"}, nil)
	call, res, ev := benchCall(), &Result{}, &Event{}
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(be, call, res, ev)
	}
}

func BenchmarkPrefixHash(b *testing.B) {
	call := benchCall()
	b.SetBytes(int64(len(call.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := prefixHash(call, 1024); !ok {
			b.Fatal("no prompt")
		}
	}
}

// BenchmarkSend is a whole attempt over loopback, with the connection's first-byte and
// idle deadlines on, against a server that answers at once.
func BenchmarkSend(b *testing.B) {
	for _, stream := range []bool{false, true} {
		b.Run("stream="+strconv.FormatBool(stream), func(b *testing.B) {
			us := startReplicas(b, 2)
			for _, u := range us {
				u.static.Store(true)
			}
			be := newPoolBackend(b, Config{Targets: replicaURLs(us), Balance: "least_loaded", FirstByteTimeout: time.Minute, StreamIdleTimeout: time.Minute}, nil)
			a := newAttempt(promptCall("hello", stream))
			defer a.release()
			b.ReportAllocs()
			for b.Loop() {
				if err := a.send(be); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// attempt holds what one request reuses from attempt to attempt, as the gateway's
// pooled request does.
type attempt struct {
	call *Call
	out  *fasthttp.Response
	res  Result
	ev   Event
}

func newAttempt(call *Call) *attempt { return &attempt{call: call, out: fasthttp.AcquireResponse()} }

func (a *attempt) release() { fasthttp.ReleaseResponse(a.out) }

func (a *attempt) send(b *Backend) error {
	a.res = Result{}
	a.out.Reset()
	err := b.Send(a.call, a.out, &a.res)
	if s := a.res.Stream; s != nil {
		for err == nil {
			if err = s.Next(&a.ev); a.ev.Done {
				break
			}
		}
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// BenchmarkPolicyP99 offers the same open-loop load to four mockllm replicas, one of
// them five times slower, under each policy and reports the latency percentiles. Each
// iteration is one whole run of policyRequests requests.
func BenchmarkPolicyP99(b *testing.B) {
	for _, policy := range []string{"round_robin", "least_loaded", "vllm_queue"} {
		b.Run(policy, func(b *testing.B) {
			var p50, p99 time.Duration
			for b.Loop() {
				p50, p99 = runPolicyLoad(b, policy)
			}
			b.ReportMetric(float64(p50)/1e6, "p50-ms")
			b.ReportMetric(float64(p99)/1e6, "p99-ms")
		})
	}
}

const (
	policyRequests = 800
	policyRate     = 400 // per second: 2 s per run
	// A replica runs four requests at once, each 2 ms to the first token and 1 ms per
	// token after, 8 tokens: about 9 ms, 440 a second. The slow one takes 45 ms, 88 a
	// second, less than the 100 a second round robin sends it.
	policySeqs   = 4
	policyTokens = 8
	policyTTFT   = 2 * time.Millisecond
	policyTPOT   = time.Millisecond
)

// runPolicyLoad sends policyRequests at policyRate and measures each from the moment it
// was due, so that a stalled sender does not hide queueing.
func runPolicyLoad(b *testing.B, policy string) (p50, p99 time.Duration) {
	var urls []string
	for i := range 4 {
		slow := time.Duration(1)
		if i == 0 {
			slow = 5
		}
		m := startMockReplica(b, mockllm.Options{Model: "up", MaxNumSeqs: policySeqs, MaxTokens: policyTokens,
			TTFT: slow * policyTTFT, TPOT: slow * policyTPOT})
		urls = append(urls, m.url())
	}
	cfg := Config{Targets: urls, Balance: policy}
	if policy == "vllm_queue" {
		cfg.MetricsInterval = 100 * time.Millisecond
	}
	be := newPoolBackend(b, cfg, nil)
	be.Start(b.Context())
	// Every answer policyTokens long, so that only the replica's speed varies.
	var hdr fasthttp.RequestHeader
	hdr.Set("x-mock-tokens", strconv.Itoa(policyTokens))
	lat := make([]time.Duration, policyRequests)
	var wg sync.WaitGroup
	interval := time.Second / policyRate
	start := time.Now()
	for i := range policyRequests {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := newAttempt(promptCall("q", false))
			defer a.release()
			a.call.Header = &hdr
			if err := a.send(be); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(due)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}
