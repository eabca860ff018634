package providers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func cmplChunk(choice string) string {
	return `data: {"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[` + choice + `]}` + "\n\n"
}

var (
	cmplContent  = cmplChunk(`{"text":"hi","index":0,"logprobs":null,"finish_reason":null}`)
	cmplContent1 = cmplChunk(`{"text":"yo","index":1,"logprobs":null,"finish_reason":null}`)
	cmplFinish   = cmplChunk(`{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}`)
	cmplFinish1  = cmplChunk(`{"text":"","index":1,"logprobs":null,"finish_reason":"length"}`)
	cmplUsage    = `data: {"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	// As vLLM writes them, stop_reason after finish_reason.
	cmplContentVLLM = cmplChunk(`{"index":0,"text":"hi","logprobs":null,"finish_reason":null,"stop_reason":null}`)
	cmplFinishVLLM  = cmplChunk(`{"index":0,"text":"","logprobs":null,"finish_reason":"stop","stop_reason":null}`)
)

// completionsCall is a legacy completions call for prompt, streamed.
func completionsCall(prompt string) *Call {
	body := `{"model":"chat","prompt":"` + prompt + `","stream":true}`
	ms := bytes.Index([]byte(body), []byte(`"chat"`))
	return &Call{Kind: Completions, Body: []byte(body), Model: [2]int{ms, ms + 6}, StreamOptions: [2]int{-1, -1}, Stream: true}
}

// A legacy completions stream whose body ends cleanly without data: [DONE] is whole
// once every choice has had its finish_reason and, when usage was asked for, its usage
// came after, as a chat stream is: served by the upstream's completions API (its
// text_completion chunks passed on, or made MLflow's text_completion_chunks) or
// through its chat API (completions_via_chat). A body that ends before that was cut,
// and counts against the target.
func TestCompletionsStreamEndsWithoutDone(t *testing.T) {
	type events struct{ native, chat string }
	cases := []struct {
		name   string
		events events
		// clientUsage is the client's include_usage; noUsage turns the gateway's
		// own asking off (stream_usage: false).
		clientUsage, noUsage bool
		n                    int64
		whole                bool
	}{
		{"usage asked by the client", events{cmplContent + cmplFinish + cmplUsage, endContent + endFinish + endUsage}, true, false, 0, true},
		{"usage asked by the gateway", events{cmplContent + cmplFinish + cmplUsage, endContent + endFinish + endUsage}, false, false, 0, true},
		{"no usage asked", events{cmplContent + cmplFinish, endContent + endFinish}, false, true, 0, true},
		{"every choice finished", events{cmplContent + cmplContent1 + cmplFinish1 + cmplFinish + cmplUsage, endContent + endContent1 + endFinish1 + endFinish + endUsage}, true, false, 2, true},
		{"vLLM's chunks", events{cmplContentVLLM + cmplFinishVLLM + cmplUsage, endContent + endFinish + endUsage}, true, false, 0, true},
		{"with [DONE] as ever", events{cmplContent + cmplFinish + cmplUsage + "data: [DONE]\n\n", endContent + endFinish + endUsage + "data: [DONE]\n\n"}, true, false, 0, true},

		{"usage asked, not come", events{cmplContent + cmplFinish, endContent + endFinish}, false, false, 0, false},
		{"no finish_reason", events{cmplContent + cmplUsage, endContent + endUsage}, true, false, 0, false},
		{"no finish_reason, no usage asked", events{cmplContentVLLM, endContent}, false, true, 0, false},
		{"a choice not finished", events{cmplContent + cmplContent1 + cmplFinish + cmplUsage, endContent + endContent1 + endFinish + endUsage}, true, false, 2, false},
	}
	for _, serve := range []struct {
		name             string
		viaChat, mlflow  bool
		object, notChunk string
	}{
		{"completions", false, false, `"text_completion"`, ""},
		{"completions as MLflow's chunks", false, true, `"text_completion_chunk"`, ""},
		{"completions through chat", true, false, `"text_completion"`, "chat.completion.chunk"},
		{"completions through chat as MLflow's chunks", true, true, `"text_completion_chunk"`, "chat.completion.chunk"},
	} {
		for _, tc := range cases {
			t.Run(serve.name+"/"+tc.name, func(t *testing.T) {
				evs := tc.events.native
				if serve.viaChat {
					evs = tc.events.chat
				}
				u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(evs)+"0\r\n\r\n")
					return true
				})
				cfg := Config{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 1}, CompletionsViaChat: serve.viaChat}
				if tc.noUsage {
					off := false
					cfg.StreamUsage = &off
				}
				b := newPoolBackend(t, cfg, nil)
				call := completionsCall("hi")
				call.IncludeUsage, call.Choices, call.DeltaText = tc.clientUsage, tc.n, serve.mlflow
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				if err := b.Send(call, out, &res); err != nil || res.Stream == nil {
					t.Fatalf("no stream: %v %s", err, out.Body())
				}
				var ev Event
				var err error
				var got []string
				for {
					if err = res.Stream.Next(&ev); err != nil || ev.Done {
						break
					}
					got = append(got, string(ev.Data))
				}
				done, terminal := ev.Done, ev.Terminal
				_ = res.Stream.Close()
				if len(got) == 0 || !strings.Contains(got[0], serve.object) || serve.notChunk != "" && strings.Contains(strings.Join(got, "\n"), serve.notChunk) {
					t.Fatalf("events %q, want %s objects", got, serve.object)
				}
				if tc.whole {
					if err != nil || !done || terminal {
						t.Fatalf("stream ended with %v (done %v, terminal %v) after %d events, want its clean end, [DONE] to follow", err, done, terminal, len(got))
					}
					if !b.Healthy() {
						t.Fatal("the whole stream counted against its target")
					}
					return
				}
				if !errors.Is(err, ErrStreamCut) {
					t.Fatalf("stream ended with %v (done %v) after %d events, want it cut", err, done, len(got))
				}
				if b.Healthy() {
					t.Fatal("the cut stream did not count against its target (eject_after 1)")
				}
			})
		}
	}
}

// endsUnfinished spares a chunk's full read when its one choice ends unfinished, as
// OpenAI and vLLM write chat chunks and vLLM writes completions chunks (stop_reason
// last); any other ending goes on to finishNamed's look, never to a wrong answer.
func TestEndsUnfinished(t *testing.T) {
	for _, c := range []struct {
		choices string
		want    bool
	}{
		{`[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]`, true},
		{`[{"text":"hi","index":0,"logprobs":null,"finish_reason":null}]`, true},
		{`[{"index":0,"text":"hi","logprobs":null,"finish_reason":null,"stop_reason":null}]`, true},
		{`[{"finish_reason":null,"stop_reason":null}]`, true},
		{`[{"index":0,"text":"","logprobs":null,"finish_reason":"stop","stop_reason":null}]`, false},
		{`[{"index":0,"text":"","finish_reason":"length","stop_reason":null}]`, false},
		{`[{"index":0,"delta":{},"finish_reason":"stop"}]`, false},
		{`[{"index":0,"text":"hi","finish_reason": null, "stop_reason": null}]`, false},
		{`[{"index":0,"text":"hi","logprobs":null,"stop_reason":null}]`, false},
		{`[{"index":0,"text":"hi","my_finish_reason":null,"stop_reason":null}]`, false},
		{`[{"stop_reason":null}]`, false},
		{`_reason":null}]`, false},
	} {
		if got := endsUnfinished([]byte(c.choices)); got != c.want {
			t.Errorf("endsUnfinished(%s) = %v, want %v", c.choices, got, c.want)
		}
	}
}
