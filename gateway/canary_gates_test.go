package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/router"
)

// canaryUser returns a sticky key that the endpoint routes to its canary (route 1)
// at the configured weights.
func canaryUser(t *testing.T, cfg router.Config) string {
	t.Helper()
	e, err := router.NewEndpoint("chat", cfg, []string{"stable", "canary"})
	if err != nil {
		t.Fatal(err)
	}
	var p router.Plan
	for i := range 10000 {
		k := "review-user-" + strconv.Itoa(i)
		e.Plan([]byte(k), time.Now(), &p)
		if p.Route == 1 {
			return k
		}
	}
	t.Fatal("no user on the canary")
	return ""
}

type canarySnap struct {
	Canary struct {
		State  string `json:"state"`
		Weight float64
		Reason string `json:"reason"`
		Window struct {
			Requests uint64 `json:"requests"`
			Errors   uint64 `json:"errors"`
			TTFTP99  int64  `json:"ttft_p99_ns"`
		} `json:"window"`
	} `json:"canary"`
}

func readCanaryWindow(t *testing.T, admin string) canarySnap {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/admin/endpoints/chat")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s canarySnap
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func postAs(t *testing.T, url, user, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// The gateway's own max_concurrency queue turning a request away (503
// upstream_overloaded, which then goes to the fallback) is no attempt of the canary:
// no upstream saw it, it is not counted in tollgate_upstream_attempts_total nor
// against the target's health, and not as a canary error: a healthy canary whose
// upstream never failed is not rolled back for the gateway's own concurrency cap.
func TestCanaryIgnoresGatewayOverload(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	canary := startSlowUpstream(t, 1500*time.Millisecond)
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: m}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: m, max_concurrency: 1, queue: {size: 0}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 5, max_error_rate: 0.2}
    fallbacks: [stable]
logging: {level: error, access_log: false}
`
	g := startGateway(t, yaml)
	user := canaryUser(t, router.Config{
		Routes: []router.Route{{Backend: "stable", Weight: 50}, {Backend: "canary", Weight: 50}},
		Canary: &router.Canary{Backend: "canary", Steps: []int{50, 100}},
	})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := postAs(t, g.url+"/v1/chat/completions", user, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
			if code == 200 {
				ok.Add(1)
			} else {
				t.Logf("status %d: %s", code, body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 8 {
		t.Fatalf("%d of 8 requests answered 200 (the fallback should take those the canary's queue refused)", ok.Load())
	}
	s := readCanaryWindow(t, g.AdminAddr())
	t.Logf("canary window after the burst: %d attempts, %d errors, state %s", s.Canary.Window.Requests, s.Canary.Window.Errors, s.Canary.State)
	// Give the controller (500ms ticks) time to judge the window.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && s.Canary.State != "rolled_back" {
		time.Sleep(100 * time.Millisecond)
		s = readCanaryWindow(t, g.AdminAddr())
	}
	if s.Canary.State == "rolled_back" {
		t.Errorf("a canary whose upstream never failed was rolled back: %s", s.Canary.Reason)
	}
	if s.Canary.Window.Errors != 0 {
		t.Errorf("canary window counts %d errors for requests the gateway's own queue refused (upstream never failed)", s.Canary.Window.Errors)
	}
}

func reviewSSE() []byte {
	return []byte(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}

data: [DONE]

`)
}

// A canary upstream that answers some requests 429 with Retry-After (not an error:
// README counts 5xx and timeouts) and streams its first token at once to every other
// request. The canary's TTFT gate judges the time to first token of its own attempts,
// each timed from when it was sent: the wait the gateway spends before a retry is not
// the retried attempt's. Here every attempt of the canary has its first token within
// milliseconds, so the TTFT gate holds.
func TestCanaryStreamTTFTExcludesRetryWait(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	var n atomic.Int64
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%2 == 1 {
			ctx.SetStatusCode(429)
			ctx.Response.Header.Set("Retry-After", "1")
			ctx.Response.Header.SetContentTypeBytes(strJSON)
			ctx.Response.SetBodyString(`{"error":{"message":"slow down","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}`)
			return
		}
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.Response.SetBodyRaw(reviewSSE())
	})
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: m}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 3, max_error_rate: 0.5, max_ttft_p99: 500ms}
    retries: 1
logging: {level: error, access_log: false}
`
	g := startGateway(t, yaml)
	user := canaryUser(t, router.Config{
		Routes: []router.Route{{Backend: "stable", Weight: 50}, {Backend: "canary", Weight: 50}},
		Canary: &router.Canary{Backend: "canary", Steps: []int{50, 100}},
	})
	for i := range 3 {
		code, body := postAs(t, g.url+"/v1/chat/completions", user, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		if code != 200 || !strings.Contains(body, "[DONE]") {
			t.Fatalf("stream %d: status %d: %s", i, code, body)
		}
	}
	s := readCanaryWindow(t, g.AdminAddr())
	t.Logf("canary window: %d attempts, %d errors, ttft p99 %v, state %s", s.Canary.Window.Requests, s.Canary.Window.Errors,
		time.Duration(s.Canary.Window.TTFTP99), s.Canary.State)
	if p := time.Duration(s.Canary.Window.TTFTP99); p >= 500*time.Millisecond {
		t.Errorf("canary ttft p99 %v: the gateway's Retry-After wait before the retry is counted as the canary attempt's time to first token", p)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && s.Canary.State != "rolled_back" {
		time.Sleep(100 * time.Millisecond)
		s = readCanaryWindow(t, g.AdminAddr())
	}
	if s.Canary.State == "rolled_back" {
		t.Errorf("canary whose every attempt had its first token at once was rolled back: %s", s.Canary.Reason)
	}
}

// README: weights "that are not a JSON object of route (variant or backend name) to
// 0–100 adding up to 100" get 400 invalid_weights. A body holding more than that one
// object, or an object naming a route twice, says two different things; the gateway
// refuses it rather than apply one reading of it (the router itself refuses two
// names of one route, "stable" and its backend's name, for that reason).
func TestAdminWeightsRefusesAmbiguousBody(t *testing.T) {
	t.Parallel()
	_, admin := startAdminGateway(t)
	ep := admin + "/admin/endpoints/chat"
	for _, body := range []string{
		`{"stable": 90, "canary": 10} {"stable": 0, "canary": 100}`,
		`{"stable": 90, "canary": 10}garbage`,
		`{"stable": 100, "stable": 0, "canary": 100}`,
	} {
		code, out := adminCall(t, "PUT", ep+"/weights", "tok", body)
		if code != 400 {
			t.Errorf("PUT weights %s: status %d, want 400 invalid_weights; routes now %v", body, code, out["routes"])
		}
	}
}
