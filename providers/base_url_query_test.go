package providers

// A base_url query goes to the upstream on every operation and is never shown: its
// values may be credentials (a signed token, a key for a gateway in front of the
// upstream), and an upstream that refuses one may quote it.

import (
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestBaseURLQuerySecretsMasked(t *testing.T) {
	const (
		sigRaw = "sv%2Bsig-0f3a9c71"
		sigDec = "sv+sig-0f3a9c71"
		query  = "?api-version=2024-02-01&sig=" + sigRaw
	)
	quote := func(ctx *fasthttp.RequestCtx) string {
		sig := string(ctx.QueryArgs().Peek("sig"))
		return "signature " + sig + " for " + string(ctx.RequestURI()) + " expired (api-version " +
			string(ctx.QueryArgs().Peek("api-version")) + ")"
	}
	for _, tc := range []struct {
		name, provider string
		stream         bool
		answer         func(ctx *fasthttp.RequestCtx)
	}{
		{"openai error answer", "openai", false, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(403)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"` + quote(ctx) + `","type":"permission_error"}}`)
		}},
		{"openai error event", "openai", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString(`data: {"error":{"message":"` + quote(ctx) + `","type":"permission_error"}}` + "\n\n")
		}},
		{"anthropic error answer", "anthropic", false, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(403)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"type":"error","error":{"type":"permission_error","message":"` + quote(ctx) + `"}}`)
		}},
		{"anthropic error event", "anthropic", true, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"" + quote(ctx) + "\"}}\n\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, tc.answer)
			cfg := Config{Provider: tc.provider, BaseURL: up.URL + "/v1" + query, Model: "m"}
			if tc.provider == "anthropic" {
				cfg.APIKey = "sk-ant-test"
			}
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
			if uri, _, _, _ := up.last(); !strings.HasSuffix(uri, query) {
				t.Fatalf("the upstream was asked for %q, without the base_url's query %q", uri, query)
			}
			all := strings.Join(seen, "\n")
			if !strings.Contains(all, "expired (api-version 2024-02-01)") {
				t.Fatalf("the upstream's error did not come through with its api-version:\n%s", all)
			}
			if strings.Contains(all, sigRaw) || strings.Contains(all, sigDec) {
				t.Errorf("the query's token came through:\n%s", all)
			}
		})
	}
}

// Every operation keeps the base_url's query, and only that query: the query of
// the client's own request to the gateway is not the upstream's.
func TestBaseURLQueryOnEveryOperation(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(rawAnswer)
	})
	const query = "?api-version=2024-02-01&sig=tok-5a1b2c3d"
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1" + query, Model: "m"})
	for _, k := range []Kind{Chat, Completions, Embeddings} {
		call := chatCall(chatBody, false)
		call.Kind = k
		var out fasthttp.Response
		var res Result
		if err := b.Send(call, &out, &res); err != nil {
			t.Fatalf("%s: %v", k.Path(), err)
		}
		if uri, _, _, _ := up.last(); uri != "/v1"+k.Path()+query {
			t.Errorf("%s: the upstream was asked for %q, want %q", k.Path(), uri, "/v1"+k.Path()+query)
		}
	}
}
