package limiter

import (
	"cmp"
	"context"
	"encoding/binary"
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
// does not lose a live request's slot.

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

// renewLeases extends every slot this replica holds to nowUS (Redis's clock, as
// check.lua counts it) plus the lease, and its key's expiry with it. ZADD XX leaves
// alone a slot whose release has already reached Redis, so a renewal racing a
// release never takes the slot again.
func (s *redisStore) renewLeases(ctx context.Context, nowUS int64) error {
	// A copy, so that requests do not wait on the round trip; once a second, its
	// allocation does not matter.
	var held []leaseSlot
	s.lmu.Lock()
	for _, sl := range s.slots {
		if sl.used {
			held = append(held, sl)
		}
	}
	s.lmu.Unlock()
	if len(held) == 0 {
		return nil
	}
	// One ZADD per key, however many of the key's slots this replica holds.
	slices.SortFunc(held, func(a, b leaseSlot) int {
		return cmp.Or(cmp.Compare(a.tag, b.tag), cmp.Compare(a.bucket, b.bucket))
	})
	expiry := float64(nowUS) + s.leaseUS
	keyTTL := time.Duration(s.leaseUS)*time.Microsecond + time.Second // as check.lua
	pipe := s.c.Pipeline()
	var k keyArg
	var member [8]byte
	for i := 0; i < len(held); {
		j := i
		zs := make([]redis.Z, 0, 1)
		for ; j < len(held) && held[j].tag == held[i].tag && held[j].bucket == held[i].bucket; j++ {
			// The member as check.lua takes it from the blob: the lease's 8 bytes.
			binary.LittleEndian.PutUint64(member[:], held[j].member)
			zs = append(zs, redis.Z{Score: expiry, Member: string(member[:])})
		}
		k.set(held[i].tag, held[i].bucket)
		key := k.String()
		pipe.ZAddXX(ctx, key, zs...)
		pipe.PExpire(ctx, key, keyTTL)
		i = j
	}
	_, err := pipe.Exec(ctx)
	return err
}
