package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/valyala/fasthttp"
)

// readAll reads a stream's events, keep-alives left out.
func readAll(t testing.TB, in string) ([]Event, error) {
	s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64)}
	var out []Event
	for {
		var ev Event
		err := s.Next(&ev)
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		if ev.KeepAlive {
			continue
		}
		ev.Data = append([]byte(nil), ev.Data...)
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := []struct {
		name    string
		in      string
		content []bool
		usage   []bool
		err     error
	}{
		{"openai stream", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n" +
			"data: [DONE]\n\n", []bool{false, true, false, false}, []bool{false, false, true, false}, nil},
		{"crlf and comments", ": keep-alive\r\n\r\ndata: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: [DONE]\r\n\r\n", []bool{true, false}, []bool{false, false}, nil},
		{"long line", "data: {\"choices\":[{\"delta\":{\"content\":\"" + long + "\"}}]}\n\ndata: [DONE]\n\n", []bool{true, false}, []bool{false, false}, nil},
		{"cut mid stream", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"cho", []bool{true}, []bool{false}, ErrStreamCut},
		{"ends without done", "data: {\"choices\":[]}\n\n", []bool{false}, []bool{false}, ErrStreamCut},
		{"tool call", "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\ndata: [DONE]\n\n", []bool{true, false}, []bool{false, false}, nil},
		// Python's json.dumps puts a space after each colon (LiteLLM's proxy, FastAPI
		// servers); such chunks carry content all the same.
		{"spaced json", "data: {\"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"\"}}]}\n\n" +
			"data: {\"id\": \"c1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\" :\t\"Hello\"}, \"finish_reason\": null}]}\n\n" +
			"data: {\"choices\": [{\"index\": 0, \"text\": \"a\"}]}\n\n" +
			"data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": null}, \"finish_reason\": \"stop\"}]}\n\n" +
			"data: [DONE]\n\n", []bool{false, true, true, false, false}, []bool{false, false, false, false, false}, nil},
		// An upstream that closes right after [DONE], without the blank line that ends
		// the event: [DONE] says the stream is whole.
		{"done without its blank line", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n", []bool{true, false}, []bool{false, false}, nil},
		{"done without a newline", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]", []bool{true, false}, []bool{false, false}, nil},
		{"last chunk without its blank line", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[]}\n", []bool{true}, []bool{false}, ErrStreamCut},
		// An event that is not one JSON object ends the stream as a bad answer: passed
		// on, it would fail the client's SDK on bytes it cannot parse.
		{"event not json", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"id\": this is not json\n\ndata: [DONE]\n\n", []bool{true}, []bool{false}, ErrBadResponse},
		{"html page", "data: <html><body>502 Bad Gateway</body></html>\n\ndata: [DONE]\n\n", nil, nil, ErrBadResponse},
		{"bytes after the object", "data: {\"choices\":[]} {}\n\ndata: [DONE]\n\n", nil, nil, ErrBadResponse},
		{"array", "data: [{\"choices\":[]}]\n\ndata: [DONE]\n\n", nil, nil, ErrBadResponse},
		{"space after the object", "data: {\"choices\":[{\"text\":\"a\"}]}  \n\ndata: [DONE]\n\n", []bool{true, false}, []bool{false, false}, nil},
		{"content only in a later choice", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}},{\"index\":1,\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n",
			[]bool{true, false}, []bool{false, false}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, err := readAll(t, c.in)
			if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if len(evs) != len(c.content) {
				t.Fatalf("got %d events, want %d", len(evs), len(c.content))
			}
			for i, ev := range evs {
				if ev.Content != c.content[i] || ev.HasUsage != c.usage[i] {
					t.Errorf("event %d %q: content=%v usage=%v", i, ev.Data, ev.Content, ev.HasUsage)
				}
			}
			if c.err == nil && !evs[len(evs)-1].Done {
				t.Errorf("last event is not [DONE]")
			}
		})
	}
	evs, _ := readAll(t, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n")
	if u := evs[0].Usage; !evs[0].UsageOnly || u.Input != 3 || u.Output != 7 {
		t.Fatalf("usage chunk read as %+v", evs[0])
	}
}

