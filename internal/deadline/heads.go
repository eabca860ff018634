package deadline

import (
	"bytes"
	"errors"
	"math"

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
// its first empty line, a line that begins with a blank continues the one before it
// (obs-fold, which fasthttp joins to it with a space), and the body that follows is
// a Content-Length's bytes, or chunks up to the last one and its trailer. Where it
// could read the framing otherwise than fasthttp (a Transfer-Encoding other than
// chunked or given twice, a Content-Length that is no number or given twice, blanks
// before a framing field's colon, a chunk's size or line ends as fasthttp does not
// take them) it stops following the connection: fasthttp refuses each such request,
// or frames it by its Content-Length and the gateway closes the connection after it
// (Transfer-Encoding: identity). So no request after one it stopped at is served:
// the header block fasthttp keeps (RawHeaders) lacks the request line, whose bare LF
// only the connection sees. A body's bytes are counted, not looked at; a header costs
// a search for each of its line feeds (BenchmarkHeadsRead: about 0.16 µs for an SDK's
// chat request of 19 lines).
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
	// keep is set while the field line being read, or the one just ended until the
	// next shows whether it is folded onto it, may name the framing (fieldLine):
	// encoding says it is a Transfer-Encoding (else a Content-Length), field where
	// in the line the bytes read are, matched how many bytes of its name, or of
	// "chunked", came, value the Content-Length's digits read, cr that the last
	// byte read was a CR.
	keep, encoding, cr bool
	field, matched     uint8
	value              int64
}

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

// Where in a framing field line the bytes read are (heads.field).
const (
	fieldName      = iota // in the name
	fieldColon            // after the name, where its colon belongs
	fieldNameBlank        // in blanks after the name
	fieldBlank            // after the colon, before the value
	fieldValue            // in the value
	fieldTail             // in the blanks after the value
)

// bareIn reports whether the header or trailer of the connection's request number r
// (from 1) had a line ended by a bare LF; known is false when heads did not follow
// it: it was not on, or had stopped following the connection before that request.
func (h *heads) bareIn(r int) (bare, known bool) {
	return r == h.bare, r > 0 && r <= h.requests
}

func (h *heads) begin() {
	h.state, h.trailer, h.keep = headLead, false, false
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
					h.read(b[i:end])
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
				if h.keep {
					h.commit()
				}
				h.state = headCR
				i++
				continue
			case '\n':
				h.bare, h.state = h.requests, headOff
				return i + 1
			case ' ', '\t':
				if h.keep {
					h.fold()
					h.state = headField
					continue
				}
			}
			h.fieldLine(c)
		case headCR:
			if b[i] != '\n' {
				// A line that begins with a CR, which fasthttp refuses.
				h.state = headField
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

// fieldLine begins a field line whose first byte is c, the line before it done with:
// one whose name may be a framing field's is read as it comes (read).
func (h *heads) fieldLine(c byte) {
	if h.keep {
		h.commit()
	}
	h.state = headField
	c |= 0x20
	if h.keep = !h.trailer && (c == 'c' || c == 't'); h.keep {
		h.encoding, h.cr = c == 't', false
		h.field, h.matched, h.value = fieldName, 0, 0
	}
}

// read follows b, more of a field line that may name the framing, its LF left out,
// as fasthttp reads the line: the name in any case, then at once its colon, the
// value between blanks, the CR.
func (h *heads) read(b []byte) {
	for i := 0; i < len(b); {
		if h.cr {
			// A CR inside the line, which fasthttp refuses in a value.
			h.unsure, h.keep = true, false
			return
		}
		switch h.field {
		case fieldName:
			name := lengthName
			if h.encoding {
				name = encodingName
			}
			k := int(h.matched)
			for ; i < len(b) && k < len(name); i, k = i+1, k+1 {
				// The name's bytes are lower-case letters and '-', which a CR
				// also turns into with 0x20 set.
				if c := b[i]; c|0x20 != name[k] || c == '\r' {
					h.keep = false
					return
				}
			}
			h.matched = uint8(k)
			if k == len(name) {
				h.field = fieldColon
			}
		case fieldColon, fieldNameBlank:
			c := b[i]
			i++
			switch {
			case c == ':' && h.field == fieldColon:
				h.field = fieldBlank
			case c == ' ':
				h.field = fieldNameBlank
			case c == ':' || c == '\t':
				// Blanks before the colon, which fasthttp refuses.
				h.unsure, h.keep = true, false
				return
			default:
				// Another name, a space in it maybe.
				h.keep = false
				return
			}
		case fieldBlank, fieldTail:
			for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
				i++
			}
			switch {
			case i == len(b):
			case b[i] == '\r':
				h.cr = true
				i++
			case h.field == fieldTail:
				// A blank inside the value.
				h.unsure, h.keep = true, false
				return
			default:
				h.field, h.matched, h.value = fieldValue, 0, 0
				if i = h.readValue(b, i); i < 0 {
					return
				}
			}
		case fieldValue:
			if i = h.readValue(b, i); i < 0 {
				return
			}
		}
	}
}

// readValue reads the value of a framing field from b[i:]: "chunked" in any case, or
// the digits of a Content-Length short of overflowing (which fasthttp refuses), up to
// a blank or a CR. It returns where it stopped in b, or -1 at a byte fasthttp
// refuses in the value.
func (h *heads) readValue(b []byte, i int) int {
	if h.encoding {
		k := int(h.matched)
		for ; i < len(b) && k < len(chunkedName) && b[i]|0x20 == chunkedName[k]; i, k = i+1, k+1 {
		}
		h.matched = uint8(k)
	} else {
		v := h.value
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9' && v <= (math.MaxInt64-9)/10; i++ {
			v = v*10 + int64(b[i]-'0')
		}
		h.value = v
	}
	if i == len(b) {
		return i
	}
	switch b[i] {
	case ' ', '\t':
		h.field = fieldTail
	case '\r':
		h.cr = true
	default:
		h.unsure, h.keep = true, false
		return -1
	}
	return i + 1
}

// fold is a line that begins with a blank after a framing field line (obs-fold),
// which fasthttp joins to that line's value with a space between them: a value
// empty so far becomes the folded line's; any other would hold a blank inside or at
// its end, which fasthttp refuses.
func (h *heads) fold() {
	if h.field == fieldBlank {
		h.cr = false
		return
	}
	h.unsure, h.keep = true, false
}

// commit reads the framing the framing field line just ended names, the next line
// showing that nothing is folded onto it. A line whose name has no colon after it is
// refused by fasthttp, and names nothing.
func (h *heads) commit() {
	h.keep = false
	switch {
	case h.field < fieldBlank:
	case h.encoding:
		if h.chunked || int(h.matched) != len(chunkedName) {
			// Twice, or another coding: fasthttp refuses the request, or frames
			// it by its Content-Length (identity) and the gateway closes the
			// connection after it.
			h.unsure = true
		}
		h.chunked = true
	case h.field == fieldBlank || h.length >= 0:
		// Empty, or twice.
		h.unsure = true
	default:
		h.length = h.value
	}
}

const (
	lengthName   = "content-length"
	encodingName = "transfer-encoding"
	chunkedName  = "chunked"
)

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
