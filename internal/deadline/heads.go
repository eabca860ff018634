package deadline

import (
	"bytes"
	"errors"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// ErrBareLF is what a connection accepted by a Listener with Heads reads once a line
// of a request's header block (its request line, a field line, or the empty line that
// ends it), or of its chunked body's trailer, ended in a bare LF rather than CRLF.
var ErrBareLF = errors.New("a request header or trailer line ends in a bare LF, not CRLF")

// heads follows the requests a connection carries, from its first byte, for header
// and trailer lines that end in a bare LF. RFC 9112 2.2 lets a server take a bare LF
// as a line's end or refuse the message; fasthttp does neither: it takes bare-LF
// lines inside a header block but ends the block only where a CRLF CRLF comes, in it
// or anywhere after it (a body), so that a request whose every line ends in a bare
// LF, or whose empty line does, waits for read_timeout, and one whose body holds a
// CRLF CRLF has its header end at the bare LF. It reads a chunked body's trailer as
// it reads a header block, and the same goes for its lines. A peer in front that
// reads such lines otherwise (a proxy that passes the bytes on, taking a bare LF for
// no line end) frames the bytes differently, which is how requests are smuggled.
// Once a header or trailer line ends in a bare LF the connection reads no further
// than that LF (ErrBareLF): fasthttp never frames what follows it, and the server
// answers that request 400 and closes the connection, whether it was still reading
// the request or had read its header (Conn.BareLF asks after a request by its
// number: those the client pipelined ahead of it, read along with it, are served
// first).
//
// To know where each request's header block begins, heads frames the requests as
// fasthttp does: the empty lines before a request line are skipped, the block ends at
// its first empty line, and the body that follows is a Content-Length's bytes, or
// chunks up to the last one and its trailer. Where it could read the framing
// otherwise than fasthttp (a Transfer-Encoding other than chunked, a Content-Length
// it cannot read or given twice, a folded line) it stops following the connection:
// fasthttp refuses most of these requests and closes the connection, and folded
// lines, obsolete, are rare. A body's bytes are counted, not looked at; a header
// costs a search for each of its line feeds (BenchmarkHeadsRead: about 0.15 µs for an
// SDK's chat request of 19 lines).
type heads struct {
	on bool
	// requests counts the requests begun; bare is the number of the one a header
	// or trailer line of which ended in a bare LF (0: none).
	requests, bare int
	state          uint8
	// lastCR is set when the last byte read was a CR.
	lastCR bool
	// trailer is set while the lines followed are a chunked body's trailer.
	trailer bool
	// The framing the header block read so far names: length is its
	// Content-Length (-1: none), chunked its Transfer-Encoding, unsure a field
	// whose framing fasthttp may read otherwise.
	length          int64
	chunked, unsure bool
	// left is what is left of the body part being counted (a Content-Length's
	// body, a chunk's data), or the chunk size being read.
	left int64
	// digits counts the digits of the chunk size read.
	digits uint8
	// keep is set while the field line being read may name a framing field: line
	// holds its first n bytes, long is set when it had more.
	keep, long bool
	n          uint8
	line       [fieldKeep]byte
}

// fieldKeep is how much of a field line heads keeps to read a framing field from:
// "transfer-encoding: chunked" and a Content-Length of 18 digits with blanks around.
const fieldKeep = 48

const (
	headLead      = iota // before a request line: empty lines skipped
	headRequest          // in the request line
	headStart            // at the start of a field line, or of the empty line
	headCR               // after a CR that starts a line
	headField            // in a field line
	headBody             // in a Content-Length's body
	headChunkSize        // in a chunk's size
	headChunkOWS         // in the blanks after a chunk's size
	headChunkExt         // in a chunk's extensions
	headChunkLF          // after the CR that ends a chunk's size line
	headChunkData        // in a chunk's data
	headDataCR           // after a chunk's data, at its CR
	headDataLF           // after a chunk's data and CR
	headOff              // not followed any more
)

// bareIn reports whether the header or trailer of the connection's request number r
// (from 1) had a line ended by a bare LF; known is false when heads did not follow
// it: it was not on, or had stopped following the connection before that request.
func (h *heads) bareIn(r int) (bare, known bool) {
	return r == h.bare, r > 0 && r <= h.requests
}

func (h *heads) begin() {
	h.state, h.trailer = headLead, false
	h.length, h.chunked, h.unsure = -1, false, false
}

// add follows b, the bytes the connection read next, and returns how many of them
// the reader is to have: all of them, or those up to the bare LF that ended a line of
// a header block or a trailer, with which the connection's reads end.
func (h *heads) add(b []byte) int {
	if len(b) == 0 || h.state == headOff {
		return len(b)
	}
	n := h.scan(b)
	h.lastCR = b[n-1] == '\r'
	return n
}

// crBefore reports whether the byte before b[i] came as a CR: at i 0, the last read's.
func (h *heads) crBefore(b []byte, i int) bool {
	if i > 0 {
		return b[i-1] == '\r'
	}
	return h.lastCR
}

// scan follows b and returns how many of its bytes the reader is to have (add).
func (h *heads) scan(b []byte) int {
	for i := 0; i < len(b); {
		switch h.state {
		case headOff:
			return len(b)
		case headLead:
			for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
				i++
			}
			if i < len(b) {
				h.state, h.keep = headRequest, false
				h.requests++
			}
		case headRequest, headField:
			// Line after line, while each begins as a field line does.
			for {
				j := bytes.IndexByte(b[i:], '\n')
				end := len(b)
				if j >= 0 {
					end = i + j
				}
				if h.keep {
					if h.n == 0 && j >= 0 {
						// The whole line is in this read.
						h.field(b[i:end])
					} else if h.collect(b[i:end]); j >= 0 {
						h.field(h.line[:h.n])
					}
				}
				if j < 0 {
					return len(b)
				}
				if !h.crBefore(b, end) {
					h.bare, h.state = h.requests, headOff
					return end + 1
				}
				i, h.state = end+1, headStart
				if i == len(b) {
					return len(b)
				}
				c := b[i]
				if c == '\r' || c == '\n' || c == ' ' || c == '\t' {
					break
				}
				h.fieldLine(c)
			}
		case headStart:
			c := b[i]
			switch c {
			case '\r':
				h.state = headCR
				i++
				continue
			case '\n':
				h.bare, h.state = h.requests, headOff
				return i + 1
			case ' ', '\t':
				// obs-fold: the line continues the one before it, which fasthttp
				// joins to it.
				h.unsure = true
			}
			h.fieldLine(c)
		case headCR:
			if b[i] != '\n' {
				// A line that begins with a CR, which fasthttp refuses.
				h.state = headField
				h.keep = false
				continue
			}
			i++
			h.end()
		case headBody, headChunkData:
			k := int(min(h.left, int64(len(b)-i)))
			h.left -= int64(k)
			i += k
			if h.left > 0 {
				return len(b)
			}
			if h.state == headBody {
				h.begin()
			} else {
				h.state = headDataCR
			}
		default:
			h.chunk(b[i])
			i++
		}
	}
	return len(b)
}

