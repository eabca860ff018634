package gateway

import (
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// A client that names its cache group in prompt_cache_key (OpenAI's parameter for the
// requests that share a cached prefix) has every such request placed on one replica
// under prefix affinity, whatever its prompt, and the key still reaches the upstream;
// requests without one are placed by their prompts, over the pool.
func TestAffinityPlacesByPromptCacheKey(t *testing.T) {
	t.Parallel()
	const targets = 8
	var (
		mu    sync.Mutex
		hits  = map[string]int{}
		keyed = 0
	)
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		replica, _, _ := strings.Cut(strings.TrimPrefix(string(ctx.Path()), "/"), "/")
		mu.Lock()
		hits[replica]++
		if strings.Contains(string(ctx.PostBody()), `"prompt_cache_key":"tenant-a"`) {
			keyed++
		}
		mu.Unlock()
		answerChat(ctx)
	})
	urls := make([]string, targets)
	for i := range urls {
		urls[i] = `"http://` + addr + `/r` + strconv.Itoa(i) + `/v1"`
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, model: m, affinity: {by: prefix, load_factor: 100}, targets: [`+strings.Join(urls, ", ")+`]}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	spread := func(key string) map[string]int {
		t.Helper()
		mu.Lock()
		clear(hits)
		mu.Unlock()
		for i := range 40 {
			body := `{"model":"chat","messages":[{"role":"user","content":"question ` + strconv.Itoa(i) + `"}]` + key + `}`
			if resp, b := postChat(t, g, body); resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(hits)
	}
	if got := spread(`,"prompt_cache_key":"tenant-a"`); len(got) != 1 {
		t.Errorf("40 prompts naming one prompt_cache_key went to %d replicas (%v), want one", len(got), got)
	}
	if keyed != 40 {
		t.Errorf("%d of 40 upstream requests carried the client's prompt_cache_key, want all", keyed)
	}
	if got := spread(""); len(got) < 2 {
		t.Errorf("40 prompts without a key went to %d replica (%v), want them spread by prompt", len(got), got)
	}
}
