package providers

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// A 200 event stream whose body is not events (an HTML page a proxy sends with the
// header it had begun, a bare JSON error object, only lines that are neither comments
// nor events' fields) is the upstream's invalid answer, ErrBadResponse, not a cut
// stream; a JSON error object's message goes with the error, masked. A stream that
// has events keeps the SSE spec's tolerance of unknown fields, and one that only
// ends early is cut.
func TestSSEStreamNotEvents(t *testing.T) {
	const event = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
	for _, tc := range []struct {
		name, in string
		events   int
		bad, end bool
		detail   string
	}{
		{name: "html page", in: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n</html>\r\n", bad: true},
		{name: "json error object", in: `{"error":{"message":"model overloaded for sk-secret-12345678","type":"server_error","code":503}}` + "\n",
			bad: true, detail: "model overloaded for ***"},
		{name: "json error with a top-level message", in: `{"object":"error","message":"no such model","type":"NotFoundError","code":404}`, bad: true, detail: "no such model"},
		{name: "json object without a message", in: `{"status":"down"}` + "\n", bad: true},
		{name: "pretty-printed json", in: "{\n  \"error\": \"overloaded\"\n}\n", bad: true},
		{name: "plain text", in: "upstream connect error or disconnect/reset before headers\n", bad: true},
		{name: "plain text without its newline", in: "no healthy upstream", bad: true},
		{name: "html page after an event", in: event + "<html><body>502 Bad Gateway</body></html>\n", events: 1, bad: true},
		{name: "unknown fields between events", in: "foo: bar\n" + event + "baz\nid: 7\nretry: 100\n" + event + "data: [DONE]\n\n", events: 3, end: true},
		{name: "unknown field and a cut", in: event + "foo: bar\n", events: 1},
		{name: "ids and retries only", in: "id: 1\nretry: 1000\n\n"},
		{name: "empty", in: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(tc.in), 64), secrets: [][]byte{[]byte("sk-secret-12345678")}}
			n := 0
			var err error
			for {
				var ev Event
				if err = s.Next(&ev); err != nil {
					break
				}
				if !ev.KeepAlive {
					n++
				}
			}
			if n != tc.events {
				t.Errorf("%d events read, want %d", n, tc.events)
			}
			switch {
			case tc.bad && (!errors.Is(err, ErrBadResponse) || !errors.Is(err, ErrStreamCut)):
				t.Fatalf("err = %v, want an invalid stream (ErrBadResponse)", err)
			case tc.end && err != io.EOF:
				t.Fatalf("err = %v, want the stream's clean end", err)
			case !tc.bad && !tc.end && (!errors.Is(err, ErrStreamCut) || errors.Is(err, ErrBadResponse)):
				t.Fatalf("err = %v, want a cut stream", err)
			}
			var d interface{ UpstreamDetail() string }
			switch got := errors.As(err, &d); {
			case tc.detail == "" && got:
				t.Errorf("detail %q, want none", d.UpstreamDetail())
			case tc.detail != "" && (!got || d.UpstreamDetail() != tc.detail):
				t.Errorf("err = %v, want the detail %q", err, tc.detail)
			}
		})
	}
}
