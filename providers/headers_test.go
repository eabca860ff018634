package providers

import (
	"bufio"
	"slices"
	"strings"
	"sync"
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
		copyForwardHeaders(&up, &Call{Header: client})
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
	copyForwardHeaders(&up, &Call{Header: &client})
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
			copyForwardHeaders(&up, &Call{Header: client})
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
			copyForwardHeaders(&up, &Call{Header: client})
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

// A header the client sent on several lines (one list, RFC 9110 5.3: W3C baggage and
// tracestate are often split so) goes upstream as sent, every line in its order; two
// names that share a nameBit go up one line each.
func TestCopyForwardHeadersRepeatedLines(t *testing.T) {
	const pkg, rt = "X-Stainless-Package-Version", "X-Stainless-Runtime-Version"
	if nameBit([]byte(pkg)) != nameBit([]byte(rt)) {
		t.Fatalf("%s and %s no longer share a nameBit: pick two names that do", pkg, rt)
	}
	client := parseHeader(t, "Baggage: userId=alice\r\nX-Team-Tag: one\r\nBaggage: tenant=acme\r\n"+
		"Tracestate: rojo=00f067aa0ba902b7\r\nTracestate: congo=t61rcWkgMzE\r\nX-Team-Tag: two\r\n"+
		pkg+": 3.8.1\r\n"+rt+": go1.26.8\r\n")
	var up fasthttp.RequestHeader
	copyForwardHeaders(&up, &Call{Header: client})
	for name, want := range map[string][]string{
		"Baggage":    {"userId=alice", "tenant=acme"},
		"Tracestate": {"rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"},
		"X-Team-Tag": {"one", "two"},
		pkg:          {"3.8.1"},
		rt:           {"go1.26.8"},
	} {
		var got []string
		for _, v := range up.PeekAll(name) {
			got = append(got, string(v))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q upstream, want %q", name, got, want)
		}
	}
}

// A header the provider sets (the backend's headers:, Anthropic's anthropic-version)
// reaches the upstream once, with the provider's value, however many lines of it the
// client sent.
func TestProviderHeadersReplaceEveryClientLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(base string) Config
		want map[string]string
	}{
		{"openai", func(base string) Config {
			return Config{Provider: "openai", BaseURL: base, Model: "m", Headers: map[string]string{"X-Team-Tag": "operator"}}
		}, map[string]string{"X-Team-Tag": "operator"}},
		{"azure", func(base string) Config {
			return Config{Provider: "azure", BaseURL: base, Model: "m", Deployment: "d", APIKey: "k",
				Headers: map[string]string{"X-Team-Tag": "operator"}}
		}, map[string]string{"X-Team-Tag": "operator", "Api-Key": "k"}},
		{"anthropic", func(base string) Config {
			c := anthropicConfig(base)
			c.Headers = map[string]string{"X-Team-Tag": "operator"}
			return c
		}, map[string]string{"X-Team-Tag": "operator", "Anthropic-Version": "2023-06-01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			lines := map[string][]string{}
			answer := answerFile(t, 200, "application/json", "testdata/anthropic/response_tool_use.json")
			if tc.name != "anthropic" {
				answer = func(ctx *fasthttp.RequestCtx) {
					ctx.SetContentType("application/json")
					ctx.SetBodyString(rawAnswer)
				}
			}
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				mu.Lock()
				for k := range tc.want {
					for _, v := range ctx.Request.Header.PeekAll(k) {
						lines[k] = append(lines[k], string(v))
					}
				}
				mu.Unlock()
				answer(ctx)
			})
			b := newTestBackend(t, tc.cfg(up.URL+"/v1"))
			call := chatCall(chatBody, false)
			call.Header = parseHeader(t, "X-Team-Tag: one\r\nX-Team-Tag: two\r\nAnthropic-Version: 1999-01-01\r\n"+
				"Anthropic-Version: 2000-01-01\r\nApi-Key: client\r\n")
			var out fasthttp.Response
			var res Result
			if err := b.Send(call, &out, &res); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range tc.want {
				if got := lines[k]; len(got) != 1 || got[0] != v {
					t.Errorf("%s: %q upstream, want only %q", k, got, v)
				}
			}
		})
	}
}

// An h2c upgrade's HTTP2-Settings is the client connection's, so it stays behind even
// when no Connection header names it (a client that sent Upgrade without Connection).
func TestCopyForwardHeadersDropsHTTP2Settings(t *testing.T) {
	client := parseHeader(t, "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Keep: 1\r\n")
	var up fasthttp.RequestHeader
	copyForwardHeaders(&up, &Call{Header: client})
	for k := range up.All() {
		if strings.EqualFold(string(k), "HTTP2-Settings") || strings.EqualFold(string(k), "Upgrade") {
			t.Errorf("%s forwarded", k)
		}
	}
	if got := string(up.Peek("X-Keep")); got != "1" {
		t.Errorf("X-Keep %q upstream, want 1", got)
	}
}
