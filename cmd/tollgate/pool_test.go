package main

import (
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
)

// mockProcess is one mockllm program on addr.
type mockProcess struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
}

func startMockProcess(t *testing.T, addr string) *mockProcess {
	t.Helper()
	m := &mockProcess{t: t, addr: addr}
	m.cmd = exec.Command(mockBinary, "--listen", addr, "--model", "up-model", "--max-tokens", "4", "--ttft", "20ms")
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.kill)
	waitUntil(t, func() bool {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return m
}

// kill ends the process with SIGKILL, as a crashed replica ends.
func (m *mockProcess) kill() {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
		_ = m.cmd.Wait()
	}
}

// served is how many chat completions the replica has answered, from its own
// /metrics; -1 while it cannot be read.
func (m *mockProcess) served() int {
	fams, err := promtest.Scrape("http://" + m.addr + "/metrics")
	if err != nil {
		return -1
	}
	n, _ := promtest.Sum(fams, "vllm:request_success_total", nil)
	return int(n)
}

// TestPoolSurvivesAKilledReplica runs a gateway in front of three mockllm processes
// under concurrent load, kills one with SIGKILL mid-load, and brings it back: no
// request fails (every one was retried on a live replica before anything was sent to
// its client), the dead replica is marked down, and the restarted one serves again.
// It runs alone: with 200 ms health-check timeouts and one failure enough to eject,
// the parallel load tests could get a live replica ejected and requests failed.
func TestPoolSurvivesAKilledReplica(t *testing.T) {
	addrs := []string{freePort(t), freePort(t), freePort(t)}
	var mocks []*mockProcess
	for _, a := range addrs {
		mocks = append(mocks, startMockProcess(t, a))
	}
	reps := startReplicas(t, 1, `
backends:
  pool:
    provider: openai
    targets: ["http://`+addrs[0]+`/v1", "http://`+addrs[1]+`/v1", "http://`+addrs[2]+`/v1"]
    model: up-model
    balance: least_loaded
    connect_timeout: 300ms
    health: {interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1, eject_after: 1, eject_for: 300ms}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}], retries: 2}
logging: {level: error, access_log: false}
`)
	gw := reps[0]
	body := []byte(`{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	l := startLoad(reps, 8, body)
	time.Sleep(time.Second)
	mocks[1].kill()
	killedAt := l.ok.Load()
	time.Sleep(2 * time.Second)
	dead := func(l map[string]string) bool { return l["backend"] == "pool" && l["target"] == addrs[1] }
	waitUntil(t, func() bool {
		up, ok := promtest.Sum(scrapeAdmin(t, gw), "tollgate_backend_up", dead)
		return ok && up == 0
	})
	// The kill must have hit requests: attempts on the dead replica that failed (cut
	// mid-answer, or refused before it was marked down) and were retried elsewhere.
	lost, _ := promtest.Sum(scrapeAdmin(t, gw), "tollgate_upstream_attempts_total", func(l map[string]string) bool {
		return dead(l) && l["outcome"] != "ok"
	})
	if lost == 0 {
		t.Fatal("no attempt on the killed replica failed: the test did not exercise the retry")
	}
	back := startMockProcess(t, addrs[1])
	waitUntil(t, func() bool { return back.served() > 0 })
	// At least 50 answered after the kill, however slowly a loaded machine serves them.
	waitUntilWithin(t, 60*time.Second, func() bool { return l.ok.Load()-killedAt >= 50 || l.refused.Load()+l.other.Load() > 0 })
	l.finish()
	ok, failed := l.ok.Load(), l.refused.Load()+l.other.Load()
	t.Logf("%d requests answered (%d after the kill), %d failed", ok, ok-killedAt, failed)
	if failed > 0 {
		t.Fatalf("%d requests failed when a replica died; last: %v", failed, l.lastErr.Load())
	}
	if ok-killedAt < 50 {
		t.Fatalf("only %d requests answered after the kill", ok-killedAt)
	}
}

func scrapeAdmin(t *testing.T, r *replica) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := promtest.Scrape("http://" + r.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
