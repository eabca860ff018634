package router

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Buckets is how many sticky buckets a key hashes to. A weight of 1 % is
// 100 buckets, so weights are kept internally in hundredths of a percent.
const Buckets = 10000

// The bucket layout must give every replica the same table for the same
// weights (so a user lands on one variant everywhere, even on a replica that
// started late and never saw the steps before) and must move as few users
// as possible when weights change. It is therefore a pure function of the
// configured ("home") and live weights, built like this:
//
//   - Each route owns an ordered list of home buckets, as many as its
//     configured weight. The lists depend on each route's identity (its
//     backend and how many earlier routes share that backend) and home
//     weight, never on its position in the config, so a reload that reorders
//     routes or renames a variant moves nobody, and one that changes some
//     weights moves users mostly between the routes whose weights changed
//     (see homeLists).
//   - A route at or below its home weight keeps the start of its list and
//     releases the end of it. Its buckets depend on its own weight only, so
//     two such routes never exchange users.
//   - The released ends form a pool that the routes above their home weight
//     share. Pool buckets are taken from the losers' ends backwards,
//     interleaving losers by Sainte-Laguë over their home weights, and handed
//     to the gainers in Sainte-Laguë order over theirs. Sainte-Laguë is a
//     divisor method, so allocating one more bucket never takes one away
//     from anyone (no Alabama paradox): a longer pool extends the sequence
//     and leaves its start alone.
//
// What this guarantees:
//
//   - With at most one route (g) above its home weight before and after a
//     change, every user who moves goes between g and another route, which
//     only gives users to g when its own weight fell and only takes users
//     from g when its own weight rose; in particular raising g while the
//     others fall only moves users onto g.
//   - The canary controller's weights (canary at any weight, the other
//     routes sharing the rest in their configured proportion, rounded by
//     Sainte-Laguë) form a single chain: raising the canary only moves users
//     onto it, lowering it only moves users off it, and the other routes
//     never exchange users, above or below the canary's home weight.
//   - Every route gets exactly its live weight in buckets.
//
// An operator override that lifts two or more routes above their home
// weights at once may shuffle users among those routes when the pool
// changes; every other route keeps its users.
type layout struct {
	home  []int32 // configured weights in buckets
	first []int32 // where each route's list starts in list
	list  []int16 // home buckets grouped by route, each route's in keeping order
	byID  []uint8 // routes in identity order (identityOrder)
}

// newLayout lays out the home buckets of routes on backend with configured
// weights home (in buckets) for the endpoint whose sticky hash seed is seed.
func newLayout(seed uint64, backend []string, home []int32) layout {
	n := len(home)
	l := layout{home: home, first: make([]int32, n+1), byID: identityOrder(backend)}
	for i, h := range home {
		l.first[i+1] = l.first[i] + h
	}
	if n == 1 {
		l.list = make([]int16, l.first[n])
		for b := range l.list {
			l.list[b] = int16(b)
		}
		return l
	}
	key := layoutKey(seed, backend, home)
	if list, ok := cachedLists(key); ok {
		l.list = list
		return l
	}
	l.list = make([]int16, l.first[n])
	homeLists(seed, backend, home, l.byID, l.first, l.list)
	keepLists(key, l.list)
	return l
}

// Home lists cost milliseconds to build (16 routes: ~10 ms) and a config is
// built twice per reload (checked, then run), every endpoint of it, changed
// or not: the lists of the endpoints built last are kept, keyed by what they
// are a function of. A list is never written once built, so endpoints share
// it. The cache is emptied when full: 512 lists of 20 KB at most.
var layoutCache struct {
	sync.Mutex
	m map[string][]int16
}

const layoutCacheMax = 512

func layoutKey(seed uint64, backend []string, home []int32) string {
	k := binary.LittleEndian.AppendUint64(nil, seed)
	for i, b := range backend {
		k = binary.LittleEndian.AppendUint32(k, uint32(home[i]))
		k = binary.LittleEndian.AppendUint32(k, uint32(len(b)))
		k = append(k, b...)
	}
	return string(k)
}

func cachedLists(key string) ([]int16, bool) {
	layoutCache.Lock()
	defer layoutCache.Unlock()
	list, ok := layoutCache.m[key]
	return list, ok
}

func keepLists(key string, list []int16) {
	layoutCache.Lock()
	defer layoutCache.Unlock()
	if layoutCache.m == nil || len(layoutCache.m) >= layoutCacheMax {
		layoutCache.m = make(map[string][]int16)
	}
	layoutCache.m[key] = list
}

