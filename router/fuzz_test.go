package router

import (
	"testing"
	"time"
)

// FuzzLayout checks the bucket table for any configured and live weights:
// every route gets exactly its live weight, and a route at or below its
// configured weight holds the start of its home list and nothing else.
func FuzzLayout(f *testing.F) {
	f.Add([]byte{95, 5}, []byte{90, 10})
	f.Add([]byte{40, 30, 20, 10}, []byte{25, 30, 40, 5})
	f.Add([]byte{0, 60, 40}, []byte{100, 0, 0})
	f.Add([]byte{10, 10, 10, 70}, []byte{70, 10, 10, 10})
	f.Fuzz(func(t *testing.T, homeIn, liveIn []byte) {
		n := min(len(homeIn), len(liveIn), MaxRoutes)
		if n == 0 {
			return
		}
		home, live := normalise(homeIn[:n]), normalise(liveIn[:n])
		l := testLayout(home)
		var tb [Buckets]uint8
		for i := range tb {
			tb[i] = 0xff
		}
		l.assign(live, &tb)
		count := make([]int32, n)
		for b, r := range tb {
			if int(r) >= n {
				t.Fatalf("home %v live %v: bucket %d unassigned", home, live, b)
			}
			count[r]++
		}
		for i := range live {
			if count[i] != live[i] {
				t.Fatalf("home %v live %v: route %d has %d buckets", home, live, i, count[i])
			}
			if live[i] <= home[i] {
				for _, b := range l.list[l.first[i] : l.first[i]+live[i]] {
					if int(tb[b]) != i {
						t.Fatalf("home %v live %v: route %d lost bucket %d of its home prefix", home, live, i, b)
					}
				}
			}
		}
	})
}

// normalise turns bytes into weights in buckets adding up to Buckets.
func normalise(in []byte) []int32 {
	w := make([]int32, len(in))
	var sum int32
	for i, b := range in {
		w[i] = int32(b)
		sum += w[i]
	}
	if sum == 0 {
		w[len(w)-1] = Buckets
		return w
	}
	var total int32
	for i := range w {
		w[i] = w[i] * Buckets / sum
		total += w[i]
	}
	w[len(w)-1] += Buckets - total
	return w
}

// FuzzParseRemote feeds arbitrary shared-state hashes to the decoder: it
// must not panic, and whatever it accepts must survive a round trip.
func FuzzParseRemote(f *testing.F) {
	f.Add("3", "a1b2", "stepping", "1000", "1740830400000", "", "healthy interval")
	f.Add("7", "ffffffffffffffff", "paused", "3000", "0", "7000,3000", "weights set by operator")
	f.Add("1", "0", "rolled_back", "0", "-5", "", "error rate 0.0500 above 0.01")
	f.Add("x", "zz", "bogus", "99999", "", "1,2", "")
	f.Fuzz(func(t *testing.T, ver, sig, st, cw, since, ovr, why string) {
		h := map[string]string{"ver": ver, "sig": sig, "st": st, "cw": cw, "since": since, "ovr": ovr, "why": why}
		rs, ok := parseRemote(h, 2)
		if !ok {
			return
		}
		enc := encodeState(rs.sig, &rs.ctl, rs.from, rs.at)
		h2 := map[string]string{"ver": ver}
		for i := 0; i < len(enc); i += 2 {
			h2[enc[i].(string)] = enc[i+1].(string)
		}
		rs2, ok := parseRemote(h2, 2)
		if !ok || rs2.sig != rs.sig || !rs2.ctl.equal(&rs.ctl) || !rs2.at.Equal(rs.at) || (rs2.from == nil) != (rs.from == nil) {
			t.Fatalf("round trip of %v: %+v then %+v (%v)", h, rs, rs2, ok)
		}
		if rs.ctl.since.Before(time.UnixMilli(-1 << 62)) {
			t.Fatalf("since out of range: %v", rs.ctl.since)
		}
	})
}

// FuzzParseWindow feeds arbitrary window hashes to the decoder.
func FuzzParseWindow(f *testing.F) {
	f.Add("n", "200", "l500", "199")
	f.Add("e", "3", "t960", "1")
	f.Add("l-1", "5", "", "x")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		w := parseWindow(map[string]string{k1: v1, k2: v2})
		_ = w.summary()
	})
}
