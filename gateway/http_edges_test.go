package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// exchange writes raw on a fresh connection to addr and reads one response.
func exchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestMethodNotAllowedNamesAllow: a 405 carries the Allow header naming the methods
// the path takes (RFC 9110 §15.5.6), on the API and the admin listener.
func TestMethodNotAllowedNamesAllow(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	tests := []struct {
		name, method, url, allow string
	}{
		{"GET chat", "GET", g.url + "/v1/chat/completions", "POST"},
		{"HEAD chat", "HEAD", g.url + "/v1/chat/completions", "POST"},
		{"OPTIONS chat", "OPTIONS", g.url + "/v1/chat/completions", "POST"},
		{"GET embeddings", "GET", g.url + "/v1/embeddings", "POST"},
		{"POST models", "POST", g.url + "/v1/models", "GET"},
		{"GET admin reload", "GET", "http://" + g.AdminAddr() + "/admin/reload", "POST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 405 {
				t.Fatalf("status %d, want 405", resp.StatusCode)
			}
			if allow := resp.Header.Get("Allow"); !strings.Contains(allow, tc.allow) {
				t.Errorf("405 with Allow %q, want it to list %s (RFC 9110 §15.5.6); header %v", allow, tc.allow, resp.Header)
			}
		})
	}
}

// TestPerIPLimitForwardedForLines: HTTP allows a list header to come as several
// lines, which mean the same as one comma-joined line in order (RFC 9110 §5.3);
// HAProxy's `option forwardfor`, among others, adds its own X-Forwarded-For line
// after the one the client sent. Read from the first line only, the one the client
// wrote, any client behind such a proxy would pick its own per: ip bucket and its
// access-log client_ip.
func TestPerIPLimitForwardedForLines(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	limits := `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: ip, requests: 2, window: minute}]
`
	g := startGateway(t, strings.Replace(mockConfig(up, "", limits), "max_body_bytes: 64KiB,",
		`max_body_bytes: 64KiB, trusted_proxies: ["127.0.0.0/8"],`, 1))
	body := `{"model":"limited","messages":[{"role":"user","content":"hi"}]}`
	var got []int
	for i := 1; i <= 3; i++ {
		// The client 203.0.113.5 sends a forged line; the trusted proxy (loopback)
		// adds the line naming the real client after it.
		raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"X-Request-Id: xff-" + strconv.Itoa(i) + "\r\n" +
			"X-Forwarded-For: 6.6.6." + strconv.Itoa(i) + "\r\n" +
			"X-Forwarded-For: 203.0.113.5\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		resp, _ := exchange(t, g.Addr(), raw)
		got = append(got, resp.StatusCode)
	}
	if got[2] != 429 {
		t.Errorf("one client (203.0.113.5) behind the trusted proxy made 3 requests against a limit of 2/minute: statuses %v, want the third refused with 429", got)
	}
	if logs := g.logs.String(); strings.Contains(logs, `"client_ip":"6.6.6.`) || !strings.Contains(logs, `"client_ip":"203.0.113.5"`) {
		t.Errorf("access log shows the client-forged address, want 203.0.113.5 (the proxy's line):\n%s", logs)
	}
}

// TestUnreadableRequestStatus: a request that cannot be read gets the status that says
// why: 431 for request headers over the 8 KiB read buffer (RFC 6585) and 408 for a
// request not read within server.read_timeout (RFC 9110 §15.5.9; the official OpenAI
// SDKs retry 408, never 400).
func TestUnreadableRequestStatus(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 300ms}", 1))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	t.Run("headers too large", func(t *testing.T) {
		raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: " +
			strings.Repeat("a", 9000) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		resp, b := exchange(t, g.Addr(), raw)
		if resp.StatusCode != 431 {
			t.Errorf("status %d, want 431 Request Header Fields Too Large: %s", resp.StatusCode, b)
		}
	})
	t.Run("body stalls past read_timeout", func(t *testing.T) {
		raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body[:10]
		resp, b := exchange(t, g.Addr(), raw)
		if resp.StatusCode != 408 {
			t.Errorf("status %d, want 408 Request Timeout: %s", resp.StatusCode, b)
		}
	})
}

// requestsTotal is the sum of tollgate_requests_total over every series.
func requestsTotal(t *testing.T, g *gw) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := promtest.Sum(fams, "tollgate_requests_total", nil)
	return v
}

// TestEveryRequestCounted: every request is counted in tollgate_requests_total and
// has an access log line, the answers the gateway makes outside the API pipeline too
// (fasthttp's read errors, such as a body over the read limit, the unknown-URL 404,
// the 405, the model list).
func TestEveryRequestCounted(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	// 4 KiB: the read limit (2*max_body_bytes + 1 MiB) is then about 1 MiB.
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "max_body_bytes: 64KiB,", "max_body_bytes: 4KiB,", 1))
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"413 body over the read limit",
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: rm-413\r\nContent-Length: 3000000\r\n\r\n",
			413},
		{"404 unknown URL",
			"POST /v1/chat/completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: rm-404\r\nContent-Length: 2\r\n\r\n{}",
			404},
		{"405 wrong method",
			"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: rm-405\r\n\r\n",
			405},
		{"200 model list",
			"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: rm-models\r\n\r\n",
			200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := requestsTotal(t, g)
			resp, b := exchange(t, g.Addr(), tc.raw)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			id := resp.Header.Get("X-Request-Id")
			if after := requestsTotal(t, g); after != before+1 {
				t.Errorf("tollgate_requests_total went from %v to %v, want one more", before, after)
			}
			if !strings.Contains(g.logs.String(), `"msg":"request","request_id":"`+id+`"`) {
				t.Errorf("no access-log line for request %s", id)
			}
		})
	}
}

