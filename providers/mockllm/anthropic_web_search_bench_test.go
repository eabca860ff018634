package mockllm

import (
	"strings"
	"testing"
)

// benchWebSearch is benchMessages with the web search tool declared, as the gateway
// sends web_search_options.
var benchWebSearch = benchMessages[:len(benchMessages)-1] +
	`,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5,"user_location":{"type":"approximate","city":"Paris","country":"FR"}}]}`

var webSearchBenchCases = []struct{ name, body string }{
	{"messages-web-search", benchWebSearch},
	{"messages-web-search-stream", strings.Replace(benchWebSearch, "{", `{"stream":true,`, 1)},
}

// BenchmarkHandlerWebSearch is BenchmarkHandler for answers that search: the searches'
// blocks, the cited text and, streamed, their events.
func BenchmarkHandlerWebSearch(b *testing.B) {
	for _, bc := range webSearchBenchCases {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Options{API: APIAnthropic, MaxTokens: 64})
			if err != nil {
				b.Fatal(err)
			}
			ctx := requestCtx("/v1/messages", bc.body, "anthropic-version", "2023-06-01")
			serveOnce(s, ctx)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				serveOnce(s, ctx)
			}
		})
	}
}
