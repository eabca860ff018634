package providers

// A backend's key and header values, and the credentials of its proxy, never reach an
// error answer, an error event or an error the gateway logs.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An Anthropic backend reached through a gateway that wants its own credential in a
// header (Cloudflare's cf-aig-authorization, a corporate egress gateway): an error
// that quotes it (an error answer, read whole or streamed; an error event before or
// after the first chunk) is masked, as the key is.
func TestAnthropicHeaderValuesMaskedInErrors(t *testing.T) {
	const tok, bearer = "gw-token-5c2e81f4", "cf-aig-9a7b3d10"
	quote := func(ctx *fasthttp.RequestCtx) string {
		return "gateway token " + string(ctx.Request.Header.Peek("X-Gateway-Token")) + " (" +
			strings.TrimPrefix(string(ctx.Request.Header.Peek("Cf-Aig-Authorization")), "Bearer ") + ") refused"
	}
	errorBody := func(ctx *fasthttp.RequestCtx) string {
		return `{"type":"error","error":{"type":"permission_error","message":"` + quote(ctx) + `"}}`
	}
	const start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n"
	cases := []struct {
		name   string
		stream bool
		answer func(ctx *fasthttp.RequestCtx)
	}{
		{"error answer", false, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(403)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(errorBody(ctx))
		}},
		{"error answer to a stream", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(403)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(errorBody(ctx))
		}},
		{"error event first", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("event: error\ndata: " + errorBody(ctx) + "\n\n")
		}},
		{"error event mid-stream", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(start + "event: error\ndata: " + errorBody(ctx) + "\n\n")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, c.answer)
			cfg := anthropicConfig(up.URL)
			cfg.Headers = map[string]string{"x-gateway-token": tok, "cf-aig-authorization": "Bearer " + bearer}
			b := newTestBackend(t, cfg)
			var out fasthttp.Response
			var res Result
			err := b.Send(chatCall(chatBody, c.stream), &out, &res)
			var seen []string
			if err != nil {
				seen = append(seen, err.Error())
			}
			seen = append(seen, string(out.Body()))
			if res.Stream != nil {
				for {
					var ev Event
					err := res.Stream.Next(&ev)
					if err == io.EOF {
						break
					}
					if err != nil {
						seen = append(seen, err.Error())
						break
					}
					seen = append(seen, string(ev.Data))
				}
				_ = res.Stream.Close()
			}
			all := strings.Join(seen, "\n")
			if !strings.Contains(all, "refused") {
				t.Fatalf("the upstream's error did not come through:\n%s", all)
			}
			if strings.Contains(all, tok) || strings.Contains(all, bearer) {
				t.Errorf("a header value came through:\n%s", all)
			}
		})
	}
}