// endless is an upstream body that never sends a newline.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// An upstream that sends a line without its end, or data lines without the blank line
// that ends the event, fails the stream once the event passes its bound, as the
// upstream's fault, instead of having the reader buffer it until the backend's timeout.
func TestSSEEventTooLarge(t *testing.T) {
	const limit = 1 << 20
	dataLine := "data: " + strings.Repeat("y", 1000) + "\n"
	cases := []struct {
		name string
		body io.Reader
	}{
		{"line without end", io.MultiReader(strings.NewReader("data: "), io.LimitReader(endless{}, 4*limit))},
		{"event without end", strings.NewReader(strings.Repeat(dataLine, 4*limit/len(dataLine)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &sseReader{br: bufio.NewReaderSize(c.body, sseBufferSize), max: limit}
			var ev Event
			err := s.Next(&ev)
			if !errors.Is(err, ErrStreamCut) || !errors.Is(err, ErrBadResponse) || errors.Is(err, ErrConnect) {
				t.Fatalf("err = %v, want ErrStreamCut and ErrBadResponse", err)
			}
			if n := max(cap(s.line), cap(s.data)); n > 4*limit {
				t.Errorf("buffered %d bytes for a bound of %d", n, limit)
			}
		})
	}
	t.Run("event at the bound", func(t *testing.T) {
		data := `{"x":"` + strings.Repeat("z", limit-8) + `"}`
		s := &sseReader{br: bufio.NewReaderSize(strings.NewReader("data: "+data+"\n\ndata: [DONE]\n\n"), sseBufferSize), max: limit}
		var ev Event
		if err := s.Next(&ev); err != nil || len(ev.Data) != limit {
			t.Fatalf("err = %v, %d bytes of data", err, len(ev.Data))
		}
	})
	s := &sseReader{br: bufio.NewReader(nil)}
	s.reset(nil, &Target{client: &fasthttp.HostClient{MaxResponseBodySize: 4096}}, strings.NewReader(""), false)
	if s.max != 4096 {
		t.Errorf("bound %d under a backend's 4096-byte answer size", s.max)
	}
	s.reset(nil, &Target{client: &fasthttp.HostClient{}}, strings.NewReader(""), false)
	if s.max != maxEventBytes {
		t.Errorf("bound %d, want %d", s.max, maxEventBytes)
	}
}

func FuzzSSE(f *testing.F) {
	f.Add("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("event: x\ndata: a\ndata: b\n\n: c\r\n\r\n")
	f.Add("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n")
	f.Add("data: {\"choices\": [{\"delta\": {\"content\" : \"Hi\", \"text\":\n\"\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("data: {\"choices\":[{\"delta\":{\"content\":")
	f.Fuzz(func(t *testing.T, in string) {
		evs, _ := readAll(t, in)
		for _, ev := range evs {
			if ev.Done && len(ev.Data) != 0 {
				t.Fatalf("done event with data")
			}
			// What reaches the client is a JSON object, as encoding/json reads one.
			if obj := bytes.TrimLeft(ev.Data, " \t\r\n"); !ev.Done && (!json.Valid(ev.Data) || len(obj) == 0 || obj[0] != '{') {
				t.Fatalf("event passed on that is not a JSON object: %q", ev.Data)
			}
		}
	})
}

// FuzzResponsesSSE: whatever an upstream streams for a Responses API call, the reader
// passes on named events whose data is a JSON object, with names the relay can write
// on one line, ends once at most after a terminal event, and reads nothing after.
func FuzzResponsesSSE(f *testing.F) {
	f.Add("event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}}\n\n")
	f.Add("event: error\r\ndata: {\"type\":\"error\",\"message\":\"x\"}\r\n\r\n")
	f.Add("event: response.failed\ndata: {\"type\":\"response.failed\"}")
	f.Fuzz(func(t *testing.T, in string) {
		s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64), responses: true}
		done := false
		for n := 0; ; n++ {
			var ev Event
			err := s.Next(&ev)
			if err != nil {
				break
			}
			if done {
				t.Fatalf("event after the end: %+v", ev)
			}
			if ev.KeepAlive {
				continue
			}
			if ev.Done {
				if len(ev.Data) != 0 {
					t.Fatal("end with data")
				}
				done = true
				continue
			}
			for _, e := range ev.IDEnds {
				if e != 0 && (e >= len(ev.Data) || ev.Data[e] != '"') {
					t.Fatalf("an ID's end at %d is no closing quote in %q", e, ev.Data)
				}
			}
			if bytes.ContainsAny(ev.Name, "\r\n") {
				t.Fatalf("event name %q breaks its line", ev.Name)
			}
			if obj := bytes.TrimLeft(ev.Data, " \t\r\n"); !json.Valid(ev.Data) || len(obj) == 0 || obj[0] != '{' {
				t.Fatalf("event passed on that is not a JSON object: %q", ev.Data)
			}
		}
	})
}

func BenchmarkSSENext(b *testing.B) {
	chunk := "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	in := strings.Repeat(chunk, 1000)
	s := &sseReader{br: bufio.NewReaderSize(nil, 4096)}
	r := strings.NewReader(in)
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	n := 0
	for b.Loop() {
		if n%1000 == 0 {
			r.Reset(in)
			s.br.Reset(r)
		}
		n++
		if err := s.Next(&ev); err != nil {
			b.Fatal(err)
		}
	}
}

// The SSE spec ends a line with CRLF, LF or a lone CR, and lets a stream begin with a
// byte order mark: the same events come out of each, however the bytes are split
// into reads (one byte a read puts a CRLF's two halves in two reads).
func TestSSELineEndings(t *testing.T) {
	events := []string{`: open`, ``, `data: {"choices":[{"delta":{"role":"assistant"}}]}`, ``,
		`event: x`, `data: {"choices":[{"delta":{"content":"Hi"}}]}`, ``, `data: [DONE]`, ``}
	for _, end := range []string{"\n", "\r\n", "\r"} {
		for _, bom := range []string{"", "\ufeff"} {
			in := bom + strings.Join(events, end) + end
			for name, r := range map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(in) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
				"halves":   func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
			} {
				s := &sseReader{br: bufio.NewReaderSize(r(), 16)}
				var got []string
				for {
					var ev Event
					err := s.Next(&ev)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("%q %s: %v", in, name, err)
					}
					switch {
					case ev.KeepAlive:
						got = append(got, "keep-alive")
					case ev.Done:
						got = append(got, "[DONE]")
					default:
						got = append(got, string(ev.Data))
					}
				}
				want := []string{"keep-alive", events[2][6:], events[5][6:], "[DONE]"}
				if !slices.Equal(got, want) {
					t.Errorf("%q read %s: %q, want %q", in, name, got, want)
				}
			}
		}
	}
}

