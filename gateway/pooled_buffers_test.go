package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// liveHeap is the live heap after a full collection.
func liveHeap() uint64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// onePForPools runs the rest of the test on one P: a sync.Pool keeps what is put back
// per P, and the trials below look for what one request left to the next.
func onePForPools(t *testing.T) {
	prev := goruntime.GOMAXPROCS(1)
	t.Cleanup(func() { goruntime.GOMAXPROCS(prev) })
}

// TestLargeRequestBodyBufferNotPinned: one large request must not leave the buffer the
// provider built the upstream body in (providers' bodyPool) at its size for every
// later request. After it, only small requests come, with garbage collections between
// them (time passing in a gateway under steady traffic); the 2 MiB the large one needed
// should be gone, as it is for every other pooled buffer of the gateway (request
// buffers, SSE readers, stream translators, masks: each drops a buffer over 64 KiB when
// it goes back to its pool).
//
// The upstream is net/http reading the body into a small buffer, and the requests go
// straight to serveAPI on contexts that are dropped, not pooled, so no other pool holds
// the large body. Under -race sync.Pool drops a quarter of what is put back, so the
// trial is repeated: one trial in which the buffer is still there is the defect.
func TestLargeRequestBodyBufferNotPinned(t *testing.T) {
	onePForPools(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(benchChatResp)
	}))
	t.Cleanup(up.Close)
	s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 16MiB}
backends:
  up: {provider: openai, base_url: "`+up.URL+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`)
	const bigSize = 2 << 20
	big := []byte(`{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", bigSize) + `"}]}`)
	small := []byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	send := func(body []byte) {
		ctx := newProxyCtx(body)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	for range 20 {
		send(small)
	}
	const rounds = 2 // small requests, each after a collection
	worst := int64(0)
	for trial := range 30 {
		liveHeap()
		before := liveHeap() // the pools emptied by two collections
		send(big)
		for range rounds {
			goruntime.GC()
			send(small)
		}
		kept := int64(liveHeap()) - int64(before)
		worst = max(worst, kept)
		if kept >= bigSize*3/4 {
			t.Fatalf("trial %d: after one request of %d MiB and %d small ones, each after a garbage collection, %.1f MiB more heap is live than before it: the buffer the large body was built in went back to providers' bodyPool at full size (providers/openai.go:180; backend.go:114 and anthropic.go:211 alike: no cap, as the gateway's other pools have), and every small request since took it out and put it back, so under steady traffic it is never freed",
				trial, bigSize>>20, rounds, float64(kept)/(1<<20))
		}
	}
	t.Logf("worst retained: %d bytes", worst)
}

// TestLongEventNameBufferNotPinned: one stream whose upstream sent a long `event:`
// line (within the 16 MiB event bound) must not leave its SSE reader, pooled for every
// later stream, holding a buffer of that size. providers/sse.go says of maxPooledBuffer
// that "one long event should not pin its memory to every later stream", and Close drops
// the line and data buffers over 64 KiB, but not the event name's (sseReader.name).
// The trials are as in TestLargeRequestBodyBufferNotPinned.
func TestLongEventNameBufferNotPinned(t *testing.T) {
	onePForPools(t)
	const nameSize = 2 << 20
	chunk := `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
		`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}` + "\n\n" +
		"data: [DONE]\n\n"
	long := []byte("event: " + strings.Repeat("x", nameSize) + "\n" + chunk)
	short := []byte(chunk)
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		if bytes.Contains(ctx.Request.Body(), []byte("long")) {
			ctx.Response.SetBodyRaw(long)
			return
		}
		ctx.Response.SetBodyRaw(short)
	})
	s := newTestServer(t, benchConfig(up))
	stream := func(content string) {
		ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"` + content + `"}]}`))
		if n := streamOnce(t, s, ctx, nil); n == 0 {
			t.Fatal("empty stream")
		}
	}
	for range 20 {
		stream("short")
	}
	const rounds = 2
	worst := int64(0)
	for trial := range 30 {
		liveHeap()
		before := liveHeap()
		stream("long")
		for range rounds {
			goruntime.GC()
			stream("short")
		}
		kept := int64(liveHeap()) - int64(before)
		worst = max(worst, kept)
		if kept >= nameSize*3/4 {
			t.Fatalf("trial %d: after one stream with a %d MiB event name and %d ordinary streams, each after a garbage collection, %.1f MiB more heap is live than before it: the pooled SSE reader kept its event-name buffer (providers/sse.go:264, not capped in Close at sse.go:697-702 as line and data are)",
				trial, nameSize>>20, rounds, float64(kept)/(1<<20))
		}
	}
	t.Logf("worst retained: %d bytes", worst)
}
