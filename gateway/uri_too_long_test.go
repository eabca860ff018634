package gateway

import (
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestLongRequestLineStatus: a request over the 8 KiB read buffer is refused with 414
// URI Too Long when its request line alone does not fit (RFC 9110 §15.5.15, as nginx
// answers it), and with 431 when its header fields overflow (RFC 6585 §5), each in
// the API's error shape: a 431 saying "headers" sends the developer of a long URL
// looking through headers a few bytes long, a 414 the one of a long token through
// URLs. It is told from what the connection read, on a new connection, on a kept-alive
// one and over TLS alike.
func TestLongRequestLineStatus(t *testing.T) {
	pki := newTestPKI(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	gt := startGateway(t, serverConfig(up, tlsSettings(pki)))
	long := strings.Repeat("a", 9000)
	// An identity provider's JWT with group claims: base64url, no space, no colon.
	jwt := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("eyJncm91cHMiOlsi", 600) + ".sig"
	tests := []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		{"long URL", "GET /v1/models?after=" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"},
		{"long URL, POST", "POST /v1/chat/completions?" + long + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 414, "uri_too_long"},
		{"long URL after an empty line", "\r\nGET /v1/models?after=" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"},
		{"long header", "GET /v1/models HTTP/1.1\r\nHost: x\r\nCookie: " + long + "\r\n\r\n", 431, "request_header_too_large"},
		{"long header after a longish URL", "GET /v1/models?after=" + strings.Repeat("b", 500) + " HTTP/1.1\r\nHost: x\r\nCookie: " +
			strings.Repeat("k=v; ", 2000) + "\r\n\r\n", 431, "request_header_too_large"},
		{"long bearer token after a longish URL", "GET /v1/models?api-version=2024-10-21&" + strings.Repeat("x", 250) +
			" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + jwt + "\r\n\r\n", 431, "request_header_too_large"},
		{"many headers", "GET /v1/models HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 90)+"\r\n", 100) + "\r\n",
			431, "request_header_too_large"},
	}
	conns := []struct {
		name  string
		g     *gw
		roots *x509.CertPool
		// first is sent and answered on the connection ahead of the request.
		first string
	}{
		{"new connection", g, nil, ""},
		{"kept-alive connection", g, nil, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TLS", gt, pki.pool, ""},
	}
	for _, conn := range conns {
		t.Run(conn.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					c := dialRaw(t, conn.g, conn.roots)
					if conn.first != "" {
						if _, err := io.WriteString(c.conn, conn.first); err != nil {
							t.Fatal(err)
						}
						c.status(t)
					}
					if _, err := io.WriteString(c.conn, tc.raw); err != nil {
						t.Fatal(err)
					}
					resp, err := http.ReadResponse(c.br, nil)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					var e struct {
						Error struct{ Code string } `json:"error"`
					}
					if resp.StatusCode != tc.status || json.Unmarshal(b, &e) != nil || e.Error.Code != tc.code {
						t.Errorf("%d %s; want %d with code %s in the API's error shape", resp.StatusCode, b, tc.status, tc.code)
					}
				})
			}
		})
	}
}
