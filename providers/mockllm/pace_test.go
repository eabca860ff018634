package mockllm

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// A step is due TPOT after the one before it was due, not after the wait for it
// ended: a wait that woke late shortens the next, and a step already due is not
// waited for.
func TestStepDelayKeepsThePace(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	st := &state{tpotD: time.Millisecond, paceAt: t0}
	for _, c := range []struct {
		now  time.Duration // after t0
		want time.Duration
	}{
		{0, time.Millisecond},                             // on time: a whole TPOT
		{1900 * time.Microsecond, 100 * time.Microsecond}, // woke 0.9ms late: 0.1ms left to step 2
		{2950 * time.Microsecond, 50 * time.Microsecond},
		{5500 * time.Microsecond, -1500 * time.Microsecond}, // a slow writer: step 4 already due
		{5500 * time.Microsecond, -500 * time.Microsecond},
		{5500 * time.Microsecond, 500 * time.Microsecond},
	} {
		if got := st.stepDelay(t0.Add(c.now)); got != c.want {
			t.Fatalf("at +%v: delay %v, want %v", c.now, got, c.want)
		}
	}
}

// With real timers a stream's content arrives no earlier than its schedule: the last
// of n tokens TTFT plus n-1 TPOTs after the request.
func TestPacedStreamNeverEarly(t *testing.T) {
	const n, ttft, tpot = 40, 5 * time.Millisecond, 2 * time.Millisecond
	h := start(t, Options{TTFT: ttft, TPOT: tpot, MaxTokens: n})
	began := time.Now()
	resp, err := h.client.Post("http://mock.test/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"mock-1","stream":true,"max_tokens":40,"ignore_eos":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var last time.Duration
	contents := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"content":"`) && !strings.Contains(sc.Text(), `"content":""`) {
			contents++
			last = time.Since(began)
		}
	}
	if contents != n {
		t.Fatalf("%d content chunks, want %d", contents, n)
	}
	if want := ttft + (n-1)*tpot; last < want {
		t.Errorf("last token at %v, before its schedule (%v)", last, want)
	}
}