// fieldLine begins a field line whose first byte is c: one whose name may be a
// framing field's is kept (collect) to be read (field).
func (h *heads) fieldLine(c byte) {
	h.state = headField
	h.keep = !h.trailer && (c|0x20 == 'c' || c|0x20 == 't')
	h.n, h.long = 0, false
}

// collect keeps b, more of the field line being read, up to fieldKeep bytes of it.
func (h *heads) collect(b []byte) {
	k := copy(h.line[h.n:], b)
	h.n += uint8(k)
	if k < len(b) {
		h.long = true
	}
}

// field reads the framing a field line names from line, the line but its LF, its CR
// included (as kept, when it came in several reads). Only its first fieldKeep bytes
// count, however it came: a framing field longer than that (its value after many
// blanks) is read as one heads cannot read.
func (h *heads) field(line []byte) {
	h.keep = false
	long := h.long
	if len(line) > fieldKeep {
		line, long = line[:fieldKeep], true
	}
	var rest []byte
	isLength := false
	switch {
	case len(line) >= len(lengthName) && equalFold(line[:len(lengthName)], lengthName):
		rest, isLength = line[len(lengthName):], true
	case len(line) >= len(encodingName) && equalFold(line[:len(encodingName)], encodingName):
		rest = line[len(encodingName):]
	default:
		return
	}
	// The name ends at its colon; fasthttp refuses blanks before it.
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
		j++
	}
	if j == len(rest) || rest[j] != ':' {
		// Another name that begins so, or one cut short by what is kept.
		if j == len(rest) && long {
			h.unsure = true
		}
		return
	}
	if long || j > 0 {
		h.unsure = true
		return
	}
	value := bytes.Trim(bytes.TrimSuffix(rest[1:], crlfCR), " \t")
	if !isLength {
		if h.chunked || !equalFold(value, "chunked") {
			// Twice, or another coding: fasthttp refuses the request, or frames
			// it by its Content-Length (identity) and the gateway closes the
			// connection after it.
			h.unsure = true
		}
		h.chunked = true
		return
	}
	if len(value) == 0 || len(value) > 18 || h.length >= 0 {
		h.unsure = true
		return
	}
	var n int64
	for _, c := range value {
		if c < '0' || c > '9' {
			h.unsure = true
			return
		}
		n = n*10 + int64(c-'0')
	}
	h.length = n
}

