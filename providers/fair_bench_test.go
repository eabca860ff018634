package providers

import (
	"strconv"
	"testing"
)

// BenchmarkFairQueue is the queue's own work per request that waits, with 64 waiting
// from 8 tenants: its tenant's flow found, its place in line, and the head's turn.
func BenchmarkFairQueue(b *testing.B) {
	for _, f := range []Fair{FairNone, FairAPIKey} {
		b.Run(map[Fair]string{FairNone: "arrival", FairAPIKey: "api_key"}[f], func(b *testing.B) {
			q := &queue{}
			var who [8]Tenants
			for i := range who {
				who[i] = &benchTenant{[]byte("team-" + strconv.Itoa(i))}
			}
			weights := map[string]int{"team-0": 4}
			ws := make([]waiter, 65)
			for i := range 64 {
				q.waiting.Add(1)
				q.enqueue(&ws[i], q.flowOf(f, weights, who[i%8]), false)
			}
			free := &ws[64]
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				q.waiting.Add(1)
				q.enqueue(free, q.flowOf(f, weights, who[i%8]), false)
				free = q.unlist(0, true)
			}
		})
	}
}

// benchTenant is a tenant as the gateway's request is one: a pointer, its name in its
// own bytes.
type benchTenant struct{ id []byte }

func (t *benchTenant) Tenant(Fair) []byte { return t.id }
