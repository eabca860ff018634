package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestUnreadableRequestAnsweredWhileUploading: README's error table answers request
// headers over 8 KiB with 431, a request line over 8 KiB with 414 and an otherwise
// unreadable request with 400. A client that sends such a request with a body (a POST
// with a long cookie or token, a long query) is still writing when the gateway
// answers; closing over the unread bytes sends a reset, and a client that writes its
// whole body before it reads (Python's requests and urllib3, the clients the 413
// row's lingering close is for) gets "connection reset" and never the answer, which
// the SDKs then retry, uploading again. nginx, sent the same bytes, answers 414 / 400
// and the upload completes (lingering_close on); so does the gateway.
func TestUnreadableRequestAnsweredWhileUploading(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	body := bytes.Repeat([]byte("a"), 8<<20)
	for _, tc := range []struct {
		name, target, header string
		want                 int
	}{
		{"long header", "/v1/chat/completions", "X-Long: " + strings.Repeat("c", 9000) + "\r\n", 431},
		{"long URL", "/v1/chat/completions?q=" + strings.Repeat("u", 9000), "", 414},
		{"header line without a colon", "/v1/chat/completions", "X-No-Colon\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			head := "POST " + tc.target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + tc.header +
				"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
			_, werr := io.WriteString(conn, head)
			if werr == nil {
				_, werr = conn.Write(body)
			}
			resp, rerr := http.ReadResponse(bufio.NewReader(conn), nil)
			status := 0
			if rerr == nil {
				status = resp.StatusCode
			}
			if werr != nil {
				t.Errorf("the upload failed (%v; the answer read after it: %d, %v): the gateway closed over the unread body, and a client that writes its body before reading sees a reset, not the %d", werr, status, rerr, tc.want)
			}
			if status != tc.want {
				t.Errorf("status %d (%v), want %d", status, rerr, tc.want)
			}
		})
	}
}

// TestReadTimeoutAnsweredWhileUploading: a client whose request headers take longer
// than read_timeout gets its 408 and can finish writing what it was sending: the
// gateway lingers after the answer rather than resetting the writes that reach a
// closed socket.
func TestReadTimeoutAnsweredWhileUploading(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{})
	g := startGateway(t, serverConfig(up, "read_timeout: 300ms, idle_timeout: 5s"))
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	body := bytes.Repeat([]byte("a"), 1<<20)
	if _, err := io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	// The 408 comes while the client is still to send the rest of its request.
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 408 {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	_, werr := io.WriteString(conn, "Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
	if werr == nil {
		_, werr = conn.Write(body)
	}
	if werr != nil {
		t.Errorf("writing the rest of the request after the 408: %v; the gateway closed without lingering", werr)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Errorf("after the 408: %q, %v; want the connection closed (EOF)", rest, err)
	}
}
