package providers

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// With one of three targets ejected, the two in service share the traffic evenly
// (round_robin, and least_loaded's ties); the target after the ejected one does not
// take its share on top of its own.
func TestBalanceEvenWithTargetEjected(t *testing.T) {
	for _, balance := range []string{"round_robin", "least_loaded"} {
		t.Run(balance, func(t *testing.T) {
			clk := newFakeClock()
			us := startReplicas(t, 3)
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: balance,
				Health: HealthConfig{EjectAfter: 1, EjectFor: time.Hour}}, poolsWithClock(clk))
			us[1].status.Store(503)
			for i := 0; b.pool.states[1].available(); i++ {
				if i > 10 {
					t.Fatal("target 1 never ejected")
				}
				_, _ = sendOnce(b, promptCall("e"+strconv.Itoa(i), false))
			}
			before0, before2 := us[0].hits.Load(), us[2].hits.Load()
			for i := range 60 {
				if _, err := sendOnce(b, promptCall("q"+strconv.Itoa(i), false)); err != nil {
					t.Fatal(err)
				}
			}
			a, c := us[0].hits.Load()-before0, us[2].hits.Load()-before2
			if a < 25 || c < 25 {
				t.Errorf("targets in service got %d and %d of 60 requests, want about 30 each", a, c)
			}
		})
	}
}

// With every target out of service, a target out of service with a free slot takes the
// request as its last-resort trial: a target found down by active checks whose
// max_concurrency slots are still held by its streams has no free slot, so another,
// ejected, target with room takes it rather than the call failing with
// no_healthy_upstream.
func TestLastResortSkipsFullTarget(t *testing.T) {
	clk := newFakeClock()
	us := startReplicas(t, 2)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1,
		Health: HealthConfig{Path: "/health", UnhealthyThreshold: 1, EjectAfter: 1, EjectFor: time.Minute}}, poolsWithClock(clk))
	url, s := openStream(t, b, "long")
	defer s.Close()
	busy := 0
	if url == us[1].url() {
		busy = 1
	}
	other := 1 - busy
	// The busy target's /health stops answering well (vLLM under load): checks take it down.
	us[busy].health.Store(503)
	b.check(busy)
	if b.pool.states[busy].available() {
		t.Fatal("check did not take the busy target down")
	}
	clk.Advance(time.Second)
	// The other target fails a request and is ejected.
	us[other].status.Store(503)
	if got, err := sendOnce(b, promptCall("x", false)); got != us[other].url() || err == nil {
		t.Fatalf("request went to %s (%v), want a 503 from the other target", got, err)
	}
	if b.pool.states[other].available() {
		t.Fatal("other target not ejected")
	}
	us[other].status.Store(200) // it recovers
	before := us[other].hits.Load()
	got, err := sendOnce(b, promptCall("y", false))
	if err != nil || got != us[other].url() {
		t.Errorf("with every target out, the request got %q, %v; want the ejected target with a free slot to take it as its last-resort trial", got, err)
	}
	if us[other].hits.Load() == before {
		t.Error("the target with a free slot was never tried")
	}
}

// An answer over the gateway's buffered-answer bound (MaxResponseBytes, 64 MiB: a large
// embeddings batch) is the same answer whichever replica gives it, which is why it is
// not retried. It is the gateway's own limit, not a fault of the target (README: "The
// gateway's own limits do not count against a target"): a client repeating such a
// request does not eject healthy replicas.
func TestAnswerOverLimitDoesNotEject(t *testing.T) {
	big := `{"pad":"` + strings.Repeat("x", 8<<10) + `","usage":{"prompt_tokens":1,"completion_tokens":1}}`
	addr := rawUpstream(t, listen4(t), func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(big)) + "\r\n\r\n" + big
	})
	clk := newFakeClock()
	b := newPoolBackend(t, Config{BaseURL: "http://" + addr + "/v1", MaxResponseBytes: 1 << 10,
		Health: HealthConfig{EjectAfter: 2}}, poolsWithClock(clk))
	for range 2 {
		if _, err := sendOnce(b, promptCall("embed a big batch", false)); !errors.Is(err, ErrBadResponse) {
			t.Fatalf("got %v, want the answer refused as too large", err)
		}
	}
	if !b.pool.states[0].available() || !b.Healthy() {
		t.Error("two answers over the gateway's own size bound ejected a healthy target")
	}
}
