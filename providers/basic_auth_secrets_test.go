package providers

// A headers: value "Basic <base64>" carries user:password in base64; an upstream that
// decodes it and quotes what it read quotes the plain text, which is masked too.

import (
	"encoding/base64"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestBasicAuthDecodedCredentialsMasked(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name, header, value string
		want                []string
	}{
		{"user and password", "Authorization", "Basic " + b64("gateway:Pa55word-91c4"),
			[]string{"Basic " + b64("gateway:Pa55word-91c4"), b64("gateway:Pa55word-91c4"), "gateway:Pa55word-91c4", "Pa55word-91c4"}},
		{"any header", "X-Upstream-Auth", "basic " + b64("svc:s3cret-token-77"),
			[]string{"basic " + b64("svc:s3cret-token-77"), b64("svc:s3cret-token-77"), "svc:s3cret-token-77", "s3cret-token-77"}},
		// A short password is kept too: maskAll masks it where it stands as a
		// whole token.
		{"short password", "Authorization", "Basic " + b64("operator:pw1"),
			[]string{"Basic " + b64("operator:pw1"), b64("operator:pw1"), "operator:pw1", "pw1"}},
		{"empty password", "Authorization", "Basic " + b64("api-user-0123:"),
			[]string{"Basic " + b64("api-user-0123:"), b64("api-user-0123:"), "api-user-0123:"}},
		// The password with a colon in it is everything after the first colon.
		{"colon in the password", "Authorization", "Basic " + b64("u:pass:word-5e1"),
			[]string{"Basic " + b64("u:pass:word-5e1"), b64("u:pass:word-5e1"), "u:pass:word-5e1", "pass:word-5e1"}},
		// Not base64 of user:password: nothing more than the value and its credentials.
		{"not base64", "Authorization", "Basic not*base64*at-all",
			[]string{"Basic not*base64*at-all", "not*base64*at-all"}},
		{"no colon", "Authorization", "Basic " + b64("just-a-token-1234"),
			[]string{"Basic " + b64("just-a-token-1234"), b64("just-a-token-1234")}},
		{"bearer is not decoded", "Authorization", "Bearer " + b64("gateway:Pa55word-91c4"),
			[]string{"Bearer " + b64("gateway:Pa55word-91c4"), b64("gateway:Pa55word-91c4")}},
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

	// Through a real upstream that decodes the header and quotes what it read: an
	// error answer and an error event, for OpenAI-compatible and Anthropic backends.
	const user, pw = "gateway", "Pa55word-91c4"
	quote := func(ctx *fasthttp.RequestCtx) string {
		v := strings.TrimPrefix(string(ctx.Request.Header.Peek("Authorization")), "Basic ")
		dec, _ := base64.StdEncoding.DecodeString(v)
		u, p, _ := strings.Cut(string(dec), ":")
		return "credentials " + string(dec) + " refused: user " + u + " has no password " + p
	}
	for _, tc := range []struct {
		name, provider string
		stream         bool
		answer         func(ctx *fasthttp.RequestCtx)
	}{
		{"openai error answer", "openai", false, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"` + quote(ctx) + `","type":"authentication_error"}}`)
		}},
		{"openai error event", "openai", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(`data: {"error":{"message":"` + quote(ctx) + `","type":"authentication_error"}}` + "\n\n")
		}},
		{"anthropic error answer", "anthropic", false, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"type":"error","error":{"type":"authentication_error","message":"` + quote(ctx) + `"}}`)
		}},
		{"anthropic error event", "anthropic", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"" + quote(ctx) + "\"}}\n\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, tc.answer)
			cfg := Config{Provider: tc.provider, BaseURL: up.URL + "/v1", Model: "m"}
			if tc.provider == "anthropic" {
				cfg = anthropicConfig(up.URL)
			}
			cfg.Headers = map[string]string{"Authorization": "Basic " + b64(user+":"+pw)}
			b := newTestBackend(t, cfg)
			var out fasthttp.Response
			var res Result
			err := b.Send(chatCall(chatBody, tc.stream), &out, &res)
			seen := []string{string(out.Body())}
			if err != nil {
				seen = append(seen, err.Error())
			}
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
			if !strings.Contains(all, "refused: user") {
				t.Fatalf("the upstream's error did not come through:\n%s", all)
			}
			if strings.Contains(all, pw) {
				t.Errorf("the decoded password came through:\n%s", all)
			}
		})
	}
}
