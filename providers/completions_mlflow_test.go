package providers

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestAppendMLflowCompletionChunk checks MLflow's stream form of a legacy completions
// chunk (OpenAI's text_completion, as Together, vLLM and TGI stream it): object
// text_completion_chunk, each choice's text in delta.content, legacy logprobs left
// out, and a delta of Together's beside the text dropped for the one MLflow's form
// has; the other members kept.
func TestAppendMLflowCompletionChunk(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"OpenAI legacy chunk", `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"Hel\"lo","logprobs":null,"finish_reason":null}]}`,
			`{"id":"cmpl-1","object":"text_completion_chunk","created":1,"model":"m","choices":[{"index":0,"text":"Hel\"lo","delta":{"content":"Hel\"lo"},"finish_reason":null}]}`},
		{"Together chunk", `{"id":"86d8","object":"completion.chunk","created":1,"choices":[{"index":0,"text":" \"","logprobs":null,"finish_reason":null,"delta":{"token_id":345,"content":" \""}}],"model":"mixtral","usage":null}`,
			`{"id":"86d8","object":"text_completion_chunk","created":1,"choices":[{"index":0,"text":" \"","delta":{"content":" \""},"finish_reason":null}],"model":"mixtral","usage":null}`},
		{"legacy logprobs", `{"object":"text_completion","choices":[{"index":1,"text":"a","logprobs":{"tokens":["a"],"token_logprobs":[-0.1]},"finish_reason":"length"}]}`,
			`{"object":"text_completion_chunk","choices":[{"index":1,"text":"a","delta":{"content":"a"},"finish_reason":"length"}]}`},
		{"no text", `{"object":"text_completion","choices":[{"index":0,"finish_reason":"stop"}]}`,
			`{"object":"text_completion_chunk","choices":[{"index":0,"finish_reason":"stop","text":null,"delta":{"content":null}}]}`},
		{"usage chunk", `{"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
			`{"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"object":"text_completion_chunk"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := appendCompletion(nil, []byte(c.in), strTextCompletionChunk, true, true)
			if !ok || string(got) != c.want {
				t.Fatalf("got %s %v\nwant %s", got, ok, c.want)
			}
		})
	}
	for _, bad := range []string{`[1]`, `{"choices":[1]}`, `{"choices":[{"index":0,"text":}]}`} {
		if got, ok := appendCompletion(nil, []byte(bad), strTextCompletionChunk, true, true); ok {
			t.Errorf("%s: translated to %s, want it refused", bad, got)
		}
	}
}

// legacyStream is an OpenAI-compatible legacy completions stream, usage last.
const legacyStream = "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"Hello\",\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
	": keep-alive\n\n" +
	"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" there\",\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n" +
	"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
	"data: [DONE]\n\n"

// readEvents reads the call's stream from b to its end: each event's data (or
// "keep-alive", "[DONE]") and the usage it carried.
func readEvents(t *testing.T, b *Backend, call *Call) ([]string, Usage) {
	t.Helper()
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(call, out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Stream == nil {
		t.Fatal("no stream")
	}
	defer res.Stream.Close()
	var (
		got   []string
		usage Usage
		ev    Event
	)
	for {
		if err := res.Stream.Next(&ev); err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		switch {
		case ev.Done:
			return append(got, "[DONE]"), usage
		case ev.KeepAlive:
			got = append(got, "keep-alive")
			continue
		case ev.HasUsage:
			usage = ev.Usage
		}
		got = append(got, string(ev.Data))
	}
}

// The openai provider streams a completions call for MLflow's invocation route
// (DeltaText) in MLflow's form, chunk by chunk, keep-alives, usage and [DONE] kept;
// the same stream for any other call, and a chat stream whatever DeltaText says, goes
// as the upstream sent it.
func TestOpenAIStreamsCompletionsInMLflowForm(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyString(legacyStream)
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m"})
	body := `{"model":"completions","prompt":"Hi","max_tokens":5,"stream":true}`
	call := func(kind Kind, delta bool) *Call {
		return &Call{Kind: kind, Body: []byte(body), Model: [2]int{9, 22}, StreamOptions: [2]int{-1, -1},
			Stream: true, DeltaText: delta, Header: clientHeader(), Deadline: time.Now().Add(10 * time.Second)}
	}
	var upstreamEvents []string
	for ev := range strings.SplitSeq(strings.TrimSuffix(legacyStream, "\n\n"), "\n\n") {
		if data, ok := strings.CutPrefix(ev, "data: "); ok {
			upstreamEvents = append(upstreamEvents, data)
		} else {
			upstreamEvents = append(upstreamEvents, "keep-alive")
		}
	}
	want := strings.Join(upstreamEvents, "\n")

	t.Run("invocation", func(t *testing.T) {
		got, usage := readEvents(t, b, call(Completions, true))
		mlflow := `{"id":"cmpl-1","object":"text_completion_chunk","created":1,"model":"m","choices":[{"index":0,"text":"Hello","delta":{"content":"Hello"},"finish_reason":null}]}` + "\n" +
			"keep-alive\n" +
			`{"id":"cmpl-1","object":"text_completion_chunk","created":1,"model":"m","choices":[{"index":0,"text":" there","delta":{"content":" there"},"finish_reason":"length"}]}` + "\n" +
			`{"id":"cmpl-1","object":"text_completion_chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n" +
			"[DONE]"
		if strings.Join(got, "\n") != mlflow || usage.Input != 3 || usage.Output != 2 {
			t.Fatalf("events\n%s\nusage %+v\nwant\n%s\nand the usage chunk's", strings.Join(got, "\n"), usage, mlflow)
		}
	})
	for _, c := range []struct {
		name  string
		kind  Kind
		delta bool
	}{
		{"OpenAI route", Completions, false},
		{"chat stream on the invocation route", Chat, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _ := readEvents(t, b, call(c.kind, c.delta))
			if s := strings.Join(got, "\n"); s != want {
				t.Fatalf("events\n%s\nwant the upstream's byte for byte\n%s", s, want)
			}
		})
	}
	if _, _, sent, _ := up.last(); !bytes.Contains(sent, []byte(`"prompt":"Hi"`)) {
		t.Fatalf("upstream got %s: want the completions request as sent", sent)
	}
}
