package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// sizedConfig is a config of keys client keys (every tenth with a limit of its own,
// every third scoped to three endpoints), endpoints chat endpoints (every fifth with
// two aliases, every tenth with a canary route, every fourth with a per-key limit) and
// backends openai backends of two to four targets each, all served by upstream on
// paths of their own. Key i is "sk-size-" and i; the request path's work must not
// depend on how many there are of each.
func sizedConfig(upstream string, keys, endpoints, backends int) string {
	var b strings.Builder
	b.WriteString("server: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}\n")
	b.WriteString("auth:\n  mode: keys\n  keys:\n")
	for i := range keys {
		n := strconv.Itoa(i)
		b.WriteString("    - {name: key-" + n + ", key: \"sk-size-" + n + "\"")
		if i%3 == 1 {
			b.WriteString(", endpoints: [")
			for j := range 3 {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("ep-" + strconv.Itoa((i+j*7)%endpoints))
			}
			b.WriteString("]")
		}
		if i%10 == 0 {
			b.WriteString(", limits: [{per: api_key, requests: 1000000000, window: minute}]")
		}
		b.WriteString("}\n")
	}
	b.WriteString("backends:\n")
	for i := range backends {
		n := strconv.Itoa(i)
		b.WriteString("  be-" + n + ": {provider: openai, model: up-model, targets: [")
		for j := range 2 + i%3 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("\"http://" + upstream + "/t" + strconv.Itoa(j) + "/v1\"")
		}
		b.WriteString("], pricing: {input_per_million: 0.1, output_per_million: 0.2}}\n")
	}
	b.WriteString("endpoints:\n")
	for i := range endpoints {
		n := strconv.Itoa(i)
		b.WriteString("  - name: ep-" + n + "\n    type: chat\n")
		if i%5 == 0 {
			b.WriteString("    aliases: [alias-" + n + "-a, alias-" + n + "-b]\n")
		}
		stable, canary := "be-"+strconv.Itoa(i%backends), "be-"+strconv.Itoa((i+1)%backends)
		if i%10 == 0 && stable != canary {
			b.WriteString("    routes: [{backend: " + stable + ", weight: 100, variant: stable}, {backend: " + canary + ", weight: 0, variant: canary}]\n")
			b.WriteString("    canary: {backend: " + canary + ", steps: [5, 50, 100], interval: 1h, max_error_rate: 0.5, max_p99: 10s}\n")
		} else {
			b.WriteString("    routes: [{backend: " + stable + "}]\n")
		}
		if i%4 == 0 {
			b.WriteString("    limits: [{per: api_key, requests: 1000000000, window: minute}]\n")
		}
	}
	b.WriteString("logging: {level: error, access_log: false}\n")
	return b.String()
}

// BenchmarkProxyChatConfigSize is BenchmarkProxyChat through a key with its own limit
// to an endpoint with a limit, a canary and aliases, called by an alias, on a config
// of a few keys, endpoints and backends and on one of thousands: ns/op and allocs/op
// must be the same for both (key lookup, model and route resolution, limit and metric
// series lookup are all by map or index).
func BenchmarkProxyChatConfigSize(b *testing.B) {
	for _, size := range []struct {
		name                      string
		keys, endpoints, backends int
	}{
		{"small", 10, 10, 3},
		{"large", 10000, 500, 200},
	} {
		b.Run(size.name, func(b *testing.B) {
			s := newTestServer(b, sizedConfig(startStaticUpstream(b), size.keys, size.endpoints, size.backends))
			body := []byte(strings.Replace(string(benchChatBody), `"model":"chat"`, `"model":"alias-0-b"`, 1))
			ctx := newProxyCtx(body)
			ctx.Request.Header.Set("Authorization", "Bearer sk-size-0")
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("X-Ratelimit-Limit-Requests")) == 0 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			b.ReportAllocs()
			for b.Loop() {
				proxyOnce(s, ctx)
			}
		})
	}
}
