package router

// Buckets is how many sticky buckets a key hashes to. A weight of 1 % is
// 100 buckets, so weights are kept internally in hundredths of a percent.
const Buckets = 10000

// The bucket layout must give every replica the same table for the same
// weights (so a user lands on one variant everywhere, even on a replica that
// started late and never saw the steps before) and must move as few users
// as possible when weights change. It is therefore a pure function of the
// configured ("home") and live weights, built like this:
//
//   - Each route owns a home range of buckets, laid out in route order and
//     as wide as its configured weight.
//   - A route at or below its home weight keeps the start of its home range
//     and releases the end of it. Its buckets depend on its own weight only,
//     so two such routes never exchange users.
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
	start []int32 // first bucket of each home range
}

func newLayout(home []int32) layout {
	l := layout{home: home, start: make([]int32, len(home))}
	var s int32
	for i, h := range home {
		l.start[i] = s
		s += h
	}
	return l
}

// assign writes the route of every bucket for live weights w (in buckets,
// adding up to Buckets) into t.
func (l *layout) assign(w []int32, t *[Buckets]uint8) {
	n := len(l.home)
	var release, excess, taken, claimed [MaxRoutes]int32
	for i := 0; i < n; i++ {
		keep := min(w[i], l.home[i])
		for b := l.start[i]; b < l.start[i]+keep; b++ {
			t[b] = uint8(i)
		}
		if w[i] < l.home[i] {
			release[i] = l.home[i] - w[i]
		} else {
			excess[i] = w[i] - l.home[i]
		}
	}
	for {
		j := pickSainteLague(l.home[:n], taken[:n], release[:n])
		if j < 0 {
			return
		}
		g := pickSainteLague(l.home[:n], claimed[:n], excess[:n])
		if g < 0 {
			// Only reachable with weights that do not add up; leave the
			// rest of the table to the losing route rather than panic.
			return
		}
		t[l.start[j]+l.home[j]-1-taken[j]] = uint8(g)
		taken[j]++
		claimed[g]++
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
// by Sainte-Laguë.
func canaryWeights(home []int32, c int, cw int32, out []int32) {
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
	for i := 0; i < n; i++ {
		if i == c {
			continue
		}
		weight[i] = home[i]
		capacity[i] = Buckets
		if delta > 0 {
			capacity[i] = home[i]
		}
	}
	for s := int32(0); s < seats; s++ {
		i := pickSainteLague(weight[:n], alloc[:n], capacity[:n])
		if i < 0 {
			break
		}
		alloc[i]++
	}
	for i := 0; i < n; i++ {
		if i == c {
			continue
		}
		if delta > 0 {
			out[i] = home[i] - alloc[i]
		} else {
			out[i] = home[i] + alloc[i]
		}
	}
}
