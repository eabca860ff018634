package gateway

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestReloadUnderLoad swaps configs (good and bad) while clients keep calling: no
// request may fail, and a bad config must leave the running one in place.
func TestReloadUnderLoad(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfgA := mockConfig(addr, "", "")
	cfgB := mockConfig(addr, `  other: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
`, `  - {name: extra, type: chat, routes: [{backend: other}]}
`)
	g := startGateway(t, cfgA)
	c := g.client()

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := range 20 {
		next := cfgA
		if i%2 == 0 {
			next = cfgB
		}
		if i%5 == 4 {
			next = "endpoints: [ {name: broken"
		}
		if err := os.WriteFile(g.path, []byte(next), 0o644); err != nil {
			t.Fatal(err)
		}
		err := g.Reload()
		if (i%5 == 4) != (err != nil) {
			t.Errorf("reload %d: err = %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed across reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 20 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
	if !strings.Contains(g.logs.String(), "config reload failed; keeping the running config") {
		t.Error("bad config was not logged")
	}
}

// TestReloadOnFileChange edits the file in place and by rename, as editors do.
func TestReloadOnFileChange(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	next := mockConfig(addr, "", "  - {name: added, type: chat, routes: [{backend: up}]}\n")
	tmp := g.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "added", Messages: userMsg("hi")})
		return err == nil
	})
}

// TestReloadOnConfigMapSwap mounts the config the way Kubernetes mounts a ConfigMap:
// tollgate.yaml is a link through the "..data" symlink, and an update swaps "..data"
// to a new directory. The gateway must see that change and reload.
func TestReloadOnConfigMapSwap(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	dir := t.TempDir()
	write := func(version, yaml string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, version), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, version, "tollgate.yaml"), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("..2026_11_23_v1", mockConfig(addr, "", ""))
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.Symlink(filepath.Join("..data", "tollgate.yaml"), path); err != nil {
		t.Fatal(err)
	}
	c := serveConfig(t, path).client()

	// A log written beside the config is not a config change.
	if err := os.WriteFile(filepath.Join(dir, "gateway.log"), []byte("line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("..2026_11_23_v2", mockConfig(addr, "", "  - {name: added, type: chat, routes: [{backend: up}]}\n"))
	waitFor(t, func() bool {
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "added", Messages: userMsg("hi")})
		return err == nil
	})
}

func TestConfigEvent(t *testing.T) {
	for name, want := range map[string]bool{
		"/etc/tollgate/tollgate.yaml":      true,
		"/etc/tollgate/..data":             true,
		"/etc/tollgate/..data_tmp":         true,
		"/etc/tollgate/..2026_11_23_v2":    true,
		"/etc/tollgate/tollgate.yaml.tmp":  false,
		"/etc/tollgate/.tollgate.yaml.swp": false,
		"/etc/tollgate/access.log":         false,
	} {
		if got := configEvent(name, "tollgate.yaml"); got != want {
			t.Errorf("configEvent(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestShutdownDrainsStream stops the gateway while a stream runs: the stream must end
// complete, and new connections must be refused.
func TestShutdownDrainsStream(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 30, TPOT: 20 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("long answer please"), MaxTokens: openai.Int(30)})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	stopped := make(chan struct{})
	go func() { g.cancel(); <-g.done; g.done <- nil; close(stopped) }()
	time.Sleep(50 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", g.Addr(), 200*time.Millisecond); err == nil {
		t.Error("new connections still accepted while draining")
	}
	var acc openai.ChatCompletionAccumulator
	chunks := 1
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
		if chunks == 5 {
			select {
			case <-stopped:
				t.Fatal("shutdown finished while a stream was still being written")
			default:
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream broken by shutdown after %d chunks: %v", chunks, err)
	}
	if acc.Choices[0].FinishReason == "" {
		t.Fatalf("stream ended without a finish reason after %d chunks", chunks)
	}
	<-stopped
}

// TestClientGoneAbortsUpstream closes the client connection mid-stream; the upstream
// request must be cancelled, not left generating.
func TestClientGoneAbortsUpstream(t *testing.T) {
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 200, TPOT: 20 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"chat","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"go on"}]}`
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no first event: %v %q", err, line)
	}
	waitFor(t, func() bool { return mock.Stats().Running == 1 })
	conn.Close()
	waitFor(t, func() bool { return mock.Stats().Running == 0 })
}
