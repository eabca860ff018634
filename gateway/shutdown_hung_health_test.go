package gateway

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A target whose /health and /metrics hang (a vLLM whose engine is stuck: it accepts
// the connection and never answers) holds neither a reload's answer nor the
// gateway's exit for the checks' timeout: the checks and reads under way end with
// the config that ran them, the one a reload replaced and the one running at
// shutdown alike (README, Replica pools).
func TestHungHealthCheckHoldsNeitherReloadNorShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						asked.Add(1)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	cfg := func(timeout string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  llama: {provider: openai, base_url: "http://` + ln.Addr().String() + `/v1", model: up-model,
          balance: vllm_queue, metrics_interval: 20s,
          health: {path: /health, interval: 1h, timeout: ` + timeout + `}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: llama}]}
logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg("20s"))
	waitFor(t, func() bool { return asked.Load() >= 2 })
	// The reload replaces the backend (its health settings changed): its check and
	// read under way are the retired config's.
	if err := os.WriteFile(g.path, []byte(cfg("19s")), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the reload answered after %v", took)
	}
	waitFor(t, func() bool { return asked.Load() >= 4 })
	start = time.Now()
	g.stopWithin(t, 40*time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the gateway took %v to stop, with no request open: it waited for the health checks under way", took)
	}
}
