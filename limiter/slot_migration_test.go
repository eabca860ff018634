package limiter

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// slotOwner returns key's slot, the node of addrs that owns it (key must exist) and
// another node.
func slotOwner(t *testing.T, addrs []string, key string) (slot, src, dst string) {
	t.Helper()
	slot, err := redistest.Command(addrs[0], "CLUSTER", "KEYSLOT", key)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		// Every node but the owner answers MOVED.
		_, err := redistest.Command(a, "EXISTS", key)
		if err == nil {
			src = a
		} else if !strings.HasPrefix(err.Error(), "MOVED") {
			t.Fatal(err)
		}
	}
	for _, a := range addrs {
		if a != src {
			dst = a
			break
		}
	}
	if src == "" {
		t.Fatal("no owner")
	}
	return slot, src, dst
}

func nodeID(t *testing.T, addr string) string {
	t.Helper()
	id, err := redistest.Command(addr, "CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// migrate puts the slot of key, which must exist, into the state redis-cli --cluster
// reshard leaves it in while it moves the slot's keys: IMPORTING on the node it moves
// to, MIGRATING on its owner, where its keys still are.
func migrate(t *testing.T, addrs []string, key string) (slot string) {
	t.Helper()
	slot, src, dst := slotOwner(t, addrs, key)
	if _, err := redistest.Command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", nodeID(t, src)); err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", nodeID(t, dst)); err != nil {
		t.Fatal(err)
	}
	return slot
}

// While the slot holding an API key's bucket is being resharded (MIGRATING on its
// owner, IMPORTING on the node it moves to), the bucket's key is still on its owner,
// where Redis serves every command on it. Checks on that key must still be answered
// by Redis, not fall back to the replica's share: Redis refuses a call with TRYAGAIN
// when some of its keys are missing, and a call's marker hardly ever exists.
func TestRedisClusterSlotMigratingAnsweredByRedis(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	off := time.Duration(0)
	var logs logBuffer
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{Addrs: addrs}, Prefetch: &off}, slog.New(slog.NewTextHandler(&logs, nil)))
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "hour"})
	if got := admitN(t, l, pol, alice, 0, 2); got != 2 {
		t.Fatalf("admitted %d, want 2", got)
	}
	key := bucketKey(pol, alice, 0)
	slot := migrate(t, addrs, key)
	if bobSlot, _ := redistest.Command(addrs[0], "CLUSTER", "KEYSLOT", bucketKey(pol, bob, 0)); bobSlot == slot {
		t.Fatal("the test needs bob's bucket on another slot")
	}
	before := l.Stats()
	var tk Ticket
	err := l.Take(bg, pol, alice, 0, &tk)
	after := l.Stats()
	if err != nil || after.Fallbacks != before.Fallbacks || after.RedisAnswered == before.RedisAnswered {
		t.Errorf("check on a slot being migrated (its key still on the owner): err %v, fallbacks %d -> %d, answered by Redis %d -> %d; want answered by Redis",
			err, before.Fallbacks, after.Fallbacks, before.RedisAnswered, after.RedisAnswered)
	}
	if err == nil {
		l.Settle(&tk, 0)
	}
	// The slot's trouble is not Redis failing: another API key, on a stable slot, is
	// still answered by Redis.
	before = l.Stats()
	if err := l.Take(bg, pol, bob, 0, &tk); err != nil {
		t.Fatal(err)
	}
	l.Settle(&tk, 0)
	if after := l.Stats(); after.Fallbacks != before.Fallbacks {
		t.Errorf("a check on another, stable slot answered from the fallback share too (limiter degraded: %v); log:\n%s", l.Degraded(), logs.String())
	}
	// Alice's bucket still counts every request it admitted: 3 of 5.
	if got := admitN(t, l, pol, alice, 0, 3); got != 2 {
		t.Errorf("admitted %d more during the migration, want 2", got)
	}
}

// During a migration each of a request's buckets on the slot is checked by Redis
// wherever its key is: one still on its owner, one absent (a full bucket, a concurrency
// limit with no request in flight), which the node the slot moves to serves. The check
// stays all or nothing, and a slot taken during the migration is released.
func TestRedisClusterSlotMigratingKeysSplit(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{Addrs: addrs}, Prefetch: durationPtr(0)})
	pol := mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 3, Window: "hour"},
		Limit{Per: "api_key", Tokens: 1000, Window: "hour"},
		Limit{Per: "api_key", Concurrency: 1})
	var tk Ticket
	// Charged nothing, the tokens bucket stays full, its key absent; the concurrency
	// key goes with the settlement.
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	l.Settle(&tk, 0)
	barrier(t, l)
	migrate(t, addrs, bucketKey(pol, alice, 0))
	before := l.Stats()

	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatalf("request 2 during the migration: %v", err)
	}
	var second Ticket
	if err := l.Take(bg, pol, alice, 100, &second); err == nil || second.src != srcNone {
		t.Fatalf("a second request in flight: %v, want refused by the concurrency limit", err)
	}
	l.Settle(&tk, 200)
	barrier(t, l)
	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatalf("request 3 after the first ended: %v", err)
	}
	l.Settle(&tk, 100)
	barrier(t, l)
	// The requests bucket is spent: the charges on the other keys go back.
	if err := l.Take(bg, pol, alice, 100, &tk); err == nil {
		t.Fatal("request 4 admitted past requests: 3")
	}
	barrier(t, l)
	if s := l.Stats(); s.Fallbacks != before.Fallbacks || s.Degraded {
		t.Errorf("checks during the migration answered without Redis: fallbacks %d -> %d, degraded %v",
			before.Fallbacks, s.Fallbacks, s.Degraded)
	}
	// The same tokens bucket, checked alone.
	tokens := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 1000, Window: "hour"})
	if err := l.Take(bg, tokens, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	if tk.Tokens.Remaining != 700 {
		t.Errorf("tokens left %d, want 700 (200 and 100 settled, request 4's charge given back)", tk.Tokens.Remaining)
	}
}

