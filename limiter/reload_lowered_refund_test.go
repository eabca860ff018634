package limiter

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The tokens limit of TestReloadLoweredLimitSettledAfterStaysSpent and its lowering
// tenfold: the keys of a limit leave its amounts out, so both count one bucket, whose
// conversion to 600/hour lets go 5400 tokens of a spent 6000.
var (
	refundBefore = Limit{Per: "api_key", Tokens: 6000, Window: "hour"}
	refundAfter  = Limit{Per: "api_key", Tokens: 600, Window: "hour"}
)

// refundRig is a store with what the cases do to it besides checks and settlements.
type refundRig struct {
	l *Limiter
	// replica is another replica sharing l's buckets (the memory store's is l): a
	// check of its own caches no refusal of l's.
	replica func() *Limiter
	// pass moves alice's bucket on by d, as if that much time had passed.
	pass func(d time.Duration)
	// sync returns once l's settlements have reached the store.
	sync func()
}

type refundStore struct {
	name string
	open func(t *testing.T) *refundRig
}

// refundStores are the memory store on a clock of its own and Redis, where prefetch is
// off: units a replica held would take refunds before Redis saw them.
func refundStores() []refundStore {
	return []refundStore{
		{"memory", func(t *testing.T) *refundRig {
			clk := newTestClock()
			l := newMemLimiter(t, clk)
			return &refundRig{l: l, replica: func() *Limiter { return l }, pass: clk.advance, sync: func() {}}
		}},
		{"redis", func(t *testing.T) *refundRig {
			srv := redistest.Start(t)
			rc := redisClient(t, srv.Addr())
			cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}
			l := newRedisLimiter(t, cfg)
			key := bucketKey(mustPolicy(t, "key:team-a", refundAfter), alice, 0)
			return &refundRig{
				l:       l,
				replica: func() *Limiter { return newRedisLimiter(t, cfg) },
				pass:    func(d time.Duration) { ago(t, rc, key, d) },
				sync:    func() { barrier(t, l) },
			}
		}},
	}
}

// remainingUnder is what alice's bucket has free read under pol, as a check would.
func remainingUnder(l *Limiter, pol *Policy) int64 {
	return l.Peek(bg, []Probe{{Policy: pol, Subject: *alice}})[0].Quota.Remaining
}

// convert checks nothing under pol on l: a check of no tokens is admitted whatever the
// bucket owes, and converts the bucket to pol's limit as any check does.
func convert(t *testing.T, l *Limiter, pol *Policy) {
	t.Helper()
	var tk Ticket
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("a check of no tokens: %v", err)
	}
	l.Settle(&tk, 0)
}

func admitTokens(t *testing.T, l *Limiter, pol *Policy, est int64) *Ticket {
	t.Helper()
	tk := new(Ticket)
	if err := l.Take(bg, pol, alice, est, tk); err != nil {
		t.Fatalf("%d tokens: %v", est, err)
	}
	return tk
}

