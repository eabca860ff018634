package limiter

import (
	"errors"
	"testing"
)

// README: "A reload that changes a limit's amount or burst keeps its bucket and the
// requests or tokens it owes, up to the new burst: a spent bucket stays spent under a
// lowered rate or burst". A request admitted before a reload that lowers a tokens
// limit, and settled after it with more tokens than the new burst, leaves the bucket
// spent, as it would had it settled before the reload. The settlement of its estimate
// down to the tokens it used was taken off what the bucket owed after the lowered
// limit capped it (what the lowered limit had already let go), so the bucket read
// full: 3000 tokens used left all 600 of a 600/hour limit free at once.
func TestReloadLoweredLimitSettledAfterStaysSpent(t *testing.T) {
	before := Limit{Per: "api_key", Tokens: 6000, Window: "hour"}
	after := Limit{Per: "api_key", Tokens: 600, Window: "hour"}
	for _, st := range bothStores() {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			old, lowered := mustPolicy(t, "key:team-a", before), mustPolicy(t, "key:team-a", after)
			var running Ticket
			if err := l.Take(bg, old, alice, 6000, &running); err != nil {
				t.Fatal(err)
			}
			refusedBy := func(what string) {
				t.Helper()
				var tk Ticket
				err := l.Take(bg, lowered, alice, 1, &tk)
				var ref *Refused
				if err == nil {
					l.Settle(&tk, 1)
					t.Fatalf("%s: a token admitted under the lowered limit (remaining %d), want the bucket spent", what, tk.Tokens.Remaining)
				}
				if !errors.As(err, &ref) {
					t.Fatalf("%s: %v", what, err)
				}
			}
			// The reload: the bucket owes 6000 tokens, the lowered limit's 600 at most.
			refusedBy("after the reload")
			// The request ends having used 3000 tokens: five times the new burst.
			l.Settle(&running, 3000)
			if l.rs != nil {
				barrier(t, l)
			}
			refusedBy("after the request used 3000 tokens")
		})
		// The same request settled before the first check under the lowered limit
		// leaves the bucket spent today: the order must not matter.
		t.Run(st.name+"/settled before", func(t *testing.T) {
			l := st.open(t)
			old, lowered := mustPolicy(t, "key:team-a", before), mustPolicy(t, "key:team-a", after)
			var running Ticket
			if err := l.Take(bg, old, alice, 6000, &running); err != nil {
				t.Fatal(err)
			}
			l.Settle(&running, 3000)
			if l.rs != nil {
				barrier(t, l)
			}
			var tk Ticket
			if err := l.Take(bg, lowered, alice, 1, &tk); err == nil {
				t.Fatalf("a token admitted under the lowered limit (remaining %d), want the bucket spent", tk.Tokens.Remaining)
			}
		})
	}
}
