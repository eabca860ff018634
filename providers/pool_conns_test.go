package providers

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// README's error table: 503 upstream_overloaded when "every replica at max_concurrency
// ... or at max_connections"; Backend.Send: "with every one full ErrOverloaded". One
// target with every connection max_connections allows busy sends the requests the
// balance policy gives it to a target in service with a connection free, instead of
// failing them as overloaded (which skips the endpoint's retries).
func TestConnectionCapSpillsToTargetWithFreeConnection(t *testing.T) {
	t.Run("a target known busy is passed over", func(t *testing.T) {
		us := startReplicas(t, 2)
		// Were the busy target tried, each request would wait a minute for its
		// connection.
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConnections: 1, ConnectTimeout: time.Minute}, nil)
		us[0].stall.Store(true)
		var held Events
		for range 2 {
			u, s := openStream(t, b, "holds a connection")
			if u == us[0].url() {
				held = s
				break
			}
			_ = drainStream(s)
			_ = s.Close()
		}
		if held == nil {
			t.Fatal("no stream held on target 0")
		}
		defer held.Close()
		for i := range 4 {
			if url, err := sendOnce(b, promptCall("q"+strconv.Itoa(i), false)); err != nil || url != us[1].url() {
				t.Fatalf("request %d went to %q (%v), want target 1, its connections free", i, url, err)
			}
		}
		if got := us[0].hits.Load(); got != 1 {
			t.Errorf("target 0 saw %d requests, want the held stream alone", got)
		}
	})
	t.Run("a request that waited in vain for a connection goes to another target", func(t *testing.T) {
		us := startReplicas(t, 2)
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConnections: 1, ConnectTimeout: 50 * time.Millisecond,
			Health: HealthConfig{EjectAfter: 1}}, nil)
		// Target 0's one connection is taken by a request the pool does not count (as
		// a request of a backend a reload replaced may): only the wait finds it busy.
		release := us[0].holdAnswers()
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.SetRequestURI(us[0].url() + "/chat/completions")
			req.SetBodyString(`{"model":"up","messages":[]}`)
			_ = b.targets[0].client.Do(req, resp)
		}()
		waitUntil(t, "the connection is taken", func() bool { return us[0].hits.Load() == 1 })
		defer func() { release(); <-done }()
		for i := range 4 {
			if url, err := sendOnce(b, promptCall("q"+strconv.Itoa(i), false)); err != nil || url != us[1].url() {
				t.Fatalf("request %d went to %q (%v), want target 1, its connections free", i, url, err)
			}
		}
		if !b.Healthy() || !b.Health()[0].Up {
			t.Error("the gateway's own max_connections being reached ejected target 0")
		}
	})
	t.Run("every target busy is overload", func(t *testing.T) {
		us := startReplicas(t, 2)
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConnections: 1, ConnectTimeout: 30 * time.Millisecond}, nil)
		for _, u := range us {
			u.stall.Store(true)
		}
		_, s0 := openStream(t, b, "a")
		defer s0.Close()
		_, s1 := openStream(t, b, "b")
		defer s1.Close()
		if _, err := sendOnce(b, promptCall("c", false)); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
	})
}
