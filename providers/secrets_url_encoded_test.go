package providers

// An upstream that quotes a backend's key or a header's credential percent-encoded
// (a key echoed in a URL it writes into its error, a form field) has it masked as it
// has it masked when written as it is.

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestPercentEncodedSecretsMasked(t *testing.T) {
	const key = "sk-Zr8q/wJalrX+UtnFEMI=K7MD"
	for _, c := range []struct{ name, quoted string }{
		{"query escaped", url.QueryEscape(key)},
		{"path escaped", url.PathEscape(key)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.quoted == key {
				t.Fatalf("%q is not encoded", c.quoted)
			}
			in := `{"error":{"message":"Invalid key in https://api.example/v1?key=` + c.quoted + `&x=1"}}`
			want := `{"error":{"message":"Invalid key in https://api.example/v1?key=***&x=1"}}`
			if got := string(maskAll([]byte(in), appendEncoded(secretsOf(key)))); got != want {
				t.Errorf("masked to %s", got)
			}
		})
	}
	t.Run("basic password", func(t *testing.T) {
		s := appendEncoded(secretsOf("", "Authorization", "Basic dXNlcjpwQHNzL3dvcmQtOTk=")) // user:p@ss/word-99
		in := `proxy said: pass=p%40ss%2Fword-99 user=user%3Ap%40ss%2Fword-99`
		if got := string(maskAll([]byte(in), s)); got != `proxy said: pass=*** user=***` {
			t.Errorf("masked to %s", got)
		}
	})
	t.Run("send", func(t *testing.T) {
		up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
			got := strings.TrimPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"Incorrect API key provided: ` + url.QueryEscape(got) + `"}}`)
		})
		b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m", APIKey: key})
		var out fasthttp.Response
		var res Result
		_ = b.Send(chatCall(chatBody, false), &out, &res)
		if out.StatusCode() != 401 || !bytes.Contains(out.Body(), []byte("Incorrect API key provided: ***")) {
			t.Errorf("answer %d: %s", out.StatusCode(), out.Body())
		}
	})
	t.Run("anthropic", func(t *testing.T) {
		up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
			got := string(ctx.Request.Header.Peek("X-Api-Key"))
			ctx.SetStatusCode(401)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + url.PathEscape(got) + `"}}`)
		})
		b := newTestBackend(t, Config{Provider: "anthropic", BaseURL: up.URL + "/v1", Model: "m", APIKey: key})
		var out fasthttp.Response
		var res Result
		_ = b.Send(chatCall(chatBody, false), &out, &res)
		if out.StatusCode() != 401 || !bytes.Contains(out.Body(), []byte("invalid x-api-key ***")) {
			t.Errorf("answer %d: %s", out.StatusCode(), out.Body())
		}
	})
}
