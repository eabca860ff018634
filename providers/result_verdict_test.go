package providers

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An attempt's Result carries the verdict the target's health took of it and when it
// went upstream, for the canary to judge it by the same measure: a wait in the queue is
// the gateway's time, so Sent comes after it, and a call whose deadline ran out after
// such a wait has no verdict.
func TestResultCarriesVerdictAndSentTime(t *testing.T) {
	cases := []struct {
		name           string
		status         int
		queued         bool
		deadline       time.Duration
		judged, failed bool
	}{
		{"an answer", 200, false, 0, true, false},
		{"a 4xx answer", 429, false, 0, true, false},
		{"a 5xx answer", 503, false, 0, true, true},
		{"an answer after a wait in the queue", 200, true, 0, true, false},
		{"the call's deadline runs out", 200, false, 300 * time.Millisecond, true, true},
		{"the call's deadline runs out after a wait in the queue", 200, true, 300 * time.Millisecond, false, false},
		{"the call's deadline runs out after a short wait in the queue", 200, true, 900 * time.Millisecond, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startReplica(t)
			u.status.Store(int64(tc.status))
			if tc.deadline > 0 {
				u.delay.Store(int64(time.Minute))
			}
			b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1,
				Queue: QueueConfig{Size: 4, Timeout: 5 * time.Second}}, nil)
			if tc.queued {
				b.pool.states[0].slots.n.Store(1) // an answer in flight holds the only slot
			}
			call := promptCall("x", false)
			if tc.deadline > 0 {
				call.Deadline = time.Now().Add(tc.deadline)
			}
			type result struct {
				res Result
				err error
			}
			done := make(chan result, 1)
			begun := time.Now()
			go func() {
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				err := b.Send(call, out, &res)
				done <- result{res, err}
			}()
			freed := begun
			if tc.queued {
				waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
				// 200 ms: most of a 300 ms deadline, little of a 900 ms one.
				time.Sleep(200 * time.Millisecond)
				freed = time.Now()
				b.pool.free(0) // the answer in flight ends
			}
			r := <-done
			if r.res.Judged != tc.judged || r.res.Failed != tc.failed {
				t.Errorf("verdict judged %v failed %v (%v), want %v %v", r.res.Judged, r.res.Failed, r.err, tc.judged, tc.failed)
			}
			if r.res.Sent.Before(freed) {
				t.Errorf("sent %v before the slot was free", freed.Sub(r.res.Sent))
			}
			if judged, _ := Judge(r.err); !tc.queued && judged != r.res.Judged {
				t.Errorf("Judge says judged %v, the Result %v", judged, r.res.Judged)
			}
		})
	}
}

// An attempt that got no target has no verdict and was never sent.
func TestResultOfARefusedAttempt(t *testing.T) {
	u := startReplica(t)
	b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 0}}, nil)
	b.pool.states[0].slots.n.Store(1)
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(promptCall("x", false), out, &res); err == nil {
		t.Fatal("a full backend without a queue took the call")
	}
	if res.Judged || res.Failed || !res.Sent.IsZero() {
		t.Errorf("result %+v, want no verdict and no sent time", res)
	}
}
