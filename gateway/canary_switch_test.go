package gateway

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// waitInForce waits until endpoint's weights on g are all in force: its view has no
// change waiting for its instant (switch_at).
func waitInForce(t *testing.T, g *gw, endpoint string) {
	t.Helper()
	waitFor(t, func() bool {
		code, out := adminCall(t, "GET", "http://"+g.AdminAddr()+"/admin/endpoints/"+endpoint, "", "")
		_, pending := out["switch_at"]
		return code == 200 && !pending
	})
}

// An operator's weights, set on one of two replicas sharing a Redis, move a sticky
// user on both at one instant, the answer's switch_at: every request answered before
// it went to the old variant, whichever replica it reached, and every request sent
// after it goes to the new one on both.
// Not t.Parallel: it must read switch_at before that instant, under a second away.
func TestCanarySwitchAtOneInstantOnEveryReplica(t *testing.T) {
	stable, canary := answerFrom(t, "stable"), answerFrom(t, "canary")
	cfg := variantCacheConfig(stable, canary, "100", "0", "null",
		"    sticky: {from: header, name: X-User-ID}\n"+
			`limiter: {store: redis, redis: {url: "`+redistest.Start(t).URL()+`"}}`+"\n")
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	user := map[string]string{"X-User-ID": "user-1"}
	for _, g := range []*gw{a, b} {
		if resp, _ := contractPost(t, g, "/v1/chat/completions", body, user); resp.Header.Get("X-Tollgate-Backend") != "stable" {
			t.Fatalf("before the change: served by %q, want stable", resp.Header.Get("X-Tollgate-Backend"))
		}
	}

	code, out := adminCall(t, "PUT", "http://"+a.AdminAddr()+"/admin/endpoints/chat/weights", "", `{"stable": 0, "canary": 100}`)
	if code != 200 {
		t.Fatalf("PUT weights: %d %v", code, out)
	}
	pending, _ := out["pending_weights"].(map[string]any)
	at, _ := out["switch_at"].(string)
	switchAt, err := time.Parse(time.RFC3339Nano, at)
	if err != nil || pending["canary"] != 100.0 || pending["stable"] != 0.0 {
		t.Fatalf("answer: pending_weights %v, switch_at %q (%v); want canary 100 at an instant", out["pending_weights"], at, err)
	}
	if d := time.Until(switchAt); d <= 0 || d > time.Second {
		t.Fatalf("switch_at %v is %v away, want within the switch delay", switchAt, d)
	}

	before, after := map[*gw]int{}, map[*gw]int{}
	for time.Now().Before(switchAt.Add(300 * time.Millisecond)) {
		for _, g := range []*gw{a, b} {
			sent := time.Now()
			resp, _ := contractPost(t, g, "/v1/chat/completions", body, user)
			recv := time.Now()
			got := resp.Header.Get("X-Tollgate-Backend")
			switch {
			case recv.Before(switchAt):
				before[g]++
				if got != "stable" {
					t.Fatalf("replica %s served the user by %q %v before the switch", g.url, got, switchAt.Sub(recv))
				}
			case sent.After(switchAt):
				after[g]++
				if got != "canary" {
					t.Fatalf("replica %s served the user by %q %v after the switch", g.url, got, sent.Sub(switchAt))
				}
			}
		}
	}
	for _, g := range []*gw{a, b} {
		if before[g] == 0 || after[g] == 0 {
			t.Fatalf("replica %s answered %d requests before the switch and %d after; want some of each", g.url, before[g], after[g])
		}
	}
}
