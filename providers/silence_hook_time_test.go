package providers

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The time a stream's silence hook takes (the gateway writing its keep-alive to a
// client that is slow to read) is not the upstream's silence: an event the upstream
// sent while the hook ran is read, even when the hook outlasted stream_idle_timeout.
func TestSilenceHookTimeNotCountedAsUpstreamSilence(t *testing.T) {
	more := make(chan struct{}, 1)
	url, _ := twoPartUpstream(t, more)
	const idle = 300 * time.Millisecond
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: url, Model: "m", StreamIdleTimeout: idle})

	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(`{"model":"chat","messages":[],"stream":true}`, true), &out, &res); err != nil {
		t.Fatal(err)
	}
	defer res.Stream.Close()
	calls := 0
	n, ok := res.Stream.(SilenceNotifier)
	if !ok || !n.NotifySilence(50*time.Millisecond, func() error {
		calls++
		if calls == 1 {
			// The upstream sends its next event now; the hook's write then blocks
			// past stream_idle_timeout.
			more <- struct{}{}
			time.Sleep(2 * idle)
		}
		return nil
	}) {
		t.Fatal("a stream over an upstream connection cannot tell when its upstream is silent")
	}
	var got []string
	var ev Event
	for !ev.Done {
		if err := res.Stream.Next(&ev); err != nil {
			t.Fatalf("after %d events (%q) and %d silence hooks: %v; want the event the upstream sent while the hook ran", len(got), got, calls, err)
		}
		got = append(got, string(ev.Data))
	}
	if len(got) != 4 || calls != 1 {
		t.Fatalf("%d events (%q), %d silence hooks; want 4 events, one hook", len(got), got, calls)
	}
}
