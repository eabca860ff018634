package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// Many clients that announce a body under max_body_bytes and trickle it (a slow
// upload, or one that never comes) must cost the gateway about what they sent, not
// what they announced: 24 connections that sent 1 byte of an 8 MiB body each must
// not make the gateway hold 24 × 8 MiB for read_timeout.
func TestAnnouncedBodyNotAllocatedBeforeItComes(t *testing.T) {
	up := largeBodyUpstream(t)
	g := startGateway(t, maxBodyConfig(up, "8MiB"))
	liveHeap()
	before := liveHeap()
	const n = 24
	for range n {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + strconv.Itoa(8<<20) + "\r\n\r\n{"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	// Give the gateway time to read every header and wait for the bodies.
	var grown uint64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		liveHeap()
		if h := liveHeap(); h > before {
			grown = max(grown, h-before)
		}
	}
	if grown > 32<<20 {
		t.Fatalf("%d clients that sent %d bytes of body each grew the gateway's heap by %d MiB", n, 1, grown>>20)
	}
}

// bodyKeysConfig is expectConfig (max_body_bytes 4 KiB, so readLimit is 1 MiB + 8
// KiB) with a client key.
func bodyKeysConfig(up string) string {
	return expectConfig(up) + "auth: {mode: keys, keys: [{name: a, key: sk-body-1234}]}\n"
}

// chunked is body as a chunked request body, in chunks of n bytes.
func chunked(body string, n int) string {
	var b strings.Builder
	for len(body) > 0 {
		c := body[:min(n, len(body))]
		body = body[len(c):]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
	}
	return b.String() + "0\r\n\r\n"
}

// TestBodyNotTakenKeepsConnection: a body the gateway answers without taking (over
// max_body_bytes, announced or chunked; a request without a key; a wrong method) is
// read and dropped, up to readLimit, and the connection serves the client's next
// request; a body read as it arrives, in pieces, is served.
func TestBodyNotTakenKeepsConnection(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, bodyKeysConfig(up))
	const key = "Authorization: Bearer sk-body-1234\r\n"
	big := `{"model":"chat","x":"` + strings.Repeat("a", 100<<10) + `"}`
	small := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("b", 3000) + `"}]}`
	head := func(method, framing string, auth bool) string {
		h := method + " /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing
		if auth {
			h += key
		}
		return h + "\r\n"
	}
	length := func(body string) string { return "Content-Length: " + strconv.Itoa(len(body)) + "\r\n" }
	const te = "Transfer-Encoding: chunked\r\n"
	for _, tc := range []struct {
		name   string
		parts  []string // written with a pause between them
		status int
		code   string
	}{
		{"413 for a Content-Length over max_body_bytes", []string{head("POST", length(big), true), big}, 413, "request_too_large"},
		{"413 for a chunked body over max_body_bytes", []string{head("POST", te, true), chunked(big, 5000)}, 413, "request_too_large"},
		{"401 without a key", []string{head("POST", length(small), false), small}, 401, "missing_api_key"},
		{"401 without a key, a chunked body", []string{head("POST", te, false), chunked(small, 1000)}, 401, "missing_api_key"},
		{"405 for a body on GET", []string{head("GET", length(big), true), big}, 405, "method_not_allowed"},
		{"200 for a body sent in pieces", []string{head("POST", length(small), true), small[:10], small[10:2000], small[2000:]}, 200, ""},
		{"200 for a chunked body sent in pieces", []string{head("POST", te, true), chunked(small, 1000)[:1500], chunked(small, 1000)[1500:]}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialGateway(t, g)
			for i, p := range tc.parts {
				if i > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				if _, err := io.WriteString(c, p); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), `"code":"`+tc.code+`"`) && tc.code != "" || resp.Close {
				t.Fatalf("status %d, close %v: %.300s; want %d %s on a kept connection", resp.StatusCode, resp.Close, b, tc.status, tc.code)
			}
			if _, err := io.WriteString(c, rawRequest(t, g, chatBody, strings.TrimSuffix(key, "\r\n"))); err != nil {
				t.Fatal(err)
			}
			readChat(t, br)
		})
	}
}

// TestBodyOverReadLimitClosesConnection: a body over readLimit is answered 413 and its
// connection closed, lingering (the client still sending reads the 413): at once from
// a Content-Length over it, whether the body comes or not, and for HTTP/1.0 (which
// takes no expectation) after fasthttp's first read of 8 KiB; a chunked body once the
// gateway has read and dropped readLimit of it.
func TestBodyOverReadLimitClosesConnection(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, serverConfig(up, "read_timeout: 10s"))
	const size = 3 << 20 // readLimit(64 KiB) is 1 MiB + 128 KiB
	body := strings.Repeat("a", size)
	for _, tc := range []struct {
		name string
		head string
		body string
	}{
		{"Content-Length, no body sent", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n", ""},
		{"Content-Length, the body sent", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n", body},
		{"HTTP/1.0, the body sent", "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n", body},
		{"chunked", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", chunked(body, 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialGateway(t, g)
			start := time.Now()
			go func() { _, _ = io.WriteString(c, tc.head+tc.body) }()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || !resp.Close || !strings.Contains(string(b), `"code":"request_too_large"`) {
				t.Fatalf("status %d, close %v: %s; want 413 request_too_large, the connection closed", resp.StatusCode, resp.Close, b)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("answered after %v, want it before read_timeout", took)
			}
		})
	}
}

// TestBodyStalledGets408: a body that stalls past read_timeout after fasthttp's first
// read of it (8 KiB), in the handler's own reading, gets the 408 a stall before it
// gets, and its connection is closed.
func TestBodyStalledGets408(t *testing.T) {
	t.Parallel()
	g := startGateway(t, strings.Replace(maxBodyConfig(largeBodyUpstream(t), "1MiB"), "max_body_bytes: 1MiB}",
		"max_body_bytes: 1MiB, read_timeout: 500ms}", 1))
	c, br := dialGateway(t, g)
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(256<<10) + "\r\n\r\n"
	start := time.Now()
	if _, err := io.WriteString(c, head+chatOfSize(256 << 10)[:64<<10]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if took := time.Since(start); resp.StatusCode != 408 || !resp.Close || took > 3*time.Second {
		t.Fatalf("status %d, close %v, after %v: %s; want 408 request_timeout at read_timeout, the connection closed", resp.StatusCode, resp.Close, took, b)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the 408: %v, want the connection closed", err)
	}
}
