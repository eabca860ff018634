package providers

import (
	"errors"
	"testing"
	"time"
)

// max_connections holds across reloads: the backend built under the same name counts
// the connections its predecessor's requests still hold, takes a raised cap at once,
// and gets each connection back when the request holding it ends (a retired backend
// closes the connections its requests leave idle). Every place is given back once
// the connections close.
func TestConnectionCapHoldsAcrossReload(t *testing.T) {
	cfg := func(u *replica, conns int) Config {
		// Idle connections would otherwise be kept a minute, and a request would
		// wait a minute for one.
		return Config{BaseURL: u.url(), MaxConnections: conns, ConnectTimeout: time.Minute, IdleConnTimeout: time.Minute}
	}
	// reload builds and activates a backend replacing old.
	reload := func(t *testing.T, ps *Pools, c Config) *Backend {
		b := newPoolBackend(t, c, ps)
		b.Activate()
		return b
	}
	t.Run("a connection the replaced backend's stream holds counts", func(t *testing.T) {
		u := startReplica(t)
		u.stall.Store(true)
		ps := NewPools()
		old := reload(t, ps, cfg(u, 1))
		_, s := openStream(t, old, "holds the only connection")
		cur := reload(t, ps, cfg(u, 1))
		call := promptCall("after the reload", false)
		call.Deadline = time.Now().Add(50 * time.Millisecond)
		if _, err := sendOnce(cur, call); !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrConnect) {
			t.Fatalf("got %v, want ErrOverloaded: the one connection is busy", err)
		}
		if n := u.hits.Load(); n != 1 {
			t.Fatalf("the upstream saw %d requests, want the stream's alone", n)
		}
		_ = s.Close()
		if _, err := sendOnce(cur, promptCall("once it closed", false)); err != nil {
			t.Fatalf("with the stream closed: %v", err)
		}
		gate := &cur.pool.states[0].conns
		cur.targets[0].client.CloseIdleConnections()
		if n := gate.open.Load(); n != 0 {
			t.Errorf("%d places held with every connection closed, want 0", n)
		}
	})
	t.Run("a connection the replaced backend's request leaves idle is closed", func(t *testing.T) {
		u := startReplica(t)
		ps := NewPools()
		old := reload(t, ps, cfg(u, 1))
		release := u.holdAnswers()
		done := make(chan error, 1)
		go func() {
			_, err := sendOnce(old, promptCall("held", false))
			done <- err
		}()
		waitUntil(t, "the request reaches the upstream", func() bool { return u.hits.Load() == 1 })
		cur := reload(t, ps, cfg(u, 1))
		u.hold.Store(nil)
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		call := promptCall("after the reload", false)
		call.Deadline = time.Now().Add(5 * time.Second)
		if _, err := sendOnce(cur, call); err != nil {
			t.Fatalf("got %v: the replaced backend's idle connection still counts", err)
		}
	})
	t.Run("a raised cap applies at once", func(t *testing.T) {
		u := startReplica(t)
		u.stall.Store(true)
		ps := NewPools()
		old := reload(t, ps, cfg(u, 1))
		_, s := openStream(t, old, "holds a connection")
		defer s.Close()
		cur := reload(t, ps, cfg(u, 2))
		call := promptCall("after the reload", false)
		call.Deadline = time.Now().Add(5 * time.Second)
		if _, err := sendOnce(cur, call); err != nil {
			t.Fatalf("got %v with max_connections raised 1 -> 2 and one connection busy", err)
		}
	})
	t.Run("a request of the replaced config has its successor's idle connection closed", func(t *testing.T) {
		// A request that took the replaced config before the reload sends on the
		// retired backend; the target's one connection is idle in the new
		// backend's client, which no request of the old one can use.
		u := startReplica(t)
		ps := NewPools()
		c := cfg(u, 1)
		c.ConnectTimeout = 300 * time.Millisecond
		old := reload(t, ps, c)
		cur := reload(t, ps, c)
		if _, err := sendOnce(cur, promptCall("after the reload", false)); err != nil {
			t.Fatal(err)
		}
		if n := cur.targets[0].client.IdleConnsCount(); n != 1 {
			t.Fatalf("%d idle connections in the new backend's client, want 1", n)
		}
		start := time.Now()
		if _, err := sendOnce(old, promptCall("taken before the reload", false)); err != nil {
			t.Errorf("got %v after %v with the only connection idle; want it served (no connection is busy)",
				err, time.Since(start).Round(time.Millisecond))
		}
	})
}
