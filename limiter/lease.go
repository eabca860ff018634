package limiter

import (
	"cmp"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Concurrency leases: a slot taken in Redis is a member of its bucket's sorted set,
// scored by when it expires, so that the slots of a replica that dies free without
// it. A request may run longer than any lease (a long stream), so the replica renews
// the slots of its requests in flight with every heartbeat: a slot lapses only once
// its replica has not renewed it for the lease, because it died or cannot reach
// Redis. The lease is at least three heartbeats, so one slow or failed heartbeat
// does not lose a live request's slot; a slot Redis itself lost (a restart, a
// failover) is added back by the next heartbeat (renewLeases).

// minLeaseBeats is the shortest lease, in heartbeat periods.
const minLeaseBeats = 3

// leaseSlot is one concurrency slot this replica holds in Redis.
type leaseSlot struct {
	tag, bucket uint64
	member      uint64 // the lease ID, the sorted set's member
	used        bool
}

type leases struct {
	lmu   sync.Mutex
	slots []leaseSlot // indexed by Ticket.slot; grows to the most requests ever in flight
	free  []int32     // unused indexes of slots
}

// hold records a slot taken for a request and returns its index for unhold. It
// allocates only when more requests are in flight than ever before.
func (ls *leases) hold(tag, bucket, member uint64) int32 {
	ls.lmu.Lock()
	var i int32
	if n := len(ls.free); n > 0 {
		i, ls.free = ls.free[n-1], ls.free[:n-1]
	} else {
		i = int32(len(ls.slots))
		ls.slots = append(ls.slots, leaseSlot{})
	}
	ls.slots[i] = leaseSlot{tag: tag, bucket: bucket, member: member, used: true}
	ls.lmu.Unlock()
	return i
}

// unhold forgets slot i, held under member, once its request has ended; the release
// itself travels with the settlements.
func (ls *leases) unhold(i int32, member uint64) {
	ls.lmu.Lock()
	if i >= 0 && int(i) < len(ls.slots) && ls.slots[i].used && ls.slots[i].member == member {
		ls.slots[i].used = false
		ls.free = append(ls.free, i)
	}
	ls.lmu.Unlock()
}

// holdShared gives each concurrency slot of t, a request the fallback share admitted,
// a lease held like those of the requests Redis admitted. Redis cannot be told now,
// but the heartbeat that finds it answering again adds the leases Redis lacks before
// checks go back to it (renewLeases, probeOnce), so that the cap counts these requests
// as long as they run; counted only in this replica's share, they would let Redis
// admit the whole cap again on top of them. A lease of its own: one a failed check
// asked for is released already (keepReleases, abandoned).
func (s *redisStore) holdShared(t *Ticket) {
	for i := range int(t.n) {
		if t.pol.rules[i].kind == kindConcurrency {
			t.lease[i] = rand.Uint64() //nolint:gosec // a lease ID must be unique, not secret
			t.slot[i] = s.hold(t.tag[i], t.bucket[i], t.lease[i])
		}
	}
}

// releaseShared forgets the leases holdShared gave t and queues their release, which
// is kept and sent again until Redis answers (sendAgain): the heartbeat may have added
// them to Redis.
func (s *redisStore) releaseShared(t *Ticket) {
	queued := false
	s.mu.Lock()
	for i := range int(t.n) {
		if t.pol.rules[i].kind == kindConcurrency {
			s.unhold(t.slot[i], t.lease[i])
			s.queueAdjustLocked(adjustOp{op: opRelease, bucket: t.bucket[i], tag: t.tag[i], member: t.lease[i]})
			queued = true
		}
	}
	s.mu.Unlock()
	if queued {
		s.kickLater()
	}
}

// releaseHeld queues the release of every slot still held and forgets them. A limiter
// is closed with slots held only when their requests outlive it, as those a shutdown
// whose grace ran out leaves open do until the process exits: no heartbeat renews
// them once it is closed, and left in Redis they would refuse their keys on every
// replica for the whole lease. A request that settles afterwards finds its slot
// forgotten (unhold); the release it queues, sent or not, is a ZREM of a member gone.
func (s *redisStore) releaseHeld() {
	s.mu.Lock()
	s.lmu.Lock()
	n := 0
	for i := range s.slots {
		sl := &s.slots[i]
		if !sl.used {
			continue
		}
		s.queueAdjustLocked(adjustOp{op: opRelease, bucket: sl.bucket, tag: sl.tag, member: sl.member})
		sl.used = false
		s.free = append(s.free, int32(i))
		n++
	}
	s.lmu.Unlock()
	s.mu.Unlock()
	if n > 0 {
		s.kickLater()
	}
}

// heldSlot is a copy of a slot this replica holds, with its index in slots.
type heldSlot struct {
	leaseSlot
	i int32
}

// renewLeases extends every slot this replica holds to nowUS (Redis's clock, as
// check.lua counts it) plus the lease, and its key's expiry with it.
//
// The renewal is ZADD XX: a slot whose release reached Redis after the copy of the
// held slots below was taken must not be added back. XX also leaves out a slot that
// Redis lost while its request still runs (a Redis restarted empty, a failover to a
// replica that lagged, a Cluster shard's failover, or a lease that lapsed while this
// replica could not reach Redis); the cap would then admit more requests than it
// allows, so ZADD CH counts what it renewed, and a key that renewed fewer members than
// it was sent has lost some, or had some released. Those this replica still holds
// after the reply were lost and are added back with a plain ZADD (addBack). Redis
// counts a lost slot again only from that heartbeat on: a check on a restarted Redis
// before it, one heartbeat at most after Redis answers again, can admit past the
// cap, because Redis has forgotten the slots and only their holders can tell it.
// Counting per key, rather than noticing that this replica's entry in the replicas
// set is gone, also catches a Cluster shard that failed over alone; and it costs a
// release nothing, where a tombstone for the renewal to check would cost each one a
// write.
func (s *redisStore) renewLeases(ctx context.Context, nowUS int64) error {
	held := s.heldSlots(nil)
	if len(held) == 0 {
		return nil
	}
	cmds, err := s.addLeases(ctx, held, nowUS, true)
	if err != nil {
		return err
	}
	var gone []heldSlot
	for i := 0; i < len(held); {
		j := sameKey(held, i)
		if cmds[0].Val() < int64(j-i) {
			gone = append(gone, held[i:j]...)
		}
		cmds = cmds[1:]
		i = j
	}
	if len(gone) == 0 {
		return nil
	}
	return s.addBack(ctx, gone, nowUS)
}

// addBack adds back the slots of gone that this replica still holds. A request may
// end while they travel, its release reach Redis first and the ZADD undo it:
// releaseAgain sends such a slot's release once more, after the ZADD. Releases are
// ZREMs of a unique member, harmless twice; only the slots a renewal missed take this
// path, so an ordinary release racing a renewal costs nothing more. A member the
// renewal found already at its new score is not counted by CH; adding it back changes
// nothing.
func (s *redisStore) addBack(ctx context.Context, gone []heldSlot, nowUS int64) error {
	if gone = s.heldSlots(gone); len(gone) == 0 {
		return nil
	}
	_, err := s.addLeases(ctx, gone, nowUS, false)
	// Whatever the error: the ZADD may have run.
	s.releaseAgain(gone)
	return err
}

// releaseAgain queues a release of each slot of added that is no longer held, once
// the call that added them back has returned.
func (s *redisStore) releaseAgain(added []heldSlot) {
	var again []adjustOp
	s.lmu.Lock()
	for _, h := range added {
		if sl := s.slots[h.i]; !sl.used || sl.member != h.member {
			again = append(again, adjustOp{op: opRelease, bucket: h.bucket, tag: h.tag, member: h.member})
		}
	}
	s.lmu.Unlock()
	if len(again) > 0 {
		s.mu.Lock()
		for _, a := range again {
			s.queueAdjustLocked(a)
		}
		s.mu.Unlock()
		s.kickLater()
	}
}

// heldSlots returns a copy of the slots held now, sorted by key; with only, those of
// only that are still held. The copy keeps requests from waiting on a round trip;
// once a heartbeat, its allocation does not matter.
func (s *redisStore) heldSlots(only []heldSlot) []heldSlot {
	var held []heldSlot
	s.lmu.Lock()
	if only == nil {
		for i, sl := range s.slots {
			if sl.used {
				held = append(held, heldSlot{sl, int32(i)})
			}
		}
	} else {
		for _, h := range only {
			if sl := s.slots[h.i]; sl.used && sl.member == h.member {
				held = append(held, h)
			}
		}
	}
	s.lmu.Unlock()
	slices.SortFunc(held, func(a, b heldSlot) int {
		return cmp.Or(cmp.Compare(a.tag, b.tag), cmp.Compare(a.bucket, b.bucket))
	})
	return held
}

// sameKey returns the end of the run of held, sorted by key, that starts at i.
func sameKey(held []heldSlot, i int) int {
	j := i + 1
	for j < len(held) && held[j].tag == held[i].tag && held[j].bucket == held[i].bucket {
		j++
	}
	return j
}

// addLeases sets the slots of held, sorted by key, to expire at nowUS plus the lease,
// and their keys with them, in one round trip with one ZADD per key; renew (XX) only
// updates members that are there. It returns the ZADDs, which with renew count the
// members renewed (CH).
func (s *redisStore) addLeases(ctx context.Context, held []heldSlot, nowUS int64, renew bool) ([]*redis.IntCmd, error) {
	expiry := float64(nowUS) + s.leaseUS
	keyTTL := time.Duration(s.leaseUS)*time.Microsecond + time.Second // as check.lua
	pipe := s.c.Pipeline()
	var cmds []*redis.IntCmd
	var k keyArg
	var member [8]byte
	for i := 0; i < len(held); {
		j := sameKey(held, i)
		zs := make([]redis.Z, 0, j-i)
		for _, h := range held[i:j] {
			// The member as check.lua takes it from the blob: the lease's 8 bytes.
			binary.LittleEndian.PutUint64(member[:], h.member)
			zs = append(zs, redis.Z{Score: expiry, Member: string(member[:])})
		}
		k.set(held[i].tag, held[i].bucket)
		key := k.String()
		cmds = append(cmds, pipe.ZAddArgs(ctx, key, redis.ZAddArgs{XX: renew, Ch: renew, Members: zs}))
		pipe.PExpire(ctx, key, keyTTL)
		i = j
	}
	_, err := pipe.Exec(ctx)
	return cmds, err
}

// sentReleases keeps the releases Redis answered lately, the last maxPendingAdjust of
// them at most, in a ring that grows to that once and is then overwritten oldest
// first: the flusher records them by call, never a request.
type sentReleases struct {
	mu   sync.Mutex
	ops  []sentRelease
	next int // once the ring is full, the oldest, overwritten next
	// server names the Redis that answered the last heartbeat (heartbeatScript).
	server string
}

type sentRelease struct {
	tag, bucket, member uint64
	at                  int64 // the limiter's nanotime when Redis answered
}

// add records the releases among ops, a call Redis answered at now, but those sent
// again (resendReleases): recorded anew, each move within the lease would send them
// once more than the last, and a server that changes every heartbeat would send
// them forever, each time younger than the lease.
func (r *sentReleases) add(ops []adjustOp, now int64) {
	r.mu.Lock()
	for i := range ops {
		a := &ops[i]
		if a.op != opRelease || a.again {
			continue
		}
		e := sentRelease{tag: a.tag, bucket: a.bucket, member: a.member, at: now}
		if len(r.ops) < maxPendingAdjust {
			r.ops = append(r.ops, e)
			continue
		}
		r.ops[r.next] = e
		r.next = (r.next + 1) % len(r.ops)
	}
	r.mu.Unlock()
}

// resendReleases queues again the releases Redis answered within the last lease,
// once the heartbeat finds that another Redis answers than before (heartbeatScript):
// a failover, or a Redis restarted. A Sentinel failover promotes the replica while
// the old primary still answers, until Sentinel demotes it (11 s after SENTINEL
// FAILOVER, measured), and a client moves over only once told of the promotion (a
// second after it, measured): a release sent in between is answered OK by the old
// primary and lost with whatever it wrote then, and the slot it released, taken
// before the promotion, stays in the promoted replica, renewed by no heartbeat, its
// cap short of it for the whole lease. The client reports no error to go on; the
// heartbeat answered by another Redis is the first sign. A release is a ZREM of a
// unique lease, harmless twice, so all those a failover may have lost go again, not
// only those since the promotion, which the replica cannot know: from the last
// maxPendingAdjust, those younger than the lease, as an older slot has lapsed by now,
// while the settlement queue is less than half full: the other half is for the
// settlements of requests that end before the flusher takes the queue, which would
// otherwise be dropped, a release among them holding its slot for the whole lease. A
// Redis restarted from a snapshot older than them is left to the lease.
func (s *redisStore) resendReleases() {
	since := s.l.nanotime() - int64(s.leaseUS*1e3)
	n := 0
	s.mu.Lock()
	s.sent.mu.Lock()
	// Newest first, those sent after the promotion above all, while the queue is
	// under half full: past it they are duplicates, not settlements dropped.
	ops := s.sent.ops
	for k := range ops {
		e := &ops[(s.sent.next-1-k+2*len(ops))%len(ops)]
		if e.at < since || len(s.adjs) >= maxPendingAdjust/2 {
			break
		}
		s.adjs = append(s.adjs, adjustOp{op: opRelease, again: true, bucket: e.bucket, tag: e.tag, member: e.member})
		n++
	}
	s.sent.mu.Unlock()
	s.mu.Unlock()
	if n > 0 {
		s.kickLater()
	}
}
