package providers

import (
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
		"Traceparent": "5", "X-Stainless-Lang": "6", "Openai-Organization": "7"}
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
