package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/providers/mockllm"
)

func TestLoad(t *testing.T) {
	s, err := load(filepath.Join("..", "testdata", "gateway-chat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != "127.0.0.1:18080" || s.admin != "127.0.0.1:19090" || s.upstream != "127.0.0.1:18001" {
		t.Fatalf("settings %+v", s)
	}
	want := map[string]string{`"model":"chat"`: `"model":"mock-1"`, `"model":"embed"`: `"model":"mock-1"`, `"model":"rerank"`: `"model":"mock-1"`}
	if len(s.rewrites) != len(want) {
		t.Fatalf("rewrites %v", s.rewrites)
	}
	for k, v := range want {
		if s.rewrites[k] != v {
			t.Fatalf("rewrites %v, want %v", s.rewrites, want)
		}
	}

	dir := t.TempDir()
	for name, text := range map[string]string{
		"bad-yaml":   "server: [",
		"no-backend": "server:\n  listen: 127.0.0.1:1\n",
		"https":      "server:\n  listen: 127.0.0.1:1\nbackends:\n  m:\n    base_url: https://x/v1\n",
	} {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := load(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
}

func TestRewriteModel(t *testing.T) {
	rw := map[string]string{`"model":"chat"`: `"model":"mock-1"`}
	for _, tc := range []struct{ in, out string }{
		{`{"model":"chat","x":1}`, `{"model":"mock-1","x":1}`},
		{`{"x":"y","model":"chat"}`, `{"x":"y","model":"mock-1"}`},
		{`{"model":"other"}`, ""},
		{`{"model":"chat`, ""},
		{`{}`, ""},
	} {
		out, ok := rewriteModel([]byte("keep:"), []byte(tc.in), rw)
		if tc.out == "" {
			if ok || string(out) != "keep:" {
				t.Errorf("%s: rewritten to %q", tc.in, out)
			}
			continue
		}
		if !ok || string(out) != "keep:"+tc.out {
			t.Errorf("%s: got %q, want %q", tc.in, out, tc.out)
		}
	}
}

func startMock(t *testing.T) string {
	t.Helper()
	m, err := mockllm.New(mockllm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.Serve(ln) }()
	t.Cleanup(func() { _ = m.Shutdown() })
	return ln.Addr().String()
}

// closedPort is a loopback address nothing listens on.
// The port stays held for the test, so no other test's server can take it meanwhile.
func closedPort(t *testing.T) string {
	h, err := freeport.Hold()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h.Addr()
}

func settingsFor(upstream string) settings {
	return settings{listen: "127.0.0.1:0", upstream: upstream, rewrites: map[string]string{
		`"model":"chat"`: `"model":"mock-1"`, `"model":"embed"`: `"model":"mock-1"`,
	}}
}

// stacks start each stack this platform has on s and return its address; the
// epoll stack adds itself on Linux (epoll_test.go).
var stacks = map[string]func(t *testing.T, s settings) string{
	"fasthttp": func(t *testing.T, s settings) string {
		ln, err := net.Listen("tcp", s.listen)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = serveFasthttp(ln, s) }()
		t.Cleanup(func() { _ = ln.Close() })
		return ln.Addr().String()
	},
}

func stackNames() []string {
	names := make([]string, 0, len(stacks))
	for n := range stacks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// start runs the stack named by mode in front of upstream and returns its address.
func start(t *testing.T, mode, upstream string) string {
	t.Helper()
	return stacks[mode](t, settingsFor(upstream))
}

func request(path, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func readAnswer(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestProxies(t *testing.T) {
	upstream := startMock(t)
	chat := request("/v1/chat/completions", `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	embed := request("/v1/embeddings", `{"model":"embed","input":"hi"}`)
	stream := request("/v1/chat/completions", `{"model":"chat","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`)
	// A body larger than a loop's first read buffer, so that it arrives in parts.
	long := request("/v1/chat/completions", `{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"`+
		strings.Repeat("word ", 4000)+`"}]}`)
	for _, mode := range stackNames() {
		t.Run(mode, func(t *testing.T) {
			c, err := net.Dial("tcp", start(t, mode, upstream))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			// Sequential on one connection, then two pipelined in one write.
			for i, req := range []string{chat, embed, long, stream, chat + embed} {
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				code, body := readAnswer(t, br)
				if code != 200 || !strings.Contains(body, `"mock-1"`) {
					t.Fatalf("request %d: %d %s", i, code, body)
				}
				if req == stream && !strings.HasSuffix(body, "data: [DONE]\n\n") {
					t.Fatalf("stream ends %q", body[max(0, len(body)-40):])
				}
				if req == chat+embed {
					if code, body = readAnswer(t, br); code != 200 || !strings.Contains(body, `"embedding"`) {
						t.Fatalf("pipelined: %d %s", code, body)
					}
				}
			}
		})
	}
}

func TestProxiesUpstreamDown(t *testing.T) {
	down := closedPort(t)
	chat := request("/v1/chat/completions", `{"model":"chat","messages":[]}`)
	checks := map[string]func(*bufio.Reader) error{
		// The event loop cannot reach the upstream when the client connects and
		// closes the client's connection (a reset, as the request is unread).
		"epoll": func(br *bufio.Reader) error {
			if b, err := br.ReadByte(); err == nil {
				return fmt.Errorf("read %q, want the connection closed", b)
			} else if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				return err
			}
			return nil
		},
		"fasthttp": func(br *bufio.Reader) error {
			if code, _ := readAnswer(t, br); code != http.StatusBadGateway {
				return io.ErrUnexpectedEOF
			}
			return nil
		},
	}
	for _, mode := range stackNames() {
		check := checks[mode]
		c, err := net.Dial("tcp", start(t, mode, down))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, chat)
		if err := check(bufio.NewReader(c)); err != nil {
			t.Errorf("%s: %v", mode, err)
		}
		_ = c.Close()
	}
}