// A slot that Redis Cluster refuses alone (here not served by any node, while the
// cluster serves the others) is not Redis failing: its requests are answered from
// the replica's share, and every other check still by Redis.
func TestRedisClusterSlotRefusalDegradesNothing(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	for _, a := range addrs {
		if _, err := redistest.Command(a, "CONFIG", "SET", "cluster-require-full-coverage", "no"); err != nil {
			t.Fatal(err)
		}
	}
	l := newRedisLimiter(t, Config{Redis: RedisConfig{Addrs: addrs}, Prefetch: durationPtr(0)})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "hour"})
	if got := admitN(t, l, pol, alice, 0, 1); got != 1 {
		t.Fatalf("admitted %d, want 1", got)
	}
	slot, src, _ := slotOwner(t, addrs, bucketKey(pol, alice, 0))
	if _, err := redistest.Command(src, "CLUSTER", "DELSLOTS", slot); err != nil {
		t.Fatal(err)
	}
	before := l.Stats()
	var tk Ticket
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcFallback {
		t.Fatalf("check on a slot not served: %v from %d, want admitted from the share", err, tk.src)
	}
	l.Settle(&tk, 0)
	if err := l.Take(bg, pol, bob, 0, &tk); err != nil || tk.src != srcRedis {
		t.Errorf("check on a served slot: %v from %d, want answered by Redis", err, tk.src)
	}
	l.Settle(&tk, 0)
	if s := l.Stats(); s.Degraded || s.Fallbacks != before.Fallbacks+1 {
		t.Errorf("degraded %v, fallbacks %d -> %d; want undegraded, one fallback", s.Degraded, before.Fallbacks, s.Fallbacks)
	}
}

// A call that carries checks without a marker (sent again on a slot being migrated)
// refuses to run past the time a marked call would set its marker, and writes
// nothing: run then, its answer might come too late for the gateway, and with no
// marker nothing would fence or compensate it.
func TestRedisUnmarkedCallRefusesToRunLate(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "hour"})
	key := bucketKey(pol, alice, 0)
	call := func(runBy int64) error {
		var tk Ticket
		pol.locate(alice, 0, &tk)
		tk.pol = pol
		w := l.rs.newWaiter(&tk)
		defer l.rs.release(w)
		c := &call{args: []any{"eval", checkScript, 0}, recs: []rec{{w: w, nb: 1}}}
		c.blob = append(c.blob, opTake, 1)
		l.rs.appendBucket(c, w, 0)
		l.rs.seal(c)
		var after numArg
		after.set(runBy)
		c.args[len(c.args)-1] = &after
		return rc.Do(bg, c.args...).Err()
	}
	if err := call(1); !redis.HasErrorPrefix(err, "TGLATE") || !scriptNotRun(err) || !slotRefusal(err) {
		t.Fatalf("run past its time: %v, want TGLATE", err)
	}
	if n, err := rc.Exists(bg, key).Result(); err != nil || n != 0 {
		t.Fatalf("a call refused late wrote its bucket: %d %v", n, err)
	}
	if err := call(1 << 62); err != nil {
		t.Fatalf("run in time: %v", err)
	}
	if n, err := rc.Exists(bg, key).Result(); err != nil || n != 1 {
		t.Errorf("a call run in time left no bucket: %d %v", n, err)
	}
}

// The errors that refuse one call for its slot, or for its lateness, answer that
// call's requests without Redis and leave the limiter undegraded; any other failure
// degrades it.
func TestSlotRefusal(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{replyError("ASK 1953 127.0.0.1:7001"), true},
		{replyError("MOVED 1953 127.0.0.1:7001"), true},
		{replyError("CLUSTERDOWN Hash slot not served"), true},
		{replyError("TGLATE this call reached Redis past the time it was to run by"), true},
		{replyError("CLUSTERDOWN The cluster is down"), false},
		{replyError("LOADING Redis is loading the dataset in memory"), false},
		{replyError("NOAUTH Authentication required."), false},
		{redis.ErrClosed, false},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := slotRefusal(tc.err); got != tc.want {
				t.Errorf("slotRefusal(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
