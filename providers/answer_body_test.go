package providers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// readAnswer reads raw, an answer, as connRoundTrip does a buffered one: its header
// through fasthttp, then its body through readBody under max.
func readAnswer(t *testing.T, r io.Reader, max int) (*fasthttp.Response, error) {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	br := bufio.NewReader(r)
	resp.SkipBody = true
	if err := resp.Read(br); err != nil {
		t.Fatalf("header: %v", err)
	}
	resp.SkipBody = false
	return resp, readBody(resp, br, max, nil)
}

const (
	lengthHead  = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
	chunkedHead = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
	closeHead   = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
)

// readBody frames a buffered answer's body as fasthttp's ReadLimitBody does: each
// framing read whole, a chunked body's trailer kept, and every way a body can be cut
// short or malformed an error.
func TestReadBodyFramings(t *testing.T) {
	const body = `{"id":"x","choices":[]}`
	for _, tc := range []struct {
		name, answer string
		max          int
		want         string // the body read; "" with wantErr
		wantErr      error  // nil: any error when fails is set
		fails        bool
	}{
		{name: "content-length", answer: lengthHead + strconv.Itoa(len(body)) + "\r\n\r\n" + body, want: body},
		{name: "content-length 0", answer: lengthHead + "0\r\n\r\n", want: ""},
		{name: "content-length cut short", answer: lengthHead + "100\r\n\r\n" + body, wantErr: io.ErrUnexpectedEOF},
		{name: "content-length over the bound", answer: lengthHead + "1000000000\r\n\r\n" + body, max: 64 << 20, wantErr: fasthttp.ErrBodyTooLarge},
		{name: "chunked", answer: chunkedHead + chunked(body[:5]) + chunked(body[5:]) + "0\r\n\r\n", want: body},
		{name: "chunked with extensions", answer: chunkedHead + "5;x=1\r\n" + body[:5] + "\r\n" + strconv.FormatInt(int64(len(body)-5), 16) + "  \r\n" + body[5:] + "\r\n0\r\n\r\n", want: body},
		{name: "chunked upper-case size", answer: chunkedHead + "1A\r\n" + strings.Repeat("y", 26) + "\r\n0\r\n\r\n", want: strings.Repeat("y", 26)},
		{name: "chunked without its last chunk", answer: chunkedHead + chunked(body), wantErr: io.ErrUnexpectedEOF},
		{name: "chunked cut in a chunk", answer: chunkedHead + "40\r\n" + body, wantErr: io.ErrUnexpectedEOF},
		{name: "chunked cut before the trailer's end", answer: chunkedHead + chunked(body) + "0\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "chunk over the bound", answer: chunkedHead + "40000000\r\n" + body, max: 64 << 20, wantErr: fasthttp.ErrBodyTooLarge},
		{name: "chunks over the bound together", answer: chunkedHead + chunked(body) + chunked(body), max: len(body) + 1, wantErr: fasthttp.ErrBodyTooLarge},
		{name: "chunk size not hex", answer: chunkedHead + "x\r\n" + body + "\r\n0\r\n\r\n", wantErr: errChunkSize},
		{name: "chunk size over 15 digits", answer: chunkedHead + "0000000000000001\r\nx\r\n0\r\n\r\n", wantErr: errChunkSize},
		{name: "chunk size with a bare LF", answer: chunkedHead + "5;x\nz\r\n" + body[:5] + "\r\n0\r\n\r\n", wantErr: errChunkAfter},
		{name: "extension after a blank", answer: chunkedHead + "5 ;x\r\n" + body[:5] + "\r\n0\r\n\r\n", wantErr: errChunkAfter},
		{name: "chunk without its CRLF", answer: chunkedHead + "5\r\n" + body[:6] + "\r\n0\r\n\r\n", wantErr: errChunkCRLF},
		{name: "up to the close", answer: closeHead + body, want: body},
		{name: "up to the close over the bound", answer: closeHead + body, max: len(body) - 1, wantErr: fasthttp.ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := readAnswer(t, strings.NewReader(tc.answer), tc.max)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v, body %q", err, resp.Body())
			case tc.wantErr == nil && string(resp.Body()) != tc.want:
				t.Fatalf("body %q, want %q", resp.Body(), tc.want)
			}
		})
	}
}