// README: a reload that lowers a limit keeps what the bucket owes, up to the new
// burst, and "a spent bucket stays spent under a lowered rate or burst". Requests
// admitted before the reload settle after the first check under the lowered limit
// (which converted the bucket), and must leave it as they leave it settled before that
// check: what they refund comes off what the conversion let go first. Read under the
// lowered limit and under the old one (a raise back to it, or a replica still on it),
// the bucket is the same in both orders.
func TestReloadLoweredRefundAsIfSettledBefore(t *testing.T) {
	// Not parallel: under the old limit Redis's clock refills a token every 0.6 s, and
	// both orders' runs must read the same.
	type request struct{ est, used int64 }
	cases := []struct {
		name string
		// settled are admitted and settled before the reload; running are admitted
		// before it, after settled, and settle after the first check under the
		// lowered limit or, in the order compared, before it.
		settled, running []request
		// raise checks under the old limit again after the lowered one.
		raise bool
		// lowered is what the lowered limit finds free at the end.
		lowered int64
	}{
		{"refund within what the cap let go", nil, []request{{6000, 3000}}, false, 0},
		{"refund beyond what the cap let go", nil, []request{{6000, 300}}, false, 300},
		{"two requests in flight within it", nil, []request{{3000, 1000}, {3000, 200}}, false, 0},
		{"two requests in flight beyond it", nil, []request{{3000, 0}, {3000, 100}}, false, 500},
		// 8900 owed at the reload, 2900 of them past the bucket: the lowered rate
		// keeps the overdraft in time, 290 tokens, and the refund takes it first.
		{"overdraft owed at the reload", []request{{100, 3000}}, []request{{5900, 0}}, false, 0},
		// 6300 owed, the overdraft's 300 kept as 30: 5900 refunded leave 400.
		{"overdraft owed at the reload, refund beyond it", []request{{100, 400}}, []request{{5900, 0}}, false, 200},
		{"raise after a lower, refund within what the cap let go", nil, []request{{6000, 3000}}, true, 0},
		{"raise after a lower, refund beyond it", nil, []request{{6000, 300}}, true, 300},
	}
	run := func(t *testing.T, st refundStore, settleFirst bool, settled, running []request, raise bool) (lowered, old int64) {
		rig := st.open(t)
		before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
		var done, flying []*Ticket
		for _, rq := range settled {
			done = append(done, admitTokens(t, rig.l, before, rq.est))
		}
		for _, rq := range running {
			flying = append(flying, admitTokens(t, rig.l, before, rq.est))
		}
		for i, tk := range done {
			rig.l.Settle(tk, settled[i].used)
		}
		rig.sync()
		settle := func() {
			for i, tk := range flying {
				rig.l.Settle(tk, running[i].used)
			}
			rig.sync()
		}
		if settleFirst {
			settle()
		}
		convert(t, rig.replica(), after)
		if raise {
			convert(t, rig.replica(), before)
		}
		if !settleFirst {
			settle()
		}
		return remainingUnder(rig.l, after), remainingUnder(rig.l, before)
	}
	for _, st := range refundStores() {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				lowered, old := run(t, st, false, tc.settled, tc.running, tc.raise)
				wantLowered, wantOld := run(t, st, true, tc.settled, tc.running, tc.raise)
				if wantLowered != tc.lowered {
					t.Fatalf("settled before the reload: %d free under the lowered limit, want %d", wantLowered, tc.lowered)
				}
				if lowered != wantLowered || old != wantOld {
					t.Errorf("settled after it: %d free under the lowered limit, %d under the old; settled before: %d and %d",
						lowered, old, wantLowered, wantOld)
				}
			})
		}
	}
}

// A request admitted under the lowered limit, after the reload, refunds to the bucket
// itself: what the conversion let go was owed by the requests before it, and this
// refund taken off it would leave the bucket spent.
func TestReloadLoweredRefundOfRequestAfterIt(t *testing.T) {
	for _, st := range refundStores() {
		t.Run(st.name, func(t *testing.T) {
			rig := st.open(t)
			before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
			running := admitTokens(t, rig.l, before, 6000)
			convert(t, rig.replica(), after)
			rig.pass(30 * time.Minute) // 300 tokens at 600/hour
			later := admitTokens(t, rig.l, after, 300)
			rig.l.Settle(later, 0)
			rig.sync()
			if got := remainingUnder(rig.l, after); got != 300 {
				t.Errorf("%d free after the refund of 300 tokens admitted under the lowered limit, want 300", got)
			}
			// The request from before the reload still refunds to what was let go.
			rig.l.Settle(running, 3000)
			rig.sync()
			if got := remainingUnder(rig.l, after); got != 300 {
				t.Errorf("%d free after a refund of 3000 of the 5400 tokens let go, want 300", got)
			}
		})
	}
}

// What a conversion let go is worth nothing once the bucket is full again: a refund
// settled afterwards comes off what the bucket owes then, as a request that settles
// after its charge refilled does without any reload.
func TestReloadLoweredLetGoEndsWithTheRefill(t *testing.T) {
	for _, st := range refundStores() {
		t.Run(st.name, func(t *testing.T) {
			rig := st.open(t)
			before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
			running := admitTokens(t, rig.l, before, 6000)
			convert(t, rig.replica(), after)
			rig.pass(time.Hour + time.Second)
			admitTokens(t, rig.replica(), after, 300)
			rig.l.Settle(running, 5900) // 100 refunded
			rig.sync()
			if got := remainingUnder(rig.l, after); got != 400 {
				t.Errorf("%d free, want 400: 300 charged after the refill, 100 refunded", got)
			}
		})
	}
}