// A comment block on its own (sse-starlette's ": ping", sent during a long prefill) is
// a keep-alive; a comment inside an event is not.
func TestSSEKeepAlive(t *testing.T) {
	in := ": ping - 2026-12-02 21:00:00\r\n\r\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n: inside\n\n" +
		":\n:\n\n" +
		"data: [DONE]\n\n"
	s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64)}
	var kinds []string
	for {
		var ev Event
		if err := s.Next(&ev); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		switch {
		case ev.KeepAlive:
			kinds = append(kinds, "keep-alive")
		case ev.Done:
			kinds = append(kinds, "done")
		default:
			kinds = append(kinds, "data")
		}
	}
	if want := []string{"keep-alive", "data", "keep-alive", "done"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
}

// BenchmarkSSERead reads a typical chat stream: a role chunk, 64 content chunks, the
// finish and usage chunks and [DONE], arriving in reads of about one TCP segment.
func BenchmarkSSERead(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n")
	for range 64 {
		sb.WriteString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},\"finish_reason\":null}]}\n\n")
	}
	sb.WriteString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	sb.WriteString("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":64,\"total_tokens\":74}}\n\n")
	sb.WriteString("data: [DONE]\n\n")
	in := sb.String()
	rd := strings.NewReader(in)
	seg := &segmentReader{r: rd, n: 1448}
	s := &sseReader{br: bufio.NewReaderSize(seg, sseBufferSize)}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		s.br.Reset(seg)
		s.done, s.begun, s.lfOnly = false, false, false
		var ev Event
		for {
			if err := s.Next(&ev); err != nil {
				b.Fatal(err)
			}
			if ev.Done {
				break
			}
		}
	}
}

// segmentReader returns at most n bytes a read, as a socket does one segment at a time.
type segmentReader struct {
	r io.Reader
	n int
}

func (s *segmentReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }
