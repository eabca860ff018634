package providers

import (
	"bufio"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// engineErrorStream answers as vLLM does when its engine fails mid-generation
// (serving_chat.py): a 200, a chunk, an error object in place of the next chunk (code
// 500), then data: [DONE].
func engineErrorStream(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/event-stream")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		_, _ = w.WriteString("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n")
		_, _ = w.WriteString("data: {\"error\":{\"object\":\"error\",\"message\":\"EngineCore encountered an issue\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n")
		_, _ = w.WriteString("data: [DONE]\n\n")
		_ = w.Flush()
	})
}

// A stream in which the upstream sends an error event of its own counts against the
// target as a cut stream does, though data: [DONE] follows it: a replica whose engine
// fails every stream is ejected after eject_after of them. The third stream is the
// target's trial, which brings it back as it begins; its failure ejects it again.
func TestStreamErrorEventCountsAgainstTarget(t *testing.T) {
	u := startUpstream(t, engineErrorStream)
	b := newPoolBackend(t, Config{BaseURL: u.URL + "/v1", Health: HealthConfig{EjectAfter: 2, EjectFor: time.Minute}}, NewPools())
	for i := range 3 {
		out := fasthttp.AcquireResponse()
		var res Result
		if err := b.Send(promptCall("q", true), out, &res); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		sawError := false
		var ev Event
		for !ev.Done {
			if err := res.Stream.Next(&ev); err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			sawError = sawError || ev.Error
		}
		_ = res.Stream.Close()
		fasthttp.ReleaseResponse(out)
		if !sawError {
			t.Fatalf("stream %d: the error event was not read as one", i)
		}
		if up, want := b.Health()[0].Up, i == 0; up != want {
			t.Fatalf("after %d streams ended by the upstream's error event (eject_after 2), up=%v, want %v", i+1, up, want)
		}
	}
}
