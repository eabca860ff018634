//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// newModelsCtx is a GET of uri with team-a's key, from an Anthropic SDK when anthropic
// is set.
func newModelsCtx(uri string, anthropic bool) *fasthttp.RequestCtx {
	ctx := newProxyCtx(nil)
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.Set("x-api-key", "sk-a")
	if anthropic {
		ctx.Request.Header.Set("anthropic-version", "2023-06-01")
	}
	return ctx
}

// TestAnthropicModelListAllocs: a page of Anthropic's list, and Anthropic's model
// object, cost no allocation: the page is copied into the response's pooled buffer from
// objects rendered with the config, the object is one of them.
func TestAnthropicModelListAllocs(t *testing.T) {
	s := newTestServer(t, anthModelsConfig+"logging: {level: error, access_log: false}\n")
	for _, uri := range []string{"/v1/models", "/v1/models?limit=2&after_id=gpt-4o", "/v1/models?limit=2&before_id=embed",
		"/v1/models/gpt-4o", "/v1/models/gpt%2D4o-2024-08-06"} {
		ctx := newModelsCtx(uri, true)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 || ctx.Response.Body()[0] != '{' {
			t.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n != 0 {
			t.Errorf("%s: %.1f allocations, want 0", uri, n)
		}
	}
}

func BenchmarkAnthropicModelList(b *testing.B) {
	s := newTestServer(b, anthModelsConfig+"logging: {level: error, access_log: false}\n")
	ctx := newModelsCtx("/v1/models?limit=2&after_id=chat", true)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
