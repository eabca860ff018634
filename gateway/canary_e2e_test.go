package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

func canaryConfig(stable, canary string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: up-model}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [5, 10, 25, 50, 75, 100], interval: 400ms, min_requests: 5, max_error_rate: 0.01}
logging: {level: error, access_log: false}
`
}

type canaryView struct {
	State  string  `json:"state"`
	Weight float64 `json:"weight"`
}

func readCanary(t *testing.T, admin string) canaryView {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/admin/endpoints/chat")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Canary canaryView }
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Canary
}

// driveLoad sends requests from many users until stop is closed; errors are expected
// from a faulty canary and ignored here.
func driveLoad(g *gw, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	c := g.client()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user := "user-" + string(rune('a'+w)) + "-" + time.Now().Format("150405.000000")
				c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")},
					option.WithHeader("X-User-ID", user))
			}
		}()
	}
	return &wg
}

// Not t.Parallel: driveLoad loads the machine, and a poll must see every 400 ms step.
func TestCanaryPromotedWhenHealthy(t *testing.T) {
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, canaryConfig(stable, canary))
	stop := make(chan struct{})
	wg := driveLoad(g, stop)
	defer func() { close(stop); wg.Wait() }()
	seen := map[float64]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := readCanary(t, g.AdminAddr())
		seen[c.Weight] = true
		if c.State == "promoted" {
			break
		}
		if c.State == "rolled_back" || time.Now().After(deadline) {
			t.Fatalf("healthy canary ended %s at %v%% (steps seen %v)", c.State, c.Weight, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range []float64{5, 10, 25, 50, 75, 100} {
		if !seen[w] {
			t.Errorf("step %v%% was never observed (seen %v)", w, seen)
		}
	}
}

// Not t.Parallel: driveLoad loads the machine, and the gate must act before step two.
func TestCanaryRolledBackWhenFaulty(t *testing.T) {
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 2, ErrorRate: 0.3, Seed: 3})
	g := startGateway(t, canaryConfig(stable, canary))
	stop := make(chan struct{})
	wg := driveLoad(g, stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := readCanary(t, g.AdminAddr())
		if c.State == "rolled_back" {
			if c.Weight != 0 {
				t.Fatalf("rolled back at %v%%", c.Weight)
			}
			break
		}
		if c.Weight > 5 || time.Now().After(deadline) {
			t.Fatalf("faulty canary went on: %s at %v%%", c.State, c.Weight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// It stays at 0 % while traffic goes on.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if c := readCanary(t, g.AdminAddr()); c.State != "rolled_back" || c.Weight != 0 {
		t.Fatalf("after rollback: %s at %v%%", c.State, c.Weight)
	}
}

// A replica that starts after the cluster rolled its canary back routes no user to the
// canary from its first request: it reads the shared state before it serves.
func TestCanaryStateReadBeforeServing(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := strings.Replace(canaryConfig(stable, canary), "logging:",
		`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}}
logging:`, 1)
	a := startGateway(t, cfg)
	resp, err := http.Post("http://"+a.AdminAddr()+"/admin/endpoints/chat/canary/rollback", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("rollback: status %d", resp.StatusCode)
	}
	// The rollback reaches Redis with a's next tick.
	time.Sleep(time.Second)

	b := startGateway(t, cfg)
	if c := readCanary(t, b.AdminAddr()); c.State != "rolled_back" || c.Weight != 0 {
		t.Fatalf("new replica at start: %s at %v%%", c.State, c.Weight)
	}
	client := b.client()
	for i := range 200 {
		var raw *http.Response
		_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")},
			option.WithHeader("X-User-ID", "user-"+strconv.Itoa(i)), option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get("x-tollgate-backend"); got != "stable" {
			t.Fatalf("user %d went to %q on the new replica", i, got)
		}
	}
}