// TestAccessLogErrorOfEarlyRefusals: the refusals answered before the pipeline runs
// carry their error code in the access log too: a body over max_body_bytes (413
// request_too_large) and an MLflow invocation of an unknown endpoint (404
// model_not_found).
func TestAccessLogErrorOfEarlyRefusals(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "max_body_bytes: 64KiB,", "max_body_bytes: 4KiB,", 1))
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"413 body over max_body_bytes", "/v1/chat/completions", `{"model":"chat","x":"` + strings.Repeat("a", 5000) + `"}`, 413, "request_too_large"},
		{"404 unknown MLflow endpoint", "/endpoints/nosuch/invocations", `{"messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "rm-err-" + strconv.Itoa(i)
			resp, b := postRaw(t, http.DefaultClient, g.url+tc.path, tc.body, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != tc.status || !strings.Contains(string(b), `"code":"`+tc.code+`"`) {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var line string
			for _, l := range strings.Split(g.logs.String(), "\n") {
				if strings.Contains(l, `"request_id":"`+id+`"`) {
					line = l
				}
			}
			if !strings.Contains(line, `"error":"`+tc.code+`"`) {
				t.Errorf("access-log line of a %d %s, want error %q:\n%s", tc.status, tc.code, tc.code, line)
			}
		})
	}
}

// TestContentEncodedBodyRefused: a request body sent with a Content-Encoding other
// than identity (gzip, which some HTTP clients and proxies apply to large prompts) is
// refused with 415 unsupported_content_encoding, a message naming the header, on every
// API path, not 400 invalid_json, which sends a developer looking for a JSON bug. An
// identity coding is an uncoded body and is served, and the client's Content-Encoding
// never goes upstream, where it would describe the body the gateway re-spliced.
func TestContentEncodedBodyRefused(t *testing.T) {
	var mu sync.Mutex
	var upstreamCoding []string
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		upstreamCoding = append(upstreamCoding, string(ctx.Request.Header.Peek("Content-Encoding")))
		mu.Unlock()
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	g := startGateway(t, mockConfig(up, "", ""))
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(chatBody))
	_ = zw.Close()
	for _, c := range []struct {
		name, path, coding, body string
	}{
		{"gzip chat", "/v1/chat/completions", "gzip", zb.String()},
		{"gzip completions", "/v1/completions", "gzip", zb.String()},
		{"gzip embeddings", "/v1/embeddings", "gzip", zb.String()},
		{"gzip MLflow invocation", "/endpoints/chat/invocations", "gzip", zb.String()},
		{"br", "/v1/chat/completions", "br", chatBody},
		{"gzip after identity", "/v1/chat/completions", "identity, gzip", chatBody},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := postRaw(t, http.DefaultClient, g.url+c.path, c.body, map[string]string{"Content-Encoding": c.coding})
			if resp.StatusCode != 415 || !strings.Contains(string(b), `"code":"unsupported_content_encoding"`) || !strings.Contains(string(b), "Content-Encoding") {
				t.Errorf("body with Content-Encoding %s: %d %s; want 415 unsupported_content_encoding naming Content-Encoding", c.coding, resp.StatusCode, b)
			}
		})
	}
	for _, coding := range []string{"identity", "IDENTITY", "identity, identity"} {
		t.Run(coding, func(t *testing.T) {
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions", chatBody, map[string]string{"Content-Encoding": coding})
			if resp.StatusCode != 200 {
				t.Fatalf("body with Content-Encoding %s: %d %s, want 200", coding, resp.StatusCode, b)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(upstreamCoding) != 3 {
		t.Fatalf("%d upstream requests, want the 3 identity-coded ones", len(upstreamCoding))
	}
	for _, ce := range upstreamCoding {
		if ce != "" {
			t.Errorf("client's Content-Encoding %q forwarded upstream", ce)
		}
	}
}

// TestChunkedRequestBody: a request body sent with Transfer-Encoding: chunked (Node's
// fetch and Python's httpx send streamed uploads that way, and proxies re-chunk) is
// read whole, routed by its model and answered, on chat and embeddings alike, and the
// kept-alive connection serves the next request.
func TestChunkedRequestBody(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2, EmbeddingDim: 4})
	g := startGateway(t, mockConfig(up, "", ""))
	conn, br := dialGateway(t, g)
	for _, c := range []struct{ path, body, want string }{
		{"/v1/chat/completions", chatBody, `"chat.completion"`},
		{"/v1/embeddings", `{"model":"embed","input":["a","b"]}`, `"embedding"`},
	} {
		// Two chunks, split inside the model's value.
		i := strings.Index(c.body, `"model":"`) + 10
		raw := "POST " + c.path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", i, c.body[:i], len(c.body)-i, c.body[i:])
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer to a chunked body: %v", c.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), c.want) || resp.Close {
			t.Fatalf("%s with a chunked body: status %d, close %v: %s; want 200 with %s on a kept connection", c.path, resp.StatusCode, resp.Close, b, c.want)
		}
	}
}