// The memory store converts a bucket at each reload: lowered, raised, spent again and
// lowered again before it refills, it lets go at each lowering, and keeps what it let
// go, for the refunds of the requests before either, up to the old bucket: no refund
// can take back more of it.
func TestMemoryLetGoAtMostTheOldBucket(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
	admitTokens(t, l, before, 6000)
	convert(t, l, after)
	convert(t, l, before) // 600 owed: 5400 free again
	admitTokens(t, l, before, 5400)
	convert(t, l, after)
	b, _ := after.bucketOf(0, alice)
	sh := &l.mem.shards[shardOf(b)]
	sh.mu.Lock()
	let := sh.m[b].let
	sh.mu.Unlock()
	if let.units != 6000 {
		t.Errorf("%v tokens let go after two lowerings of 5400 each, want 6000 (the old bucket)", let.units)
	}
}

// letOf is what the conversion of a Redis bucket whose value is v let go: the units of
// the spent bucket and of the overdraft, and the converting rule's interval and span
// (check.lua: a NUL, 'f' and four doubles before the capped mark).
func letOf(t *testing.T, v string) (units, over, iv, tau float64, ok bool) {
	t.Helper()
	n := len(v)
	if n < 54 || v[n-54] != 0 || v[n-53] != 'f' {
		return 0, 0, 0, 0, false
	}
	f := func(at int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[at : at+8]))) }
	return f(n - 52), f(n - 44), f(n - 36), f(n - 28), true
}

// Replicas still on the old limit during a rolling reload read a capped bucket keeping
// only the room the lowered limit left (TestReloadLoweredLimitNotSpentAgainByOldLimit).
// A request the old limit admitted before the reload settles on its replica after
// both have checked: refunding within what the cap let go, neither limit finds room;
// beyond it, the refund undoes the cap, and both read the bucket as they read it
// settled before the reload. What was let go never grows as the replicas read the
// bucket in turn.
func TestRedisRefundAcrossRollingReload(t *testing.T) {
	cases := []struct {
		name          string
		used          int64
		lowered, old  int64
		letAfterTurns float64 // what was let go once the request settled; 0: nothing
	}{
		{"refund within what the cap let go", 3000, 0, 0, 2400},
		{"refund beyond it", 300, 300, 5700, 0},
	}
	for _, tc := range cases {
		for _, settleFirst := range []bool{true, false} {
			name := tc.name + "/settled after both checked"
			if settleFirst {
				name = tc.name + "/settled before the reload"
			}
			t.Run(name, func(t *testing.T) {
				srv := redistest.Start(t)
				rc := redisClient(t, srv.Addr())
				cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}
				before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
				key := bucketKey(after, alice, 0)
				old := newRedisLimiter(t, cfg)
				running := admitTokens(t, old, before, 6000)
				settle := func() {
					old.Settle(running, tc.used)
					barrier(t, old)
				}
				if settleFirst {
					settle()
				}
				for turn := range 3 {
					convert(t, newRedisLimiter(t, cfg), after)
					if turn == 0 && !settleFirst {
						v, err := rc.Get(bg, key).Result()
						if err != nil {
							t.Fatal(err)
						}
						// Less what refilled since the request was admitted.
						if units, _, _, _, ok := letOf(t, v); !ok || units > 5400 || units < 5399 {
							t.Fatalf("let go at the reload: %v (recorded %v), want 5400 tokens", units, ok)
						}
					}
					convert(t, newRedisLimiter(t, cfg), before)
					if turn == 0 && !settleFirst {
						settle()
					}
				}
				if got := remainingUnder(old, after); got != tc.lowered {
					t.Errorf("%d free under the lowered limit, want %d", got, tc.lowered)
				}
				if got := remainingUnder(old, before); got != tc.old {
					t.Errorf("%d free under the old limit, want %d", got, tc.old)
				}
				if tc.old == 0 {
					if n := admitN(t, newRedisLimiter(t, cfg), before, alice, 1, 1); n != 0 {
						t.Errorf("a replica on the old limit admitted a token from a spent bucket")
					}
				}
				if !settleFirst {
					v, err := rc.Get(bg, key).Result()
					if err != nil {
						t.Fatal(err)
					}
					units, _, _, _, _ := letOf(t, v)
					if units > tc.letAfterTurns || units < tc.letAfterTurns-1 {
						t.Errorf("%v tokens let go after three turns of checks under both limits, want %v", units, tc.letAfterTurns)
					}
				}
			})
		}
	}
}

