package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestReloadUnderLoad swaps configs (good and bad) while clients keep calling: no
// request may fail, and a bad config must leave the running one in place.
// Not t.Parallel: its eight clients send as fast as they can across the reloads.
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
	t.Parallel()
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
	t.Parallel()
	// 50 tokens 40ms apart: the stream runs 2 s, far longer than the listener takes
	// to close once shutdown begins, on a loaded machine too.
	_, addr := startMock(t, mockllm.Options{MaxTokens: 50, TPOT: 40 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	c := g.client()
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: userMsg("long answer please"), MaxTokens: openai.Int(50)})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	stopped := make(chan struct{})
	go func() { g.cancel(); <-g.done; g.done <- nil; close(stopped) }()
	// The shutdown closes the listener when its goroutine runs, which on a loaded
	// machine may be well after any fixed pause: wait for the refusal, and check that
	// it came while the stream was still draining.
	whileDraining := false
	refused := pollFor(10*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", g.Addr(), 200*time.Millisecond)
		if err != nil {
			select {
			case <-stopped:
			default:
				whileDraining = true
			}
			return true
		}
		conn.Close()
		return false
	})
	if !refused {
		t.Error("new connections still accepted 10s into the drain")
	} else if !whileDraining {
		t.Error("new connections accepted until the shutdown had finished, not refused while it drained the stream")
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

// TestShutdownClosesConnectionIdleAfterStream stops the gateway while a client keeps
// its connection open after a finished stream, as HTTP clients keep connections for
// the next request: that connection is idle, and shutdown must close it at once
// rather than wait (fasthttp counts a connection handed back to it as new, not idle,
// for its first 5 s). The connection must still serve a next request before that.
func TestShutdownClosesConnectionIdleAfterStream(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 3})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	call := func(stream bool) {
		t.Helper()
		body := `{"model":"chat","stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %v: %v", stream, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.Close {
			t.Fatalf("stream %v: %v (close %v) %q", stream, err, resp.Close, b)
		}
	}
	call(true)
	call(false) // the connection goes on after a stream
	call(true)
	call(true)
	// The stream is over and the client idles on its connection.
	start := time.Now()
	g.cancel()
	<-g.done
	g.done <- nil
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v with one connection idle after a stream", d)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("idle connection still open after shutdown: read %q", n)
	}
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

// TestReloadKeepsSaveMadeDuringReload saves the file a second time while the reload of
// the first save is building: the watcher must load the second save too, not take it
// for the config that is running.
func TestReloadKeepsSaveMadeDuringReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(reviewCfg("127.0.0.1:0", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	// Reload logs the restart warning after it has read the file and before it swaps
	// the new config in: the second save happens there.
	h := hookHandler{Handler: slog.NewJSONHandler(&logs, nil), match: "take effect on restart", once: &sync.Once{},
		hook: func() { writeAtomic(t, path, reviewCfg("localhost:0", "c")) }}
	s := newWatched(t, path, Options{Logger: slog.New(h)})
	writeAtomic(t, path, reviewCfg("localhost:0", "b"))
	waitFor(t, func() bool { return hasEndpoint(s, "c") })
}

// TestReloadOnSymlinkTargetSave names the config by a symlink into another directory
// (stow, Nix, /etc/alternatives): a save of the file it points to reloads, and so does
// a save of a new target after the link is repointed to a third directory.
func TestReloadOnSymlinkTargetSave(t *testing.T) {
	t.Parallel()
	realDir, linkDir, nextDir := t.TempDir(), t.TempDir(), t.TempDir()
	real := filepath.Join(realDir, "prod.yaml")
	if err := os.WriteFile(real, []byte(reviewCfg("127.0.0.1:0", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(linkDir, "tollgate.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, link, Options{Logger: discardLogger()})

	writeAtomic(t, real, reviewCfg("127.0.0.1:0", "b"))
	waitFor(t, func() bool { return hasEndpoint(s, "b") })

	next := filepath.Join(nextDir, "next.yaml")
	if err := os.WriteFile(next, []byte(reviewCfg("127.0.0.1:0", "c")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(next, link+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".new", link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hasEndpoint(s, "c") })
	writeAtomic(t, next, reviewCfg("127.0.0.1:0", "d"))
	waitFor(t, func() bool { return hasEndpoint(s, "d") })
}

// newWatched builds a server on path and watches its file until the test ends,
// without listening.
func newWatched(t *testing.T, path string, opt Options) *Server {
	t.Helper()
	s, err := New(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.watch(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if rt := s.rt.Swap(nil); rt != nil {
			rt.retireNow()
		}
	})
	return s
}

// TestReloadAppliesLoggingLevel raises logging.level to debug on a running gateway, as
// one does to troubleshoot it, and lowers it again.
func TestReloadAppliesLoggingLevel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	cfg := func(level string) string {
		return reviewCfg("127.0.0.1:0", "a") + "logging: {level: " + level + ", access_log: false}\n"
	}
	if err := os.WriteFile(path, []byte(cfg("warn")), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rt := s.rt.Swap(nil); rt != nil {
			rt.retireNow()
		}
	})
	ctx := context.Background()
	if s.Logger().Enabled(ctx, slog.LevelInfo) {
		t.Fatal("logging.level: warn writes info logs")
	}
	for _, c := range []struct {
		level string
		want  slog.Level
	}{{"debug", slog.LevelDebug}, {"error", slog.LevelError}} {
		if err := os.WriteFile(path, []byte(cfg(c.level)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		if !s.Logger().Enabled(ctx, c.want) || s.Logger().Enabled(ctx, c.want-1) {
			t.Fatalf("after reloading logging.level: %s the logger does not write from %v on", c.level, c.want)
		}
	}
}

// TestRestartOnlyChanges lists the keys a reload cannot apply, which it warns about.
func TestRestartOnlyChanges(t *testing.T) {
	boot, err := ParseConfig("t.yaml", []byte(reviewCfg("127.0.0.1:0", "a")), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(c *Config)
		// handedIn builds the server with a logger from Options.
		handedIn bool
		want     []string
	}{
		{"nothing changed", func(c *Config) {}, false, nil},
		{"log level applies on reload", func(c *Config) { c.Logging.Level = "debug" }, false, nil},
		{"log format", func(c *Config) { c.Logging.Format = "text" }, false, []string{"logging.format"}},
		{"log format with a logger handed in", func(c *Config) { c.Logging.Format = "text" }, true, nil},
		{"listeners and timeouts", func(c *Config) {
			c.Server.Listen, c.Server.AdminListen = ":1", ":2"
			c.Server.ReadTimeout, c.Server.IdleTimeout = time.Second, time.Minute
		}, false, []string{"server.listen", "server.admin_listen", "server.read_timeout", "server.idle_timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{boot: boot}
			if !c.handedIn {
				s.level = new(slog.LevelVar)
			}
			next := *boot
			c.edit(&next)
			if got := s.restartOnly(&next); !slices.Equal(got, c.want) {
				t.Fatalf("restartOnly = %q, want %q", got, c.want)
			}
		})
	}
}

// TestFailedReloadKeepsRunningLimiter reloads a config whose limiter section changed
// and whose tracer cannot be built: the reload fails, and the running limiter, which
// the failed reload did not build, must go on answering from Redis. Both timeouts are
// ones no loaded test machine reaches: with on_redis_error deny a check past the
// default 50ms answers 503, which is not what this checks.
func TestFailedReloadKeepsRunningLimiter(t *testing.T) {
	rds := redistest.Start(t)
	cfg := func(limiter, tracing string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}], limits: [{per: endpoint, requests: 1000000, window: second}]}
limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, on_redis_error: deny` + limiter + `}
tracing: ` + tracing + `
logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg(", timeout: 5s", "{exporter: none}"))
	chat := func() int {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := chat(); code != 200 {
		t.Fatalf("before the reload: status %d", code)
	}
	// Building the tracer fails after the config has been accepted (no valid config
	// makes it fail, so the test makes it).
	refused := errors.New("tracing: otlp-grpc exporter: refused")
	g.failTracer.Store(&refused)
	next := cfg(", timeout: 4s", `{exporter: otlp-grpc, endpoint: "127.0.0.1:4317", insecure: true}`)
	if err := os.WriteFile(g.path, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "otlp-grpc exporter") {
		t.Fatalf("reload with an unbuildable tracer: err = %v, want the tracer's error", err)
	}
	if code := chat(); code != 200 {
		t.Fatalf("after the failed reload: status %d, want 200 from the running limiter\n%s", code, g.logs.String())
	}
}

// hookHandler is a slog handler that runs hook (once) on the first record whose
// message contains match: it lets a test act at a fixed point inside Reload.
type hookHandler struct {
	slog.Handler
	match string
	once  *sync.Once
	hook  func()
}

func (h hookHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.once.Do(h.hook)
	}
	return h.Handler.Handle(ctx, r)
}

// writeAtomic replaces the file at path with body by rename, as editors save.
func writeAtomic(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// reviewCfg is a config listening on listen with one chat endpoint on the mock
// provider.
func reviewCfg(listen, endpoint string) string {
	return `server: {listen: "` + listen + `", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: ` + endpoint + `, type: chat, routes: [{backend: demo}]}
`
}

// hasEndpoint reports whether the running config of s defines the endpoint name.
func hasEndpoint(s *Server, name string) bool {
	rt := s.rt.Load()
	return rt != nil && rt.endpoints[name] != nil
}

// A config named by a symlink to another file of the same directory
// (tollgate.yaml -> tollgate.prod.yaml) reloads when that file is saved, as a target in
// another directory does.
func TestReloadOnSymlinkTargetInSameDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "tollgate.prod.yaml")
	if err := os.WriteFile(real, []byte(reviewCfg("127.0.0.1:0", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tollgate.yaml")
	if err := os.Symlink("tollgate.prod.yaml", link); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, link, Options{Logger: discardLogger()})
	// Let the watcher's first comparison run.
	time.Sleep(200 * time.Millisecond)

	// An in-place write (what `echo >>`, sed -i's rename aside, or most config tools do).
	if err := os.WriteFile(real, []byte(reviewCfg("127.0.0.1:0", "b")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hasEndpoint(s, "b") })
}

// The /etc/alternatives layout: the config is a link to a link in a third directory
// (/etc/tollgate.yaml -> /etc/alternatives/tollgate.yaml -> /opt/v1/tollgate.yaml), and
// `update-alternatives --set` repoints the middle link: the new file is loaded.
func TestReloadOnSymlinkChainRepoint(t *testing.T) {
	t.Parallel()
	etc, alt, v1, v2 := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	f1 := filepath.Join(v1, "tollgate.yaml")
	f2 := filepath.Join(v2, "tollgate.yaml")
	if err := os.WriteFile(f1, []byte(reviewCfg("127.0.0.1:0", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f2, []byte(reviewCfg("127.0.0.1:0", "b")), 0o644); err != nil {
		t.Fatal(err)
	}
	mid := filepath.Join(alt, "tollgate.yaml")
	if err := os.Symlink(f1, mid); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(etc, "tollgate.yaml")
	if err := os.Symlink(mid, link); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, link, Options{Logger: discardLogger()})
	time.Sleep(200 * time.Millisecond)

	// update-alternatives: a new link renamed over the old one.
	if err := os.Symlink(f2, mid+".dpkg-tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(mid+".dpkg-tmp", mid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hasEndpoint(s, "b") })
}
