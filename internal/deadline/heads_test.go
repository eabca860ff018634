package deadline

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/testcert"
)

const (
	headsPost = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n"
	headsGet  = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
)

// headsCases are streams a connection reads, with whether heads refuses them (a
// header line ended by a bare LF) and whether it still follows the connection after.
var headsCases = []struct {
	name       string
	stream     string
	bare, kept bool
}{
	{"one request", headsPost + "hello", false, true},
	{"a body with empty bare-LF lines", headsPost[:len(headsPost)-5] + "8\r\n\r\n{\n\n}\n\n\n", false, true},
	{"a body with CRLF CRLF and bare LFs", strings.Replace(headsPost, "5\r\n", "12\r\n", 1) + "a\n\nb\r\n\r\nc\nGET ", false, true},
	{"pipelined requests", headsPost + "hello" + headsGet + headsPost + "hello", false, true},
	{"empty lines before a request", headsPost + "hello\r\n\r\n" + headsGet + "\n" + headsGet, false, true},
	{"HTTP/1.0", "POST /v1/embeddings HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}" + "GET / HTTP/1.0\r\n\r\n", false, true},
	{"a Content-Length in another case, blanks around", "POST / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: \t 3 \t\r\n\r\na\nb" + headsGet, false, true},
	{"a zero Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + headsGet, false, true},
	{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na\n\nbc\r\n1A;ext=\"x y\"\r\n" + strings.Repeat("\n", 26) + "\r\n0\r\n\r\n" + headsGet, false, true},
	{"chunked, a size in capitals with blanks after it", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  CHUNKED \r\n\r\nA \t\r\n0123456789\r\n0\r\n\r\n" + headsGet, false, true},
	{"chunked, sizes in every hex digit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks(1, 0x2f, 0xab, 0xCD, 0xeF, 0x10) + "0\r\n\r\n" + headsGet, false, true},
	{"chunked with a trailer", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-Sum: 1\r\n\r\n" + headsGet, false, true},
	{"chunked and a Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n" + headsGet, false, true},

	{"every line a bare LF", strings.ReplaceAll(headsPost, "\r\n", "\n") + "hello", true, false},
	{"the empty line a bare LF", strings.TrimSuffix(headsPost, "\r\n") + "\n" + "hello", true, false},
	{"the last field line a bare LF", strings.TrimSuffix(headsPost, "\r\n\r\n") + "\n\r\n" + "hello", true, false},
	{"the request line a bare LF", strings.Replace(headsPost, "HTTP/1.1\r\n", "HTTP/1.1\n", 1) + "hello", true, false},
	{"a bare LF inside", strings.Replace(headsPost, "Host: x\r\n", "Host: x\n", 1) + "hello", true, false},
	{"a bare LF, CRLF CRLF in the body", strings.Replace(strings.TrimSuffix(headsPost, "\r\n")+"\n", "5\r\n", "9\r\n", 1) + "abcde\r\n\r\n", true, false},
	{"a bare LF in a pipelined request", headsPost + "hello" + strings.Replace(headsGet, "Host: x\r\n", "Host: x\n", 1), true, false},
	{"a bare LF after a chunked request", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\n" + strings.ReplaceAll(headsGet, "\r\n", "\n"), true, false},

	// A chunked body's trailer is read as a header block is.
	{"a trailer line ended by a bare LF", headsChunked + "0\r\nX: y\n\r\n" + headsGet, true, false},
	{"a trailer line ended by a bare LF, nothing after it", headsChunked + "1\r\nz\r\n0\r\nX-Sum: 1\r\nX: y\n", true, false},
	{"a trailer's empty line a bare LF", headsChunked + "1\r\nz\r\n0\r\nX-Sum: 1\r\n\n" + headsGet, true, false},
	{"a trailer of just a bare LF", headsChunked + "0\r\n\n" + headsGet, true, false},
	{"a bare LF in the trailer of a pipelined request", headsGet + headsChunked + "0\r\nX: y\n\r\n", true, false},
	{"a folded trailer line", headsChunked + "0\r\nX: y\r\n z\r\n\r\n" + headsGet, false, true},

	// fasthttp reads these framings as heads does, and keeps the connection.
	{"a folded line", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + strings.ReplaceAll(headsGet, "\r\n", "\n"), true, false},
	{"a folded line, then a request line ended by a bare LF", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\t c\r\n\r\n" + headsBareRequestLine, true, false},
	{"a Content-Length after many blanks", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:" + strings.Repeat(" ", 60) + "1" + strings.Repeat("\t", 60) + "\r\n\r\na" + headsBareRequestLine, true, false},
	{"a Content-Length of many digits", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strings.Repeat("0", 60) + "1\r\n\r\na" + headsBareRequestLine, true, false},
	{"a Content-Length folded onto the next line", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n \r\n\t 3 \r\n\r\na\nb" + headsBareRequestLine, true, false},
	{"a Transfer-Encoding folded onto the next line", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n" + headsBareRequestLine, true, false},
	{"a framing name that only begins as one", "POST / HTTP/1.1\r\nHost: x\r\nContent-Lengths: 7\r\nTransfer-Encodings: gzip\r\nContent-Length: 1\r\n\r\na" + headsBareRequestLine, true, false},

	// fasthttp refuses these, or closes the connection after them.
	{"a Content-Length twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", false, false},
	{"a Content-Length not a number", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\na", false, false},
	{"a Content-Length empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\na", false, false},
	{"a Content-Length with a blank before its colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 1\r\n\r\na", false, false},
	{"a Content-Length folded after its value", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n \r\n\r\na", false, false},
	{"a Content-Length with a CR inside", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r2\r\n\r\na", false, false},
	{"a Content-Length past any body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\na", false, false},
	{"another transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\na", false, false},
	{"chunked and another coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", false, false},
	{"a bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n" + headsGet, false, false},
	{"a chunk not ended by CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", false, false},
	{"a chunk size line ended by a bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\nz\r\n0\r\n\r\n", false, false},
}

const (
	// headsChunked is the header of a request with a chunked body.
	headsChunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	// headsBareRequestLine is a request whose only bare LF ends its request line,
	// which the header block fasthttp keeps does not hold.
	headsBareRequestLine = "GET /v1/models HTTP/1.1\nHost: x\r\n\r\n"
)

// chunks is a chunk of each size, its size in hex, in upper case for odd sizes.
func chunks(sizes ...int) string {
	var b strings.Builder
	for _, n := range sizes {
		size := strconv.FormatInt(int64(n), 16)
		if n%2 == 1 {
			size = strings.ToUpper(size)
		}
		b.WriteString(size + "\r\n" + strings.Repeat("\n", n) + "\r\n")
	}
	return b.String()
}

// TestHeads follows each stream read whole, a byte at a time, and cut in two at every
// byte: where the reads end makes no difference, to what heads finds nor to what the
// reader has, all of it or what came up to the bare LF refused.
func TestHeads(t *testing.T) {
	for _, tc := range headsCases {
		t.Run(tc.name, func(t *testing.T) {
			stream := []byte(tc.stream)
			whole, read := follow(stream)
			if (whole.bare > 0) != tc.bare || (whole.state != headOff) != tc.kept {
				t.Errorf("bare %v, following %v (state %d); want %v, %v", whole.bare, whole.state != headOff, whole.state, tc.bare, tc.kept)
			}
			if tc.bare && (stream[read-1] != '\n' || read > 1 && stream[read-2] == '\r') || !tc.bare && read != len(stream) {
				t.Errorf("the reader had %q of %q", stream[:read], stream)
			}
			bytewise := make([]int, len(stream)-1)
			for i := range bytewise {
				bytewise[i] = i + 1
			}
			check := func(how string, h *heads, n int) {
				t.Helper()
				if h.bare != whole.bare || h.state != whole.state || n != read {
					t.Fatalf("%s: bare %v, state %d, %d bytes read; read whole: %v, %d, %d", how, h.bare, h.state, n, whole.bare, whole.state, read)
				}
			}
			h, n := follow(stream, bytewise...)
			check("a byte a read", h, n)
			for cut := 1; cut < len(stream); cut++ {
				h, n := follow(stream, cut)
				check("cut at "+strconv.Itoa(cut), h, n)
			}
		})
	}
}

// follow has heads follow stream in reads that end at each of cuts and at its end,
// as a connection reads it: nothing after the read that brought a bare LF. It
// returns the heads and how many bytes the reads gave the reader.
func follow(stream []byte, cuts ...int) (*heads, int) {
	h := newHeads()
	read, from := 0, 0
	for _, to := range append(cuts, len(stream)) {
		if h.bare > 0 {
			break
		}
		read += h.add(stream[from:to])
		from = to
	}
	return h, read
}

func newHeads() *heads {
	h := &heads{on: true}
	h.begin()
	return h
}

// TestHeadsReadBareLF: a connection reads what brought the bare LF, then nothing
// (ErrBareLF), without waiting for the peer; through TLS as well.
func TestHeadsReadBareLF(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var l net.Listener = Listener{Listener: ln, Heads: true}
			if tc.tls {
				l = NewTLSListener(Listener{Listener: ln, Heads: true}, &tls.Config{Certificates: []tls.Certificate{testcert.SelfSigned(t)}})
			}
			client := make(chan net.Conn, 1)
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					client <- nil
					return
				}
				if tc.tls {
					c = tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
				}
				_, _ = io.WriteString(c, "GET / HTTP/1.1\nHost: x\n\n")
				client <- c
			}()
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			defer func() {
				if cc := <-client; cc != nil {
					cc.Close()
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if !errors.Is(err, ErrBareLF) || string(got) != "GET / HTTP/1.1\n" {
				t.Fatalf("read %q, %v; want the bytes sent up to the first bare LF, then ErrBareLF", got, err)
			}
			b, ok := c.(interface{ BareLF(int) (bool, bool) })
			if !ok {
				t.Fatalf("a %T does not say which request had a bare LF", c)
			}
			if bare, known := b.BareLF(1); !bare || !known {
				t.Errorf("request 1: bare %v, known %v; want both", bare, known)
			}
			if _, known := b.BareLF(2); known {
				t.Error("request 2, which never began, is known")
			}
		})
	}
}

// frame is where fasthttp's server reads a request in a stream: from start, its
// header up to head, its body up to end, the trailer of a chunked body from trailer
// (0: none); failed when it could not read it whole, last when the connection closes
// after it (an error, Connection: close, HTTP/1.0, a Transfer-Encoding the gateway
// refuses).
type frame struct {
	start, head, trailer, end int
	failed, last              bool
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// fasthttpFrames reads stream as fasthttp's server reads the requests of a
// connection (its header, then its body by its framing, through a read buffer of
// 8 KiB), up to the first it cannot read or after which the connection closes. A body
// over 1 MiB, which a stream this test makes cannot hold, fails at once, rather than
// have fasthttp make room for a chunk size read from random bytes. A chunked body is
// read as ContinueReadBody reads it, its chunks and then its trailer, to tell where
// the trailer begins.
func fasthttpFrames(stream []byte) []frame {
	cr := &countingReader{r: bytes.NewReader(stream)}
	br := bufio.NewReaderSize(cr, 8<<10)
	at := func() int { return cr.n - br.Buffered() }
	var frames []frame
	for {
		if _, err := br.Peek(1); err != nil {
			return frames
		}
		f := frame{start: at()}
		var req fasthttp.Request
		if err := req.Header.Read(br); err != nil {
			f.failed = true
			return append(frames, f)
		}
		f.head = at()
		var err error
		// As the header framed it: once read, a chunked body has a length.
		chunked := req.Header.ContentLength() == -1
		if chunked {
			if err = req.ReadBody(br, -1, 1<<20); err == nil {
				f.trailer = at()
				if err = req.Header.ReadTrailer(br); err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
			}
		} else {
			err = req.ContinueReadBody(br, 1<<20, false)
		}
		f.end = at()
		f.failed = err != nil
		f.last = err != nil || req.Header.ConnectionClose() || !chunked && transferCoded(req.Header.RawHeaders())
		frames = append(frames, f)
		if f.last {
			return frames
		}
	}
}

// transferCoded reports whether a header block has a Transfer-Encoding line, which
// fasthttp takes only as "chunked" (a body it reads chunked) or "identity" (dropped
// from the header it parses), and after which the gateway closes the connection
// unless the body is chunked (gateway's unframed).
func transferCoded(block []byte) bool {
	for _, line := range bytes.Split(block, []byte("\n")) {
		if len(line) > len(encodingName) && bytes.EqualFold(line[:len(encodingName)], []byte(encodingName)) && line[len(encodingName)] == ':' {
			return true
		}
	}
	return false
}

// headsTrace follows stream a byte at a time: where heads refused it (-1: nowhere)
// and the number of the request it refused, where it stopped following it (-1: it
// follows it to the end), and its state after each byte.
func headsTrace(stream []byte) (bareAt, bareReq, offAt int, states []uint8) {
	h := newHeads()
	bareAt, offAt = -1, -1
	states = make([]uint8, len(stream)+1)
	states[0] = h.state
	for i := range stream {
		h.add(stream[i : i+1])
		states[i+1] = h.state
		if h.bare > 0 && bareAt < 0 {
			bareAt, bareReq = i, h.bare
		}
		if h.state == headOff && offAt < 0 {
			offAt = i
		}
	}
	return bareAt, bareReq, offAt, states
}

// hasBareLF reports whether a header block has a line ended by a bare LF, past the
// empty lines before its request line.
func hasBareLF(block []byte) bool {
	return bareLine(bytes.TrimLeft(block, "\r\n"))
}

// bareLine reports whether a line of b, a header block past its leading empty lines
// or a trailer section, ends in a bare LF.
func bareLine(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// checkHeads checks heads against fasthttp's reading of stream: it refuses a stream
// only at a bare LF in a header block or a chunked body's trailer that fasthttp
// reads (or fails to read) there, never in a body (past the connection's last
// request, nothing counts); it refuses every header block and trailer fasthttp reads
// with a bare LF, as long as it follows the stream; it is between requests wherever
// fasthttp's next request begins; and it stops following the stream only where it
// refuses it, or in a request that fasthttp fails to read or after which the
// connection closes: a request it does not follow is never served.
func checkHeads(t *testing.T, stream []byte) {
	t.Helper()
	frames := fasthttpFrames(stream)
	bareAt, bareReq, offAt, states := headsTrace(stream)
	following := func(i int) bool { return offAt < 0 || i <= offAt }
	if bareAt >= 0 {
		ok := false
		for k, f := range frames {
			if f.last && bareAt >= f.end {
				ok = true
				break
			}
			inHead := bareAt >= f.start && (f.head == 0 || bareAt < f.head)
			inTrailer := f.trailer > 0 && bareAt >= f.trailer && bareAt < f.end
			if inHead || inTrailer || bareAt >= f.start && f.failed {
				if (inHead && f.head != 0 || inTrailer) && bareReq != k+1 {
					t.Fatalf("refused at byte %d, in request %d, as request %d (%+v): %q", bareAt, k+1, bareReq, frames, stream)
				}
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("refused at byte %d, outside any header block or trailer fasthttp reads (%+v): %q", bareAt, frames, stream)
		}
	}
	if offAt >= 0 && offAt != bareAt && !offAllowed(frames, offAt) {
		t.Fatalf("stopped following at byte %d, in a request fasthttp reads whole and keeps the connection after (%+v): %q", offAt, frames, stream)
	}
	for _, f := range frames {
		if !following(f.start) || bareAt >= 0 && bareAt < f.start {
			return
		}
		if states[f.start] != headLead {
			t.Fatalf("fasthttp reads a request from byte %d, where heads is in state %d (%+v): %q", f.start, states[f.start], frames, stream)
		}
		if f.head == 0 {
			return
		}
		if hasBareLF(stream[f.start:f.head]) && (bareAt < 0 || bareAt >= f.head) {
			t.Fatalf("fasthttp reads a header block with a bare LF, bytes %d to %d, which heads did not refuse (%+v): %q", f.start, f.head, frames, stream)
		}
		if f.failed {
			return
		}
		if f.trailer > 0 && following(f.trailer) && bareLine(stream[f.trailer:f.end]) && (bareAt < 0 || bareAt >= f.end) {
			t.Fatalf("fasthttp reads a trailer with a bare LF, bytes %d to %d, which heads did not refuse (%+v): %q", f.trailer, f.end, frames, stream)
		}
	}
}

// offAllowed reports whether heads may stop following a stream at byte off, one
// that is not a bare LF it refused: in a request fasthttp fails to read, or after
// which the connection closes.
func offAllowed(frames []frame, off int) bool {
	for _, f := range frames {
		if off < f.start || f.head != 0 && off >= f.end && !f.last && !f.failed {
			continue
		}
		return f.failed || f.last
	}
	return true
}

// TestHeadsFramesAsFasthttp checks each case against fasthttp's own reading.
func TestHeadsFramesAsFasthttp(t *testing.T) {
	for _, tc := range headsCases {
		t.Run(tc.name, func(t *testing.T) { checkHeads(t, []byte(tc.stream)) })
	}
}

// FuzzHeads checks heads against fasthttp's reading of the requests of a connection
// (checkHeads), and that cutting the stream in two changes nothing.
func FuzzHeads(f *testing.F) {
	for _, tc := range headsCases {
		f.Add([]byte(tc.stream), uint16(len(tc.stream)/2))
	}
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16) {
		if len(stream) > 64<<10 {
			return
		}
		checkHeads(t, stream)
		whole, read := follow(stream)
		bareAt, _, _, _ := headsTrace(stream)
		if bareAt >= 0 && read != bareAt+1 || bareAt < 0 && read != len(stream) {
			t.Fatalf("the reader had %d bytes, heads refusing at byte %d: %q", read, bareAt, stream)
		}
		c := min(int(cut), len(stream))
		h, n := follow(stream, c)
		if h.bare != whole.bare || h.state != whole.state || n != read {
			t.Fatalf("cut at %d: bare %v, state %d, %d bytes read; read whole: %v, %d, %d: %q", c, h.bare, h.state, n, whole.bare, whole.state, read, stream)
		}
	})
}

// TestHeadsBareIn: a connection answers for each request it followed by its number;
// for one after it stopped following, it does not know.
func TestHeadsBareIn(t *testing.T) {
	type answer struct{ bare, known bool }
	for _, tc := range []struct {
		name   string
		stream string
		want   []answer // for requests 1, 2, 3
	}{
		{"the second of two", headsGet + strings.ReplaceAll(headsGet, "\r\n", "\n"), []answer{{false, true}, {true, true}, {false, false}}},
		{"the first of three, sent together", strings.ReplaceAll(headsGet, "\r\n", "\n") + headsGet + headsGet, []answer{{true, true}, {false, false}, {false, false}}},
		{"after a folded line", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + strings.ReplaceAll(headsGet, "\r\n", "\n"), []answer{{false, true}, {true, true}, {false, false}}},
		{"the trailer of the second", headsGet + headsChunked + "0\r\n\n" + headsGet, []answer{{false, true}, {true, true}, {false, false}}},
		{"after another transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\na" + headsBareRequestLine, []answer{{false, true}, {false, false}, {false, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeads()
			h.add([]byte(tc.stream))
			for i, want := range tc.want {
				if bare, known := h.bareIn(i + 1); bare != want.bare || known != want.known {
					t.Errorf("request %d: bare %v, known %v; want %v, %v", i+1, bare, known, want.bare, want.known)
				}
			}
		})
	}
	if _, known := Wrap(nil).BareLF(1); known {
		t.Error("a connection not following its requests says it knows")
	}
}

// sdkRequest is a request with body as the official OpenAI Python SDK sends it.
func sdkRequest(body string) []byte {
	return []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.internal:8080\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n" +
		"Accept: application/json\r\nContent-Type: application/json\r\nUser-Agent: OpenAI/Python 1.54.4\r\n" +
		"X-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.54.4\r\nX-Stainless-OS: Linux\r\n" +
		"X-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\nX-Stainless-Runtime-Version: 3.12.7\r\n" +
		"Authorization: Bearer sk-0123456789abcdef0123456789abcdef\r\nX-Stainless-Async: false\r\n" +
		"X-Stainless-Retry-Count: 0\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// repeatConn reads its request over and over, a request a read.
type repeatConn struct {
	net.Conn
	req []byte
}

func (c *repeatConn) Read(b []byte) (int, error) { return copy(b, c.req), nil }

// BenchmarkHeadsRead is a connection's read of a whole request, header and body (an
// SDK's chat request, and one with a 64 KiB body of many lines), without Heads and
// with it: a header costs a search for each of its line feeds, a body nothing.
func BenchmarkHeadsRead(b *testing.B) {
	for _, req := range []struct {
		name string
		b    []byte
	}{
		{"chat", sdkRequest(`{"model":"chat","messages":[{"role":"user","content":"Say this is a test"}],"max_tokens":16}`)},
		{"64KiB", sdkRequest(strings.Repeat("{\"a\": \"b\"}\n\n\n\n", 4096))},
	} {
		for _, on := range []bool{false, true} {
			name := req.name + "/without"
			if on {
				name = req.name + "/heads"
			}
			b.Run(name, func(b *testing.B) {
				c := Wrap(&repeatConn{req: req.b})
				c.lines.on = true
				if on {
					c.heads.on = true
					c.heads.begin()
				}
				buf := make([]byte, len(req.b))
				b.SetBytes(int64(len(req.b)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Read(buf); err != nil {
						b.Fatal(err)
					}
				}
				if on && (c.heads.state != headLead || c.heads.bare != 0) {
					b.Fatalf("requests not followed: state %d, bare %d", c.heads.state, c.heads.bare)
				}
			})
		}
	}
}