const (
	lengthName   = "content-length"
	encodingName = "transfer-encoding"
)

var crlfCR = []byte{'\r'}

// end is the empty line that ends a header block, or a chunked body's trailer: what
// follows is the body, if any, or the next request.
func (h *heads) end() {
	switch {
	case h.trailer:
		h.begin()
	case h.unsure:
		h.state = headOff
	case h.chunked:
		// fasthttp reads a request with both a Transfer-Encoding and a
		// Content-Length as chunked, and closes the connection after it.
		h.state, h.left, h.digits = headChunkSize, 0, 0
	case h.length > 0:
		h.state, h.left = headBody, h.length
	default:
		h.begin()
	}
}

// chunk follows c, the next byte of a chunk's framing, as fasthttp reads it
// (parseChunkSize, readCrLf): the size in at most 15 hex digits, blanks and
// extensions after it, each line ended by CRLF. A byte fasthttp refuses stops the
// following: the request fails, its connection closes.
func (h *heads) chunk(c byte) {
	switch h.state {
	case headChunkSize:
		if d := jsonscan.HexDigit(c); d >= 0 && h.digits < 15 {
			h.left = h.left<<4 | int64(d)
			h.digits++
			return
		}
		switch {
		case h.digits == 0 || jsonscan.HexDigit(c) >= 0:
			h.state = headOff
		case c == '\r':
			h.state = headChunkLF
		case c == ' ' || c == '\t':
			h.state = headChunkOWS
		case c == ';':
			h.state = headChunkExt
		default:
			h.state = headOff
		}
	case headChunkOWS:
		switch c {
		case ' ', '\t':
		case '\r':
			h.state = headChunkLF
		default:
			h.state = headOff
		}
	case headChunkExt:
		switch c {
		case '\r':
			h.state = headChunkLF
		case '\n':
			h.state = headOff
		}
	case headChunkLF:
		switch {
		case c != '\n':
			h.state = headOff
		case h.left == 0:
			// The last chunk: its trailer follows, usually just the empty line.
			h.state, h.trailer = headStart, true
		default:
			h.state = headChunkData
		}
	case headDataCR:
		h.state = headOff
		if c == '\r' {
			h.state = headDataLF
		}
	case headDataLF:
		h.state = headOff
		if c == '\n' {
			h.state, h.left, h.digits = headChunkSize, 0, 0
		}
	}
}

// equalFold reports whether b is name, a lower-case ASCII word, in any case.
func equalFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}
