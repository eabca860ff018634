package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// A client that asks for a listing streamed by chunks and then stops reading it (a
// pager it sits in, a process stopped) holds the runtime the listing began with only
// for a while: a reload retires that runtime, and it is let go, the listing cut, rather
// than kept with its config and its series until the client leaves.
func TestAdminKeysListingStalledClientLetsRuntimeGo(t *testing.T) {
	t.Parallel()
	const n = 10_000
	g := startGateway(t, listingConfig(startStaticUpstream(t), n, true, ""))
	g.keyWriteWait.Store(int64(500 * time.Millisecond))
	c, err := net.Dial("tcp", g.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if _, err := c.Write([]byte("GET /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admtok\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("status line %q: %v", status, err)
	}
	old := g.rt.Load()
	for deadline := time.Now().Add(10 * time.Second); old.refs.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listing does not hold the runtime")
		}
	}
	// The client reads no more.
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if g.rt.Load() == old {
		t.Fatal("the reload installed no new runtime")
	}
	for deadline := time.Now().Add(10 * time.Second); old.refs.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the retired runtime is still held %d times by a client that stopped reading", old.refs.Load())
		}
	}
}

// The wait for each chunk is the listing's own: a connection kept alive after a
// listing answers its next request however long after it comes.
func TestAdminKeysListingWriteWaitEndsWithIt(t *testing.T) {
	t.Parallel()
	g := startGateway(t, listingConfig(startStaticUpstream(t), keyChunk+10, false, ""))
	g.keyWriteWait.Store(int64(200 * time.Millisecond))
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var local []string
	for i := range 2 {
		req, err := http.NewRequest("GET", "http://"+g.AdminAddr()+"/admin/keys", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer admtok")
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { local = append(local, ci.Conn.LocalAddr().String()) }}
		resp, err := client.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			t.Fatalf("listing %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !json.Valid(body) {
			t.Fatalf("listing %d: %d, %d bytes, %v", i, resp.StatusCode, len(body), err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if len(local) != 2 || local[0] != local[1] {
		t.Errorf("the listings came on connections %v, want one kept alive", local)
	}
}