func TestReadBodyTrailerAndLength(t *testing.T) {
	t.Run("chunked trailer kept", func(t *testing.T) {
		resp, err := readAnswer(t, strings.NewReader(chunkedHead+chunked("ab")+"0\r\nX-Checksum: 1\r\n\r\n"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Header.Peek("X-Checksum")); got != "1" {
			t.Errorf("trailer X-Checksum %q, want 1", got)
		}
	})
	t.Run("body up to the close has its length", func(t *testing.T) {
		resp, err := readAnswer(t, strings.NewReader(closeHead+"abc"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := resp.Header.ContentLength(); n != 3 {
			t.Errorf("Content-Length %d, want 3", n)
		}
	})
}

// stall is an upstream connection that sends what it has and then fails every read
// with err: a stalled upstream whose read deadline came.
type stall struct {
	r   io.Reader
	err error
}

func (s *stall) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, s.err
	}
	return n, err
}

// An upstream that announces a large body and sends a byte of it costs the gateway
// about what it sent, whatever the framing, until its read fails; and that failure
// comes back as it came, a timeout inside a chunk's framing included.
func TestReadBodyGrowsWithWhatCame(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"content-length", lengthHead + strconv.Itoa(48<<20) + "\r\n\r\n{"},
		{"chunk", chunkedHead + strconv.FormatInt(48<<20, 16) + "\r\n{"},
		{"chunk size line", chunkedHead + chunked("{") + "3000000\r"},
		{"up to the close", closeHead + "{"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := readAnswer(t, &stall{strings.NewReader(tc.answer), os.ErrDeadlineExceeded}, 64<<20)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want the read's timeout", err)
			}
			b := resp.SwapBody(nil)
			if cap(b) > 64<<10 {
				t.Errorf("%d bytes held for a body of which %d came", cap(b), len(b))
			}
		})
	}
}

// FuzzReadBody: readBody takes and refuses what fasthttp's ReadLimitBody takes and
// refuses, with the same body, header and trailer, under the same bound.
func FuzzReadBody(f *testing.F) {
	f.Add(uint8(0), uint16(5), uint16(0), []byte("hello"))
	f.Add(uint8(0), uint16(9), uint16(4), []byte("hello"))
	f.Add(uint8(1), uint16(0), uint16(0), []byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add(uint8(1), uint16(0), uint16(3), []byte("5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add(uint8(1), uint16(0), uint16(0), []byte("5 \r\nhello\r\n0\r\n"))
	f.Add(uint8(1), uint16(0), uint16(0), []byte("5 ;\r\nhello\r\n0\r\n\r\n"))
	f.Add(uint8(1), uint16(0), uint16(0), []byte("5\nhello\r\n0\r\n\r\n"))
	f.Add(uint8(2), uint16(0), uint16(4), []byte("hello"))
	f.Fuzz(func(t *testing.T, framing uint8, length, max uint16, rest []byte) {
		head := closeHead
		switch framing % 3 {
		case 0:
			head = lengthHead + strconv.Itoa(int(length)) + "\r\n\r\n"
		case 1:
			head = chunkedHead
		}
		raw := append([]byte(head), rest...)

		theirs := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(theirs)
		theirErr := theirs.ReadLimitBody(bufio.NewReader(bytes.NewReader(raw)), int(max))

		ours := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(ours)
		br := bufio.NewReader(bytes.NewReader(raw))
		ours.SkipBody = true
		if err := ours.Read(br); err != nil {
			t.Fatalf("header: %v", err)
		}
		ours.SkipBody = false
		ourErr := readBody(ours, br, int(max), nil)

		if (theirErr == nil) != (ourErr == nil) ||
			errors.Is(theirErr, fasthttp.ErrBodyTooLarge) != errors.Is(ourErr, fasthttp.ErrBodyTooLarge) {
			t.Fatalf("fasthttp: %v; readBody: %v", theirErr, ourErr)
		}
		if ourErr != nil {
			return
		}
		if !bytes.Equal(theirs.Body(), ours.Body()) {
			t.Fatalf("body %q, fasthttp's %q", ours.Body(), theirs.Body())
		}
		if a, b := theirs.Header.String(), ours.Header.String(); a != b {
			t.Fatalf("header %q, fasthttp's %q", b, a)
		}
	})
}

// BenchmarkReadBody reads an ordinary answer (a 700-byte body, by Content-Length and
// chunked) as connRoundTrip does: its header through fasthttp, its body through
// readBody; "fasthttp" is the same answer read whole by fasthttp's ReadLimitBody.
func BenchmarkReadBody(b *testing.B) {
	body := strings.Repeat("x", 700)
	for _, tc := range []struct{ name, answer string }{
		{"content-length", lengthHead + strconv.Itoa(len(body)) + "\r\n\r\n" + body},
		{"chunked", chunkedHead + chunked(body) + "0\r\n\r\n"},
	} {
		raw := []byte(tc.answer)
		src := bytes.NewReader(raw)
		br := bufio.NewReaderSize(src, 4096)
		resp := fasthttp.AcquireResponse()
		next := func() {
			src.Reset(raw)
			br.Reset(src)
			resp.Reset()
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				next()
				resp.SkipBody = true
				if err := resp.ReadLimitBody(br, 0); err != nil {
					b.Fatal(err)
				}
				resp.SkipBody = false
				if err := readBody(resp, br, 64<<20, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/fasthttp", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				next()
				if err := resp.ReadLimitBody(br, 64<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
