package providers

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// sdkHeader is what the official OpenAI SDKs send with a chat request.
func sdkHeader() *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	for _, kv := range [][2]string{
		{"Host", "gateway.internal:8080"}, {"Accept", "application/json"}, {"Content-Type", "application/json"},
		{"User-Agent", "OpenAI/Go 3.8.1"}, {"Authorization", "Bearer sk-client-key"},
		{"X-Stainless-Arch", "x64"}, {"X-Stainless-Lang", "go"}, {"X-Stainless-Os", "Linux"},
		{"X-Stainless-Package-Version", "3.8.1"}, {"X-Stainless-Retry-Count", "0"},
		{"X-Stainless-Runtime", "go"}, {"X-Stainless-Runtime-Version", "go1.26.8"},
		{"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"Content-Length", "120"}, {"Accept-Encoding", "gzip"},
	} {
		h.Set(kv[0], kv[1])
	}
	return &h
}

// BenchmarkCopyForwardHeaders copies an SDK client's headers to an upstream request.
func BenchmarkCopyForwardHeaders(b *testing.B) {
	client := sdkHeader()
	var up fasthttp.RequestHeader
	b.ReportAllocs()
	for b.Loop() {
		up.Reset()
		copyForwardHeaders(&up, client)
	}
}

// Hop-by-hop headers, the client's credentials and the gateway's own X-Tollgate-*
// headers stay behind, in any case of their names; every other header goes upstream.
func TestCopyForwardHeaders(t *testing.T) {
	var client fasthttp.RequestHeader
	client.DisableNormalizing()
	for _, h := range hopHeaders {
		client.Set(h, "hop")
		client.Set(strings.ToLower(h), "hop")
	}
	for _, k := range []string{"X-Tollgate-Variant", "x-tollgate-backend"} {
		client.Set(k, "hop")
	}
	// Names of a hop header's length, and names that contain one, are not hop headers.
	keep := map[string]string{"X-Api-Kez": "1", "Te2": "2", "Cookies": "3", "X-Tollgate": "4",
		"Traceparent": "5", "X-Stainless-Lang": "6", "Openai-Beta": "7"}
	for k, v := range keep {
		client.Set(k, v)
	}
	var up fasthttp.RequestHeader
	copyForwardHeaders(&up, &client)
	got := map[string]string{}
	for k, v := range up.All() {
		got[string(k)] = string(v)
	}
	for k, v := range keep {
		if got[k] != v {
			t.Errorf("%s: %q upstream, want %q", k, got[k], v)
		}
		delete(got, k)
	}
	for k, v := range got {
		if v == "hop" {
			t.Errorf("%s forwarded", k)
		}
	}
}

// parseHeader reads a request header as the gateway's server does, from raw lines.
func parseHeader(t testing.TB, lines string) *fasthttp.RequestHeader {
	t.Helper()
	var h fasthttp.RequestHeader
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n" + lines + "\r\n"
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	return &h
}

// Headers the client names in its Connection header are hop-by-hop too (RFC 9110,
// 7.6.1) and stay behind, in any letter case, from every Connection header line; a
// Connection of keep-alive or close names none.
func TestCopyForwardHeadersConnectionNamed(t *testing.T) {
	const others = "X-Hop-Secret: s\r\nX-A: a\r\nX-B: b\r\nX-Keep: k\r\n"
	for _, tc := range []struct {
		name, connection string
		dropped          []string
	}{
		{"keep-alive", "Connection: keep-alive\r\n", nil},
		{"close", "Connection: close\r\n", nil},
		{"none", "", nil},
		{"one named", "Connection: keep-alive, X-Hop-Secret\r\n", []string{"X-Hop-Secret"}},
		{"named in lower case", "Connection: x-hop-secret\r\n", []string{"X-Hop-Secret"}},
		{"with close", "Connection: close, X-Hop-Secret\r\n", []string{"X-Hop-Secret"}},
		{"spaces and empty items", "Connection: ,X-A ,\t X-B,,\r\n", []string{"X-A", "X-B"}},
		{"two lines", "Connection: keep-alive\r\nConnection: X-A, X-B\r\n", []string{"X-A", "X-B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := parseHeader(t, tc.connection+others)
			var up fasthttp.RequestHeader
			copyForwardHeaders(&up, client)
			for _, k := range []string{"X-Hop-Secret", "X-A", "X-B", "X-Keep"} {
				dropped := slices.Contains(tc.dropped, k)
				if got := up.Peek(k); dropped != (got == nil) {
					t.Errorf("%s: %q upstream, dropped %v", k, got, dropped)
				}
			}
			if v := up.Peek("Connection"); v != nil {
				t.Errorf("Connection forwarded: %q", v)
			}
		})
	}
}

// The client's Content-Encoding and Content-Length describe the body it sent, not the
// one the gateway sends upstream (model rewritten, stream_options added): neither goes
// upstream, whatever coding it names.
func TestCopyForwardHeadersDropsBodyFraming(t *testing.T) {
	for _, coding := range []string{"gzip", "identity", "br, gzip"} {
		t.Run(coding, func(t *testing.T) {
			client := parseHeader(t, "Content-Type: application/json\r\nContent-Encoding: "+coding+"\r\ncontent-encoding: "+coding+"\r\nContent-Length: 12\r\n")
			var up fasthttp.RequestHeader
			copyForwardHeaders(&up, client)
			for k, v := range up.All() {
				if strings.EqualFold(string(k), "Content-Encoding") || strings.EqualFold(string(k), "Content-Length") {
					t.Errorf("%s: %q forwarded", k, v)
				}
			}
			if got := string(up.ContentType()); got != "application/json" {
				t.Errorf("Content-Type %q upstream, want application/json", got)
			}
		})
	}
}
