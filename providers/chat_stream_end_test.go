package providers

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

func endChunk(choice string) string {
	return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[` + choice + `]}` + "\n\n"
}

var (
	endContent  = endChunk(`{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}`)
	endContent1 = endChunk(`{"index":1,"delta":{"content":"yo"},"logprobs":null,"finish_reason":null}`)
	endFinish   = endChunk(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`)
	endFinish1  = endChunk(`{"index":1,"delta":{},"logprobs":null,"finish_reason":"length"}`)
	endUsage    = `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	// endFinishUsage is the finish_reason chunk with usage on it, as Mistral sends it.
	endFinishUsage = `data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	// Usage on every chunk (continuous_usage_stats): the finish_reason chunk's is
	// not the final one, which the usage chunk after it brings.
	endContentSoFar = `data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n"
	endFinishSoFar  = `data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	// As Python's json.dumps writes them, spaces after the colons.
	endContentSpaced = `data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}` + "\n\n"
	endFinishSpaced  = `data: {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}` + "\n\n"
	// A content string that names finish_reason is no finish_reason.
	endContentNamed = endChunk(`{"index":0,"delta":{"content":"\"finish_reason\": \"stop\""},"finish_reason":null}`)
	// An empty finish_reason, as some servers write on the chunks before the last, is
	// none.
	endContentEmpty = endChunk(`{"index":0,"delta":{"content":"hi"},"finish_reason":""}`)
)

// A chat stream whose body ends cleanly without data: [DONE] (some OpenAI-compatible
// servers end so) is whole once every choice has had its finish_reason and, when
// usage was asked for, its usage came after: the stream ends as at [DONE], and its
// target counts it served. A body that ends before that was cut, and counts against
// the target.
func TestChatStreamEndsWithoutDone(t *testing.T) {
	const (
		chunkedEnd   = iota // the chunked body's last chunk
		closed              // no framing: the connection's close ends the body
		brokenChunks        // chunked, the connection closed before the last chunk
	)
	cases := []struct {
		name    string
		events  string
		framing int
		// clientUsage is the client's include_usage; noUsage turns the gateway's
		// own asking off (stream_usage: false).
		clientUsage, noUsage bool
		n                    int64
		whole                bool
	}{
		{"usage asked by the client", endContent + endFinish + endUsage, chunkedEnd, true, false, 0, true},
		{"usage asked by the gateway", endContent + endFinish + endUsage, chunkedEnd, false, false, 0, true},
		{"body ended by the connection's close", endContent + endFinish + endUsage, closed, false, false, 0, true},
		{"usage on the finish_reason chunk", endContent + endFinishUsage, chunkedEnd, true, false, 0, true},
		{"no usage asked", endContent + endFinish, chunkedEnd, false, true, 0, true},
		{"every choice finished", endContent + endContent1 + endFinish1 + endFinish + endUsage, chunkedEnd, true, false, 2, true},
		{"usage on every chunk, then the usage chunk", endContentSoFar + endFinishSoFar + endUsage, chunkedEnd, true, false, 0, true},
		{"spaced JSON", endContentSpaced + endFinishSpaced + endUsage, chunkedEnd, true, false, 0, true},
		{"with [DONE] as ever", endContent + endFinish + endUsage + "data: [DONE]\n\n", chunkedEnd, true, false, 0, true},

		{"spaced JSON, no finish_reason", endContentSpaced + endUsage, chunkedEnd, true, false, 0, false},
		{"usage asked, not come", endContent + endFinish, chunkedEnd, false, false, 0, false},
		{"no finish_reason", endContent + endUsage, chunkedEnd, true, false, 0, false},
		{"no finish_reason, no usage asked", endContent, chunkedEnd, false, true, 0, false},
		{"finish_reason named in content only", endContentNamed + endUsage, chunkedEnd, true, false, 0, false},
		{"an empty finish_reason", endContentEmpty + endContentEmpty + endUsage, chunkedEnd, true, false, 0, false},
		{"an empty finish_reason, no usage asked", endContentEmpty, chunkedEnd, false, true, 0, false},
		{"a choice not finished", endContent + endContent1 + endFinish + endUsage, chunkedEnd, true, false, 2, false},
		{"usage on every chunk, the usage chunk not come", endContentSoFar + endFinishSoFar, chunkedEnd, true, false, 0, false},
		{"chunked body cut", endContent + endFinish + endUsage, brokenChunks, true, false, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
				switch tc.framing {
				case closed:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+tc.events)
					return false
				case brokenChunks:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(tc.events))
					return false
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(tc.events)+"0\r\n\r\n")
				return true
			})
			cfg := Config{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 1}}
			if tc.noUsage {
				off := false
				cfg.StreamUsage = &off
			}
			b := newPoolBackend(t, cfg, nil)
			call := promptCall("hi", true)
			call.IncludeUsage, call.Choices = tc.clientUsage, tc.n
			out := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(out)
			var res Result
			if err := b.Send(call, out, &res); err != nil || res.Stream == nil {
				t.Fatalf("no stream: %v", err)
			}
			var ev Event
			var err error
			var events []string
			for {
				if err = res.Stream.Next(&ev); err != nil || ev.Done {
					break
				}
				events = append(events, string(ev.Data))
			}
			done, terminal := ev.Done, ev.Terminal
			_ = res.Stream.Close()
			if tc.whole {
				if err != nil || !done || terminal {
					t.Fatalf("stream ended with %v (done %v, terminal %v) after %d events, want its clean end, [DONE] to follow", err, done, terminal, len(events))
				}
				if !b.Healthy() {
					t.Fatal("the whole stream counted against its target")
				}
				return
			}
			if !errors.Is(err, ErrStreamCut) {
				t.Fatalf("stream ended with %v (done %v) after %d events, want it cut", err, done, len(events))
			}
			if b.Healthy() {
				t.Fatal("the cut stream did not count against its target (eject_after 1)")
			}
		})
	}
}