// A capped bucket as the previous version of check.lua writes it holds no record of
// what its cap let go: the script reads it as letting nothing go (a refund comes off
// the bucket whole) and still capped (the old limit finds only the room the lowered
// one leaves).
func TestRedisReadsCappedBucketWithoutLetGo(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}
	l := newRedisLimiter(t, cfg)
	before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
	running := admitTokens(t, l, before, 6000)
	// 600 tokens owed at 6 s each, capped to the lowered bucket of an hour.
	tat := redisNow(t, rc).UnixMicro() - 1_700_000_000_000_000 + 3600_000_000
	tail := binary.LittleEndian.AppendUint64([]byte{0}, math.Float64bits(3600_000_000))
	tail = binary.LittleEndian.AppendUint64(append(tail, 0), math.Float64bits(6_000_000))
	v := strconv.FormatInt(tat, 10) + "\x00c" + string(tail)
	key := bucketKey(after, alice, 0)
	if err := rc.Set(bg, key, v, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	l.Settle(running, 5900) // 100 refunded
	barrier(t, l)
	if got := remainingUnder(l, after); got != 100 {
		t.Errorf("%d free under the lowered limit, want 100: nothing let go that the value says", got)
	}
	if got := remainingUnder(l, before); got != 100 {
		t.Errorf("%d free under the old limit, want 100: the bucket is still capped", got)
	}
	convert(t, newRedisLimiter(t, cfg), before)
	if n := admitN(t, newRedisLimiter(t, cfg), before, alice, 101, 1); n != 0 {
		t.Errorf("101 tokens admitted under the old limit from a capped bucket with 100 free")
	}
}

// The previous version of check.lua reads a bucket's TAT with tonumber, its span and
// interval from the value's last 17 bytes and its capped mark from the two before
// them: what a cap let go goes before the mark, so that through a rolling upgrade its
// replicas read the buckets this version writes as they read their own.
func TestRedisLetGoReadableByPreviousVersion(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}
	l := newRedisLimiter(t, cfg)
	before, after := mustPolicy(t, "key:team-a", refundBefore), mustPolicy(t, "key:team-a", refundAfter)
	admitTokens(t, l, before, 6000)
	convert(t, newRedisLimiter(t, cfg), after)
	key := bucketKey(after, alice, 0)
	v, err := rc.Get(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	units, over, iv, tau, ok := letOf(t, v)
	// Less what refilled since the request was admitted.
	if !ok || units > 5400 || units < 5399 || over != 0 || iv != 6_000_000 || tau != 3600_000_000 {
		t.Fatalf("let go %v, overdraft %v, by the rule of %v us per token and span %v us (recorded %v); want 5400, 0, 6e6, 3.6e9",
			units, over, iv, tau, ok)
	}
	const previous = `
local v = redis.call('GET', KEYS[1])
local span, iv = struct.unpack('<dxd', v, #v - 16)
local capped = string.byte(v, -9) == 0 and string.byte(v, -18) == 0 and
  string.byte(v, -19) == 99 and string.byte(v, -20) == 0
return {string.format('%.17g', tonumber(v)), string.format('%.17g', span), string.format('%.17g', iv), capped and 1 or 0}`
	got, err := rc.Eval(context.Background(), previous, []string{key}).Slice()
	if err != nil {
		t.Fatal(err)
	}
	num := func(i int) float64 {
		s, _ := got[i].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		return f
	}
	if num(0) != storedTAT(t, v) || num(1) != 3600_000_000 || num(2) != 6_000_000 || got[3] != int64(1) {
		t.Errorf("the previous version reads TAT %v, span %v, interval %v, capped %v; want %v, 3.6e9, 6e6, 1",
			num(0), num(1), num(2), got[3], storedTAT(t, v))
	}
	if r := l.Peek(bg, []Probe{{Policy: before, Subject: *alice}})[0]; r.Quota.Remaining != 0 {
		t.Errorf("Peek under the old limit: %d free, want 0 (capped)", r.Quota.Remaining)
	}
}
