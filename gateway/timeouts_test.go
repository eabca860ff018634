package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// closedWithin reads c until the server closes it and returns how long that took
// from start; it fails if the connection is still open after limit.
func closedWithin(t *testing.T, c net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

// server.read_timeout bounds reading a request from its first byte, and
// server.idle_timeout the wait for the next one on a kept-alive connection; the
// gateway moves both deadlines lazily (internal/deadline), so this checks that each
// still fires when it should and not at the other's time.
func TestServerTimeouts(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 300ms, idle_timeout: 1200ms}", 1)
	g := startGateway(t, cfg)
	host := strings.TrimPrefix(g.url, "http://")
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body

	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	roundTrip := func(t *testing.T, c net.Conn, br *bufio.Reader) {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}

	// slowRequest sends half a request's headers and checks that read_timeout closes
	// the connection 300 ms later.
	slowRequest := func(t *testing.T, c net.Conn) {
		start := time.Now()
		_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
		if took := closedWithin(t, c, start, 3*time.Second); took < 250*time.Millisecond || took > 1100*time.Millisecond {
			t.Errorf("closed %v after the first byte, want read_timeout's 300 ms", took)
		}
	}

	t.Run("slow first request", func(t *testing.T) {
		slowRequest(t, dial(t))
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		roundTrip(t, c, br)
		roundTrip(t, c, br)
		start := time.Now()
		// Open past read_timeout: idle_timeout governs the wait.
		if took := closedWithin(t, c, start, 4*time.Second); took < 1100*time.Millisecond || took > 3*time.Second {
			t.Errorf("idle connection closed after %v, want idle_timeout's 1.2 s", took)
		}
	})
	t.Run("slow request after an idle wait", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		roundTrip(t, c, br)
		time.Sleep(500 * time.Millisecond)
		slowRequest(t, c)
	})
	t.Run("requests keep a connection alive past both", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		end := time.Now().Add(2 * time.Second)
		for time.Now().Before(end) {
			roundTrip(t, c, br)
			time.Sleep(200 * time.Millisecond)
		}
	})
}