// homeLists fills list (grouped by route at first) with each route's home
// buckets. Every (route i, bucket b) pair has a key -log2(u)/home[i], u in
// (0, 1] hashed from the endpoint's seed, route i's identity and b: left
// alone, each bucket would go to the route of its smallest key, which is
// weighted rendezvous hashing (route i wins a bucket with probability
// home[i]/Buckets, and changing one route's weight only moves buckets to or
// from that route). To give every route exactly its weight, pairs are taken
// in ascending key order (ties by identity, then bucket) and a bucket goes
// to the pair's route unless it is taken or the route is full; only the few
// buckets past a route's random share (tens of them) differ from plain
// rendezvous. A route keeps its buckets in ascending order of its own keys,
// so lowering its weight releases its weakest claims first.
//
// Keys are integers (a fixed-point logarithm, compared by cross
// multiplication) because floating point may round differently on another
// architecture (FMA, assembly math.Log), and replicas on different machines
// must build the same table. It runs once per config build of an endpoint
// with two or more routes: under 10 ms for 16 routes on a busy 2-core
// machine (BenchmarkNewLayout).
func homeLists(seed uint64, backend []string, home []int32, byID []uint8, first []int32, list []int16) {
	n := len(home)
	var rank [MaxRoutes]int
	for p, i := range byID {
		rank[i] = p
	}
	logs := make([]uint32, n*Buckets)
	for i := range n {
		if home[i] == 0 {
			continue
		}
		id := seed ^ identity(backend, i)
		for b := range Buckets {
			logs[i*Buckets+b] = negLog2(mix64(id + uint64(b)*0x9e3779b97f4a7c15))
		}
	}
	// less orders the pairs (i, b) and (j, c) by key, identity, bucket.
	less := func(i, b, j, c int) bool {
		x := uint64(logs[i*Buckets+b]) * uint64(home[j])
		y := uint64(logs[j*Buckets+c]) * uint64(home[i])
		if x != y {
			return x < y
		}
		if rank[i] != rank[j] {
			return rank[i] < rank[j]
		}
		return b < c
	}
	var filled [MaxRoutes]int32
	// cand is each bucket's best route among those not full when it was
	// last looked at: routes only fill up, so its key never falls.
	cand := make([]uint8, Buckets)
	best := func(b int) int {
		c := -1
		for i := range n {
			if filled[i] < home[i] && (c < 0 || less(i, b, c, b)) {
				c = i
			}
		}
		return c
	}
	before := func(x, y int16) bool { return less(int(cand[x]), int(x), int(cand[y]), int(y)) }
	h := make([]int16, 0, Buckets)
	for b := range Buckets {
		c := best(b)
		if c < 0 {
			break
		}
		cand[b] = uint8(c)
		h = append(h, int16(b))
	}
	slices.SortFunc(h, func(x, y int16) int {
		switch {
		case x == y:
			return 0
		case before(x, y):
			return -1
		}
		return 1
	})
	// h is now a min-heap (a sorted array is one).
	for len(h) > 0 {
		b := h[0]
		c := int(cand[b])
		if filled[c] < home[c] {
			list[first[c]+filled[c]] = b
			filled[c]++
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		} else {
			nc := best(int(b))
			if nc < 0 {
				// Weights that do not add up: the rest stays unowned.
				break
			}
			cand[b] = uint8(nc)
		}
		siftDown(h, before)
	}
	for i := range n {
		own := logs[i*Buckets : (i+1)*Buckets]
		slices.SortFunc(list[first[i]:first[i+1]], func(x, y int16) int {
			if c := cmp.Compare(own[x], own[y]); c != 0 {
				return c
			}
			return cmp.Compare(x, y)
		})
	}
}

