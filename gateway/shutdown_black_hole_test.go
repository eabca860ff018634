package gateway

import (
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
)

// Backends whose target's address black-holes (a deleted vLLM pod's IP: its SYNs go
// unanswered) hold neither a reload's answer nor the gateway's exit for their long
// connect_timeout: the health checks and /metrics reads still connecting end with the
// config that ran them, the one a reload replaced and the one running at shutdown
// alike, every backend's at once rather than one after another (README, Replica
// pools).
func TestBlackHoledTargetHoldsNeitherReloadNorShutdown(t *testing.T) {
	s, err := freeport.ListenSilent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	connecting := func(n int) func() bool {
		return func() bool {
			got, err := s.Connecting()
			if err != nil {
				t.Fatal(err)
			}
			return got >= n
		}
	}
	cfg := func(timeout string) string {
		backend := `{provider: openai, base_url: "http://` + s.Addr() + `/v1", model: up-model,
          connect_timeout: 30s, balance: vllm_queue, metrics_interval: 30s,
          health: {path: /health, interval: 1h, timeout: ` + timeout + `}}`
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  llama: ` + backend + `
  mistral: ` + backend + `
endpoints:
  - {name: chat, type: chat, routes: [{backend: llama}]}
  - {name: other, type: chat, routes: [{backend: mistral}]}
logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg("30s"))
	// A check and a read for each backend.
	waitFor(t, connecting(4))
	// The reload replaces both backends (their health settings changed): the dials
	// under way are the retired config's.
	if err := os.WriteFile(g.path, []byte(cfg("29s")), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the reload answered after %v", took)
	}
	waitFor(t, connecting(4))
	start = time.Now()
	g.stopWithin(t, 90*time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the gateway took %v to stop, with no request open: it waited for the health checks' dials under way", took)
	}
}
