package limiter

import (
	"encoding/binary"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The read of refused buckets (recheckRefusals) reads keys that replicas of earlier
// builds write during a rolling upgrade, and every layout of a rate key's value they
// write (check.lua's header): the TAT alone, then with the interval, with the span and
// the interval, capped, and capped with what the cap let go. Each is read by its TAT:
// a bucket still owing more than a request keeps the refusal cached, one with room for
// a request voids it, and the check that follows admits the request on that value.
func TestRefusalRecheckReadsEveryValueLayout(t *testing.T) {
	// The policy of twoReplicas: 2 requests a minute, a request every 30 s.
	const iv, tau = 30e6, 60e6
	f64 := func(b []byte, x float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)) }
	spanIv := "\x00" + string(f64(nil, tau)) + "\x00" + string(f64(nil, iv))
	let := string(f64(f64(f64(f64([]byte{0, 'f'}, 0), 0), iv), tau))
	layouts := []struct{ name, tail string }{
		{"TAT alone", ""},
		{"TAT and interval", "\x00" + string(f64(nil, iv))},
		{"TAT, span and interval", spanIv},
		{"capped", "\x00c" + spanIv},
		{"capped with what it let go", let + "\x00c" + spanIv},
	}
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rc := redisClient(t, srv.Addr())
			a, _, pol, _ := twoReplicas(t, srv)
			waitFor(t, time.Second, "a heartbeat answered", func() bool { return a.rs.clockOff.Load() != 0 })
			key := bucketKey(pol, alice, 0)
			write := func(debt float64) {
				t.Helper()
				now := redisNow(t, rc).UnixMicro() - 1_700_000_000_000_000
				v := strconv.FormatFloat(float64(now)+debt, 'g', 17, 64) + lay.tail
				if err := rc.Set(bg, key, v, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// Owing 50 s of a 60 s bucket: no room for a 30 s request.
			write(50e6)
			a.rs.recheckRefusals(nil)
			refusedLocally(t, a, pol)
			// Owing 20 s: room for one.
			write(20e6)
			a.rs.recheckRefusals(nil)
			if n := a.rs.refusals.n.Load(); n != 0 {
				t.Fatalf("%d refusals held after reading a bucket with room, want none", n)
			}
			var tk Ticket
			if err := a.Take(bg, pol, alice, 0, &tk); err != nil {
				t.Fatalf("Take after the read = %v, want admitted", err)
			}
		})
	}
}
