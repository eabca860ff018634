package gateway

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// tinyBudget is $0.0005 refilled at $0.00001 a day (0.12 nano-dollars a second): a
// dozen requests spend it, and a test sees it refill by a unit at most.
const tinyBudget = "usd: 0.00001, window: day, burst: 0.0005"

// spendUntilRefused sends the same request on paid through gs in turn until each has
// answered 429, and returns how many each served.
func spendUntilRefused(t *testing.T, gs ...*gw) []int {
	t.Helper()
	served := make([]int, len(gs))
	refused := make([]bool, len(gs))
	params := openai.ChatCompletionNewParams{Model: "paid", Messages: userMsg("Spend a little."), MaxTokens: openai.Int(12)}
	left := len(gs)
	for i := 0; left > 0; i++ {
		if i > 200 {
			t.Fatalf("no 429 within 200 requests: served %v", served)
		}
		k := i % len(gs)
		c := usdClient(gs[k])
		_, err := c.Chat.Completions.New(context.Background(), params)
		var apiErr *openai.Error
		switch {
		case err == nil:
			served[k]++
			answered(t, gs[k], "paid", float64(served[k]))
		case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
			if !refused[k] {
				refused[k] = true
				left--
			}
		default:
			t.Fatal(err)
		}
	}
	return served
}

// Gateways sharing one Redis spend one budget: together they admit what one gateway
// would, and what the budget lost is what their cost counters added. Redis gets a
// timeout no loaded test machine reaches: a check answered without Redis past the
// default 50ms is served from the replica's share, and a true-up sent after a timeout
// is dropped rather than risk counting it twice (README), which is not what this
// checks.
func TestUSDBudgetSharedByGateways(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 5})
	cfg := usdTestConfig(addr, "{per: api_key, "+tinyBudget+"}", "", `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 5s}
`)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	served := spendUntilRefused(t, a, b)
	if served[0] == 0 || served[1] == 0 {
		t.Fatalf("served %v: want both gateways to spend the budget", served)
	}
	spent := costNano(t, a, "paid") + costNano(t, b, "paid")
	const budget = 500_000
	lost := float64(budget - usdProbe(t, a))
	if !withinNano(lost, spent) {
		t.Fatalf("the shared budget lost %v, the gateways' cost counters add up to %v", lost, spent)
	}
	// Each request costs the same: the budget stopped them when the next estimate no
	// longer fitted, not before.
	per := spent / float64(served[0]+served[1])
	if spent > budget || spent < budget-4*per {
		t.Errorf("spent %v of %v in %v requests of %v", spent, budget, served, per)
	}
	if got := float64(budget - usdProbe(t, b)); !withinNano(got, spent) {
		t.Errorf("the other gateway reads %v spent, want %v", got, spent)
	}
}

// While Redis is down a gateway answers from its share of the budget (burst ÷
// replicas): it spends half of it, then refuses.
// Not t.Parallel: it kills Redis under a 50 ms limiter timeout.
func TestUSDRedisDownFallbackShare(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 5})
	g := startGateway(t, usdTestConfig(addr, "{per: api_key, "+tinyBudget+"}", "",
		`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, replicas: 2, on_redis_error: allow, timeout: 50ms}
`))
	if got := usdProbe(t, g); got != 500_000 {
		t.Fatalf("through Redis: %d remaining, want 500000", got)
	}
	rds.Kill()
	waitFor(t, func() bool { return g.rt.Load().lim.Degraded() })
	served := spendUntilRefused(t, g)[0]
	spent := costNano(t, g, "paid")
	const share = 250_000
	if served == 0 || spent > share || spent < share-4*spent/float64(served) {
		t.Fatalf("during the outage: %d served for %v nano-dollars, want about the share of %d", served, spent, share)
	}
	if left := usdProbe(t, g); !withinNano(float64(share-left), spent) {
		t.Errorf("the share has %d left after %v spent of %d", left, spent, share)
	}
}

// A reload keeps a budget's bucket and what it spent, also one that changes the
// budget (spent money stays spent under a raised burst) or the limiter section.
func TestUSDReloadKeepsBudget(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 5})
	g := startGateway(t, usdTestConfig(addr, "{per: api_key, "+tinyBudget+"}", "", ""))
	served := spendUntilRefused(t, g)[0]
	spent := costNano(t, g, "paid")
	left := usdProbe(t, g)
	if served == 0 || !withinNano(float64(500_000-left), spent) {
		t.Fatalf("before the reload: %d served, %d left of 500000, %v spent", served, left, spent)
	}
	for _, tc := range []struct {
		name, keyLimit, limiterYAML string
		want                        int64
	}{
		{"the limiter section", tinyBudget, "limiter: {store: memory, timeout: 80ms}\n", left},
		{"a raised burst", strings.Replace(tinyBudget, "burst: 0.0005", "burst: 0.001", 1), "limiter: {store: memory, timeout: 80ms}\n", left + 500_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(g.path, []byte(usdTestConfig(addr, "{per: api_key, "+tc.keyLimit+"}", "", tc.limiterYAML)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := g.Reload(); err != nil {
				t.Fatal(err)
			}
			if got := usdProbe(t, g); !withinNano(float64(got), float64(tc.want)) {
				t.Fatalf("after the reload: %d left, want %d", got, tc.want)
			}
		})
	}
}