// mix64 is SplitMix64's finaliser: a bijection that spreads every input bit
// over the output.
func mix64(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// logFrac is how many fractional bits negLog2 keeps: ties at 2^-20 are
// rare and broken by identity and bucket anyway.
const logFrac = 20

// negLog2 returns -log2(u) for u = (x>>1 + 1) / 2^63, in (0, 1], as a
// fixed-point number with logFrac fractional bits (below 2^26), by integer
// arithmetic only: the integer part from the leading zeros, each fraction
// bit by squaring the mantissa (kept to 31 bits, branch-free: random
// branches cost more than the multiplications).
func negLog2(x uint64) uint32 {
	v := x>>1 + 1
	e := 63 - bits.LeadingZeros64(v)
	y := v << (63 - e) >> 32 // mantissa in [1, 2), 31 fractional bits
	var frac uint64
	for k := logFrac - 1; k >= 0; k-- {
		sq := y * y // in [1, 4), 62 fractional bits
		t := sq >> 63
		frac |= t << k
		y = sq >> (31 + t)
	}
	return uint32(63<<logFrac - (uint64(e)<<logFrac | frac))
}

// siftDown restores the heap property of h from its root.
func siftDown(h []int16, less func(x, y int16) bool) {
	i := 0
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && less(h[c+1], h[c]) {
			c++
		}
		if !less(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// identity hashes route i's backend and how many earlier routes share it:
// what names the route across reloads, whatever its position or variant.
func identity(backend []string, i int) uint64 {
	var occ uint64
	for _, b := range backend[:i] {
		if b == backend[i] {
			occ++
		}
	}
	d := xxhash.New()
	_, _ = d.WriteString(backend[i])
	var buf [9]byte
	binary.LittleEndian.PutUint64(buf[1:], occ)
	_, _ = d.Write(buf[:])
	return d.Sum64()
}

// identityOrder lists the routes by backend, then occurrence: the
// canonical order that breaks ties the same way whatever the config's order.
func identityOrder(backend []string) []uint8 {
	order := make([]uint8, len(backend))
	for i := range order {
		order[i] = uint8(i)
	}
	// A stable sort keeps routes of one backend in occurrence order.
	slices.SortStableFunc(order, func(x, y uint8) int { return cmp.Compare(backend[x], backend[y]) })
	return order
}

// assign writes the route of every bucket for live weights w (in buckets,
// adding up to Buckets) into t.
func (l *layout) assign(w []int32, t *[Buckets]uint8) {
	n := len(l.home)
	// The pool is dealt in identity order (p indexes routes in byID), so
	// Sainte-Laguë ties, common between routes of equal weight, do not
	// depend on the order of the routes in the config.
	var home, release, excess, taken, claimed [MaxRoutes]int32
	for p := 0; p < n; p++ {
		i := l.byID[p]
		home[p] = l.home[i]
		keep := min(w[i], l.home[i])
		for _, b := range l.list[l.first[i] : l.first[i]+keep] {
			t[b] = i
		}
		if w[i] < l.home[i] {
			release[p] = l.home[i] - w[i]
		} else {
			excess[p] = w[i] - l.home[i]
		}
	}
	for {
		pj := pickSainteLague(home[:n], taken[:n], release[:n])
		if pj < 0 {
			return
		}
		pg := pickSainteLague(home[:n], claimed[:n], excess[:n])
		if pg < 0 {
			// Only reachable with weights that do not add up; leave the
			// rest of the table to the losing route rather than panic.
			return
		}
		j := l.byID[pj]
		t[l.list[l.first[j+1]-1-taken[pj]]] = l.byID[pg]
		taken[pj]++
		claimed[pg]++
	}
}

// pickSainteLague returns the route that gets the next seat among those
// whose alloc is below their cap: the highest weight/(2·alloc+1), ties to
// the lower index; routes of weight 0 take turns once no weighted route
// can. -1 when every cap is reached.
func pickSainteLague(weight, alloc, capacity []int32) int {
	best := -1
	for i := range weight {
		if alloc[i] >= capacity[i] || weight[i] == 0 {
			continue
		}
		if best < 0 || int64(weight[i])*int64(2*alloc[best]+1) > int64(weight[best])*int64(2*alloc[i]+1) {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	for i := range weight {
		if alloc[i] < capacity[i] && (best < 0 || alloc[i] < alloc[best]) {
			best = i
		}
	}
	return best
}

// canaryWeights writes into out the weights the controller gives every
// route when the canary (route c) holds cw buckets: the other routes gain
// or lose the difference from their home weights in proportion to those,
// by Sainte-Laguë, ties going by order (the routes in identity order, as
// assign deals its pool: were the two orders to differ, a tie given to one
// route here and dealt to another there would move users between routes
// other than the canary as it steps).
func canaryWeights(home []int32, order []uint8, c int, cw int32, out []int32) {
	n := len(home)
	copy(out, home)
	out[c] = cw
	delta := cw - home[c]
	if delta == 0 {
		return
	}
	seats := delta
	if seats < 0 {
		seats = -seats
	}
	var weight, alloc, capacity [MaxRoutes]int32
	for p, i := range order {
		if int(i) == c {
			continue
		}
		weight[p] = home[i]
		capacity[p] = Buckets
		if delta > 0 {
			capacity[p] = home[i]
		}
	}
	for s := int32(0); s < seats; s++ {
		p := pickSainteLague(weight[:n], alloc[:n], capacity[:n])
		if p < 0 {
			break
		}
		alloc[p]++
	}
	for p, i := range order {
		if int(i) == c {
			continue
		}
		if delta > 0 {
			out[i] = home[i] - alloc[p]
		} else {
			out[i] = home[i] + alloc[p]
		}
	}
}
