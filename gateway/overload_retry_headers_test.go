package gateway

import (
	"strings"
	"testing"
)

// overloadConfig bounds the request bodies held to 1 MiB, with an endpoint chat on
// the mock provider.
const overloadConfig = `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
logging: {level: error, access_log: false}
`

// Every 503 overloaded (a request body server.max_buffered_bytes has no room for)
// says its wait as a limit's 429 does: retry-after: 1, retry-after-ms: 1000, which the
// SDKs read first, and x-should-retry: true, since every SDK waits a second out as
// told. Whichever way it is refused: as the body grows, once read with the copy sent
// upstream, from its headers (Expect: 100-continue), an MLflow invocation's spliced
// copy, and on the Messages API.
func TestOverloadedRetryHeaders(t *testing.T) {
	g := serveWithOptions(t, overloadConfig, Options{})
	chat := padBody(chatPad, 200_000)
	msgs := padBody(`{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"`, 200_000)
	invocation := padBody(`{"messages":[{"role":"user","content":"hi"}],"user":"`, 200_000)
	for _, c := range []struct {
		name, path, header, body string
		// held is what other requests hold: the body of 200,000 bytes grows
		// (131,072, then 200,000) and is held with its copy (400,000); an
		// invocation's spliced copy holds about 400,000 more.
		held int64
		// expect sends the header alone, with Expect: 100-continue.
		expect bool
	}{
		{name: "as the body grows", path: "/v1/chat/completions", body: chat, held: 900_000},
		{name: "with the copy sent upstream", path: "/v1/chat/completions", body: chat, held: 700_000},
		{name: "from its headers", path: "/v1/chat/completions", body: chat, held: 700_000, expect: true},
		{name: "an invocation's spliced copy", path: "/endpoints/chat/invocations", body: invocation, held: 500_000},
		{name: "messages API", path: "/v1/messages", header: "Anthropic-Version: 2023-06-01\r\n", body: msgs, held: 900_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Held as if by requests whose bodies are arriving.
			g.bodyBytes.Add(c.held)
			defer g.bodyBytes.Add(-c.held)
			cl := dialRaw(t, g, nil)
			if c.expect {
				postBytes(t, cl, c.path, c.header+"Expect: 100-continue\r\n", len(c.body), "")
			} else {
				postBytes(t, cl, c.path, c.header, len(c.body), c.body)
			}
			resp, got := nextAnswer(t, cl)
			if resp.StatusCode != 503 || !strings.Contains(got, "overloaded") {
				t.Fatalf("%d %s, want 503 overloaded", resp.StatusCode, got)
			}
			checkWait(t, resp.Header, 1000, 1000, "true")
		})
	}
	// Nothing of the refused bodies is left held.
	waitBuffered(t, g, 0, "after the refusals")
	cl := dialRaw(t, g, nil)
	postBytes(t, cl, "/v1/chat/completions", "", len(chat), chat)
	if resp, got := nextAnswer(t, cl); resp.StatusCode != 200 || resp.Header.Get("X-Should-Retry") != "" {
		t.Fatalf("with room: %d %s (x-should-retry %q)", resp.StatusCode, got, resp.Header.Get("X-Should-Retry"))
	}
}
