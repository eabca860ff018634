package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// heldHeaderUpstream accepts connections, reads the requests and never answers: an
// upstream that holds its answer header until the first token (Ollama loading a
// model, a proxy that buffers headers, as README names them).
func heldHeaderUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// clientResult is what a client got: the status and body, and the error that ended
// its read.
type clientResult struct {
	status int
	body   string
	err    string
}

// README (Signals): when shutdown_grace runs out, a stream whose upstream sent its
// header and no token yet is cut (200, access log error shutdown_cut, its estimate
// refunded), and a request still in the handler, here a stream whose upstream holds
// its answer header, has had nothing yet: its upstream request is aborted, its
// client gets 503 shutting_down, and it has its access log line and its estimate
// refunded too, rather than dying with the process. Run with the real binary,
// SIGTERM, and a second process on the same Redis reading the buckets afterwards.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks. It runs alone: it bounds the exit at 4 s
// after SIGTERM, which the parallel load tests could stretch.
func TestDrainGraceEndAnswersStreamAwaitingHeader(t *testing.T) {
	rds := redistest.Start(t)
	held := heldHeaderUpstream(t)
	// Sends its 200 and headers at once, its first token a minute later.
	cold := startMockLLM(t, mockllm.Options{Model: "m", MaxTokens: 4000, TTFT: time.Minute})
	fast := startMockLLM(t, mockllm.Options{Model: "m", MaxTokens: 2})
	dir := t.TempDir()
	cfg := func(api, admin, heldURL, coldURL string) string {
		return "server: {listen: \"" + api + "\", admin_listen: \"" + admin + "\", shutdown_grace: 1s}\n" +
			"backends:\n" +
			"  held: {provider: openai, base_url: \"http://" + heldURL + "/v1\", model: m, timeout: 5m}\n" +
			"  cold: {provider: openai, base_url: \"http://" + coldURL + "/v1\", model: m, timeout: 5m}\n" +
			"endpoints:\n" +
			"  - {name: held, type: chat, routes: [{backend: held}], limits: [{per: endpoint, tokens: 20000, window: hour}]}\n" +
			"  - {name: cold, type: chat, routes: [{backend: cold}], limits: [{per: endpoint, tokens: 20000, window: hour}]}\n" +
			"limiter: {store: redis, redis: {url: \"" + rds.URL() + "\"}, prefetch: 0s, timeout: 5s}\n" +
			"logging: {level: info, access_log: true}\n"
	}
	api, admin := freePort(t), freePort(t)
	cmd, logs := startServe(t, writeFile(t, dir, "a.yaml", cfg(api, admin, held, cold)))
	waitUntilWithin(t, 20*time.Second, func() bool { return statusOf("http://"+admin+"/readyz") == 200 })
	var mu sync.Mutex
	got := map[string]clientResult{}
	var wg sync.WaitGroup
	coldHeader := make(chan struct{}) // closed when the cold stream's client has its header
	for _, ep := range []string{"held", "cold"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 60 * time.Second}
			var res clientResult
			resp, err := c.Post("http://"+api+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"`+ep+`","stream":true,"max_tokens":8000,"messages":[{"role":"user","content":"hi"}]}`))
			if ep == "cold" {
				close(coldHeader)
			}
			if err != nil {
				res.err = err.Error()
			} else {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				res.status, res.body = resp.StatusCode, string(b)
				if err != nil {
					res.err = err.Error()
				}
			}
			mu.Lock()
			got[ep] = res
			mu.Unlock()
		}()
	}
	// SIGTERM finds both where the test wants them: the cold stream's header sent, the
	// held request in the handler.
	select {
	case <-coldHeader:
	case <-time.After(20 * time.Second):
		t.Fatal("the cold stream's client had no answer header within 20s")
	}
	waitUntilWithin(t, 20*time.Second, func() bool { return inFlight(admin, "held") == 1 })
	signaled := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	code, ok := exitStatus(t, cmd, 20*time.Second)
	if !ok {
		t.Fatal("the gateway did not exit after SIGTERM")
	}
	took := time.Since(signaled)
	wg.Wait()
	t.Logf("exit status %d after %v; clients saw: %+v", code, took, got)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	// shutdown_grace (1s), then the cut and its bounded wait (2s).
	if took > 4*time.Second {
		t.Errorf("the gateway exited %v after SIGTERM with shutdown_grace 1s: the upstream holding its header held the exit", took)
	}
	if h := got["held"]; h.status != 503 || !strings.Contains(h.body, `"code":"shutting_down"`) {
		t.Errorf("client of the stream whose upstream held its header at the grace's end got %+v; want 503 shutting_down, "+
			"which the SDKs retry on another replica", h)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"request"`) {
			continue
		}
		for _, ep := range []string{"held", "cold"} {
			if strings.Contains(l, `"endpoint":"`+ep+`"`) {
				lines[ep] = l
			}
		}
	}

	// A second replica on the same Redis reads both token buckets.
	api2, admin2 := freePort(t), freePort(t)
	startServe(t, writeFile(t, dir, "b.yaml", cfg(api2, admin2, fast, fast)))
	waitUntilWithin(t, 20*time.Second, func() bool { return statusOf("http://"+admin2+"/readyz") == 200 })
	remaining := func(ep string) int {
		resp, err := http.Post("http://"+api2+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+ep+`","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("probe of %s: status %d", ep, resp.StatusCode)
		}
		n, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		return n
	}
	if n := remaining("cold"); n < 18000 || !strings.Contains(lines["cold"], `"error":"shutdown_cut"`) {
		t.Fatalf("contrast (upstream sent its header, no token yet): remaining tokens %d, access line %q; want >= 18000 and shutdown_cut\n%s",
			n, lines["cold"], logs.String())
	}
	var line struct {
		Status   int    `json:"status"`
		Error    string `json:"error"`
		Attempts int    `json:"attempts"`
	}
	if l := lines["held"]; json.Unmarshal([]byte(l), &line) != nil || line.Status != 503 || line.Error != "shutting_down" || line.Attempts != 1 {
		t.Errorf("stream whose upstream held its answer header when shutdown_grace ran out: access log line %q; "+
			"want one line with status 503, error shutting_down, 1 attempt, as its client was answered\n%s",
			l, logs.String())
	}
	if n := remaining("held"); n < 18000 {
		t.Errorf("stream ended at the end of shutdown_grace before its first token, its upstream holding its header: "+
			"x-ratelimit-remaining-tokens %d of 20000 on another replica, its 8000-token estimate still charged; "+
			"want it refunded (README: one cut before its first token has its token estimate refunded), as the contrast stream's is", n)
	}
}
