package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README (Rate limits): a request in flight keeps its concurrency slot across a
// reload of the limiter section where the slot is kept: in Redis (its lease) for a
// request Redis admitted, and in the gateway too, with its buckets, for the fallback
// share; in the gateway alone for one the memory store or the fallback share admitted.
// A reload that keeps its store (and its Redis) counts the request running at the
// reload, and so does one from redis to memory; one from memory to redis does not
// carry over the slot the memory store held, so with concurrency: 1 a second request
// is admitted while the first still runs, unless the new store counts in the gateway
// too (the redis store's share while Redis fails).
func TestReloadCarriesRequestsInFlightWhereTheirSlotIsKept(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	dead := redistest.Start(t)
	dead.Kill()
	pol := mustPolicy(t, "endpoint:chat", Limit{Per: "user", Concurrency: 1})
	// A timeout generous enough that no check falls back to the local buckets (which
	// would count the memory store's request) on a loaded machine.
	rcfg := Config{Store: "redis", Redis: RedisConfig{URL: srv.URL()}, Timeout: 2 * time.Second}
	rcfg2 := rcfg
	rcfg2.Timeout = 3 * time.Second
	down := Config{Store: "redis", Redis: RedisConfig{URL: dead.URL()}, Timeout: 50 * time.Millisecond, Replicas: 1}
	mem := Config{Store: "memory"}
	mem2 := Config{Store: "memory", Timeout: time.Second}
	cases := []struct {
		name          string
		before, after Config
		// carried: the request running at the reload counts after it.
		carried bool
	}{
		{"memory to memory", mem, mem2, true},
		{"redis to the same redis", rcfg, rcfg2, true},
		{"redis to memory", rcfg, mem, true},
		{"memory to redis", mem, rcfg, false},
		{"redis's fallback share to memory", down, mem, true},
		{"memory to redis while it fails", mem, down, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subj := &Subject{User: []byte("user-" + string(rune('a'+i)))}
			prev, err := New(tc.before, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer prev.Close()
			var running, next Ticket
			if err := prev.Take(bg, pol, subj, 0, &running); err != nil {
				t.Fatal(err)
			}
			defer prev.Settle(&running, 0)
			l, err := NewFrom(tc.after, nil, prev)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if wantDown := tc.before.Redis.URL == dead.URL(); prev.Degraded() != wantDown {
				t.Fatalf("the limiter before the reload degraded: %v, want %v", prev.Degraded(), wantDown)
			}
			if wantDown := tc.after.Redis.URL == dead.URL(); l.Degraded() != wantDown {
				t.Fatalf("the limiter after the reload degraded: %v, want %v", l.Degraded(), wantDown)
			}
			err = l.Take(bg, pol, subj, 0, &next)
			if err == nil {
				l.Settle(&next, 0)
			}
			var ref *Refused
			switch {
			case tc.carried && !errors.As(err, &ref):
				t.Errorf("after the reload: %v, want a second request in flight refused by concurrency: 1", err)
			case !tc.carried && err != nil:
				t.Errorf("after the reload: %v, want the request admitted (a store switch does not carry the slot over)", err)
			}
		})
	}
}
