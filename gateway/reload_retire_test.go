package gateway

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// gaugeValue reads an unlabelled gauge from the server's registry.
func gaugeValue(t *testing.T, s *Server, name string) (float64, bool) {
	t.Helper()
	fams, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.Metric) > 0 && f.Metric[0].Gauge != nil {
			return f.Metric[0].Gauge.GetValue(), true
		}
	}
	return 0, false
}

// An operator saves a broken config (the reload is refused, the alert
// TollgateConfigReloadFailed fires), then reverts the file to what runs. The file,
// though it holds the running config, is read again: the reload succeeds, and
// tollgate_config_last_reload_successful goes back to 1, clearing the alert.
func TestRevertAfterFailedReloadClearsReloadFailed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"broken save", "file deleted"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tollgate.yaml")
			good := reviewCfg("127.0.0.1:0", "a")
			if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newWatched(t, path, Options{Logger: discardLogger()})
			time.Sleep(300 * time.Millisecond)
			if mode == "broken save" {
				writeAtomic(t, path, "endpoints: [ {name: broken")
			} else if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if !waitWithin(10*time.Second, func() bool {
				v, ok := gaugeValue(t, s, "tollgate_config_last_reload_successful")
				return ok && v == 0
			}) {
				t.Fatal("the broken save was not seen as a failed reload")
			}
			// The operator puts back the file the gateway runs.
			writeAtomic(t, path, good)
			if !waitWithin(10*time.Second, func() bool {
				v, _ := gaugeValue(t, s, "tollgate_config_last_reload_successful")
				return v == 1
			}) {
				t.Fatal("config file reverted to the running (valid) config: tollgate_config_last_reload_successful still 0 after 10s, so TollgateConfigReloadFailed keeps firing")
			}
		})
	}
}

// tracedDownCollectorCfg serves one chat endpoint on a mock backend whose first token takes
// ttft, tracing every request to an OTLP collector that is down.
func tracedDownCollectorCfg(ttft string, ratio string) string {
	return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 10s}
backends:
  demo: {provider: mock, model: mock-1, mock: {ttft: ` + ttft + `, max_tokens: 4}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
tracing: {exporter: otlp-grpc, endpoint: "127.0.0.1:1", insecure: true, sample_ratio: ` + ratio + `}
logging: {access_log: false}
`
}

// A reload that changes tracing retires the old runtime when its last request ends,
// and closing it shuts the old tracer down, exporting what it queued for up to 5 s.
// With the collector down (the very moment an SRE reloads to point tracing elsewhere)
// that must not run before the last request's answer is written: requests in flight
// finish on their old config without waiting for its teardown.
func TestRetiredTracerShutdownDoesNotDelayRequest(t *testing.T) {
	t.Parallel()
	g := startGateway(t, tracedDownCollectorCfg("500ms", "1"))
	c := g.client()
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("warm")}); err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
		if err != nil {
			t.Error(err)
		}
		done <- time.Since(t0)
	}()
	time.Sleep(150 * time.Millisecond)
	if err := os.WriteFile(g.path, []byte(tracedDownCollectorCfg("500ms", "0.5")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	took := <-done
	// The upstream answers in about 0.5 s; 3 s leaves room for a slow machine.
	if took > 3*time.Second {
		t.Fatalf("request in flight across a tracing: reload took %v (upstream answers in 0.5s): the retired tracer's shutdown ran before its answer was sent", took.Round(time.Millisecond))
	}
}

// The same teardown, when no request holds the old runtime, does not run inside Reload
// under reloadMu: SIGHUP, POST /admin/reload and the file watch would each block for
// the old tracer's export timeout.
func TestReloadDoesNotWaitForRetiredTracer(t *testing.T) {
	t.Parallel()
	g := startGateway(t, tracedDownCollectorCfg("1ms", "1"))
	c := g.client()
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.path, []byte(tracedDownCollectorCfg("1ms", "0.5")), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Fatalf("Reload changing tracing: took %v with the old collector down: it waits for the retired tracer's export", took.Round(time.Millisecond))
	}
}