// An Authorization-like header's credentials are masked without their scheme too: an
// upstream that quotes the token it read quotes it alone ("Access token eyJ0... is
// missing or invalid").
func TestAuthHeaderCredentialsMasked(t *testing.T) {
	cases := []struct {
		name, header, value string
		want                []string
	}{
		{"bearer", "Authorization", "Bearer eyJ0eXAiOiJKV1Q", []string{"Bearer eyJ0eXAiOiJKV1Q", "eyJ0eXAiOiJKV1Q"}},
		{"basic", "Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZA==", []string{"Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "user:password", "password"}},
		{"other scheme in an authorization header", "cf-aig-authorization", "Token  tk-0123456789", []string{"Token  tk-0123456789", "tk-0123456789"}},
		{"bearer in any header", "X-Upstream-Auth", "bearer tk-0123456789", []string{"bearer tk-0123456789", "tk-0123456789"}},
		{"not a scheme elsewhere", "X-Note", "hello wonderful-world", []string{"hello wonderful-world"}},
		{"no credentials", "Authorization", "Negotiate", []string{"Negotiate"}},
		{"short token", "Authorization", "Bearer abc", []string{"Bearer abc", "abc"}},
		{"plain value", "X-Gateway-Token", "gw-token-0123456789", []string{"gw-token-0123456789"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, s := range appendHeaderSecrets(nil, c.header, c.value) {
				got = append(got, string(s))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("secrets %q, want %q", got, c.want)
			}
		})
	}
	t.Run("send", func(t *testing.T) {
		const tok = "eyJ0eXAiOiJKV1QiLCJhbGciOi-7d3f"
		up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
			got := strings.TrimPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"code":"401","message":"Access token ` + got + ` is missing or invalid."}}`)
		})
		b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m",
			Headers: map[string]string{"Authorization": "Bearer " + tok}})
		var out fasthttp.Response
		var res Result
		_ = b.Send(chatCall(chatBody, false), &out, &res)
		if !bytes.Contains(out.Body(), []byte("missing or invalid")) || bytes.Contains(out.Body(), []byte(tok)) {
			t.Errorf("answer %d: %s", out.StatusCode(), out.Body())
		}
	})
}

// A secret that is part of a longer one is masked after it, so that no part of the
// longer one shows.
func TestSecretsMaskedLongestFirst(t *testing.T) {
	var s [][]byte
	for _, v := range []string{"sk-0123456789", "sk-0123456789-extra-part", "sk-0123456789"} {
		s = appendSecret(s, v)
	}
	if len(s) != 2 {
		t.Fatalf("%d secrets, want 2: %q", len(s), s)
	}
	if got := string(maskAll([]byte("key sk-0123456789-extra-part"), s)); got != "key ***" {
		t.Errorf("masked to %q", got)
	}
}

// echoListener answers every connection with the request head it read: a wrong port,
// a debugging echo, a service that is no HTTP proxy.
func echoListener(t *testing.T) string {
	t.Helper()
	return serveProxy(t, func(c net.Conn) {
		var head []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(head, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			head = append(head, buf[:n]...)
			if err != nil {
				break
			}
		}
		_, _ = c.Write(head)
	})
}

// serveProxy accepts connections on a loopback port and hands each to serve.
func serveProxy(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// A dial through a proxy that fails says so naming the proxy's host:port, never what
// the proxy sent back: an echo of CONNECT carries Proxy-Authorization, the password in
// base64. Refusals and timeouts keep their class.
func TestProxyDialErrorsLeaveCredentialsOut(t *testing.T) {
	const pw = "ProxyPw-echo-8d41c7"
	auth := base64.StdEncoding.EncodeToString([]byte("user:" + pw))
	dead, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	cases := []struct {
		name, addr string
		class      error
		says       string
	}{
		{"echo", echoListener(t), ErrConnect, "did not answer CONNECT as an HTTP proxy"},
		{"garbage status line", serveProxy(t, func(c net.Conn) {
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6 Proxy-Authorization: Basic "+auth+"\r\n\r\n")
		}), ErrConnect, "did not answer CONNECT as an HTTP proxy"},
		{"407", serveProxy(t, func(c net.Conn) {
			_, _ = c.Read(make([]byte, 4096))
			_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		}), ErrConnect, "answered CONNECT with status 407"},
		{"closed", serveProxy(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)) }), ErrConnect, "closed the connection"},
		{"refused", deadAddr, ErrConnect, "refused"},
		{"silent", serveProxy(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }), ErrTimeout, "CONNECT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dial, err := proxyDial("http://user:"+pw+"@"+c.addr, net.Dialer{})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := dial(context.Background(), "10.255.255.1:8000", time.Now().Add(200*time.Millisecond))
			if err == nil {
				conn.Close()
				t.Fatal("dial through the proxy succeeded")
			}
			msg := err.Error()
			if strings.Contains(msg, pw) || strings.Contains(msg, auth[:12]) {
				t.Errorf("error carries the proxy credentials: %s", msg)
			}
			if !strings.Contains(msg, "proxy "+c.addr+": ") || !strings.Contains(msg, c.says) {
				t.Errorf("error %q, want it to name the proxy %s and say %q", msg, c.addr, c.says)
			}
			if got := classify(err); !errors.Is(got, c.class) {
				t.Errorf("classified as %v, want %v", got, c.class)
			}
		})
	}
}

// An api_key or header value with surrounding whitespace (a secret file's newline read
// through ${VAR}) is refused, naming the key and not the value: sent, it works, but an
// upstream quoting the value it read quotes the trimmed one, which masking would miss.
func TestSecretValueWhitespaceRefused(t *testing.T) {
	const key = "sk-0123456789"
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"api_key newline", Config{APIKey: key + "\n"}, []string{"api_key"}},
		{"api_key leading space", Config{APIKey: " " + key}, []string{"api_key"}},
		{"header values", Config{Headers: map[string]string{"X-B": key + "\r\n", "X-A": "\t" + key, "X-Ok": key}}, []string{"headers.X-A", "headers.X-B"}},
		{"clean", Config{APIKey: key, Headers: map[string]string{"X-Ok": key}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Provider, cfg.BaseURL, cfg.Model = "openai", "http://127.0.0.1:1/v1", "m"
			var got []string
			for _, fe := range fieldErrors(t, cfg.Validate()) {
				if strings.Contains(fe.Error(), key) {
					t.Errorf("problem quotes the value: %v", fe)
				}
				if fe.Problem() != WhitespaceProblem {
					t.Errorf("problem %q", fe.Problem())
				}
				got = append(got, fe.Key())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("problems at %q, want %q", got, c.want)
			}
		})
	}
}

// fieldErrors is each of err's problems (see flattenErr), every one a *FieldError, or
// fails t.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	for _, e := range flattenErr(err) {
		fe, ok := errors.AsType[*FieldError](e)
		if !ok {
			t.Fatalf("not a FieldError: %v", e)
		}
		out = append(out, fe)
	}
	return out
}

func flattenErr(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
