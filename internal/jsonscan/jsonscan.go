// Package jsonscan walks JSON objects in one pass without decoding them.
//
// The gateway forwards request bodies it only needs a few fields of; decoding a
// chat request with a long prompt into Go values costs microseconds and allocations
// per request, while a validating skip over the same bytes costs a fraction of that.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// ErrSyntax reports bytes that are not valid JSON.
var ErrSyntax = errors.New("invalid JSON")

// ErrDepth reports nesting deeper than MaxDepth.
var ErrDepth = errors.New("JSON nested too deeply")

// MaxDepth bounds nesting so a hostile body cannot exhaust the stack.
const MaxDepth = 512

// Iter iterates over the members of one JSON object.
type Iter struct {
	b     []byte
	pos   int
	first bool
	err   error
	ks    int
	vs    int
}

// Reset points the iterator at the object that starts at the first non-space byte of b.
func (it *Iter) Reset(b []byte) error {
	*it = Iter{b: b, first: true}
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		it.err = ErrSyntax
		return it.err
	}
	it.pos = i + 1
	return nil
}

// Next returns the next member: its raw key (without quotes, escapes left as they are)
// and its raw value (strings keep their quotes). ok is false at the end of the object or
// on error; Err tells which.
func (it *Iter) Next() (key, value []byte, ok bool) {
	if it.err != nil {
		return nil, nil, false
	}
	b := it.b
	i := SkipSpace(b, it.pos)
	if i >= len(b) {
		it.err = ErrSyntax
		return nil, nil, false
	}
	if b[i] == '}' {
		it.pos = i + 1
		it.err = errEnd
		return nil, nil, false
	}
	if !it.first {
		if b[i] != ',' {
			it.err = ErrSyntax
			return nil, nil, false
		}
		i = SkipSpace(b, i+1)
	}
	it.first = false
	if i >= len(b) || b[i] != '"' {
		it.err = ErrSyntax
		return nil, nil, false
	}
	ke, err := skipString(b, i)
	if err != nil {
		it.err = err
		return nil, nil, false
	}
	key = b[i+1 : ke-1]
	it.ks = i
	i = SkipSpace(b, ke)
	if i >= len(b) || b[i] != ':' {
		it.err = ErrSyntax
		return nil, nil, false
	}
	i = SkipSpace(b, i+1)
	ve, err := Skip(b, i)
	if err != nil {
		it.err = err
		return nil, nil, false
	}
	it.vs = i
	it.pos = ve
	return key, b[i:ve], true
}

// KeyOffset is the offset in the scanned bytes of the opening quote of the key Next
// last returned.
func (it *Iter) KeyOffset() int { return it.ks }

// ValueOffset is the offset in the scanned bytes of the value Next last returned.
func (it *Iter) ValueOffset() int { return it.vs }

// End is the offset just past the object once Next has returned false without error.
func (it *Iter) End() int { return it.pos }

// Err is nil when the object was read to its end, else why it stopped.
func (it *Iter) Err() error {
	if it.err == errEnd {
		return nil
	}
	return it.err
}

var errEnd = errors.New("end")

// Valid reports whether b holds exactly one JSON value, with optional surrounding space.
func Valid(b []byte) bool {
	i := SkipSpace(b, 0)
	e, err := Skip(b, i)
	if err != nil {
		return false
	}
	return SkipSpace(b, e) == len(b)
}

// Skip validates the JSON value starting at b[i] and returns the offset just past it.
func Skip(b []byte, i int) (int, error) {
	return skip(b, i, 0)
}

func skip(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, ErrSyntax
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		if depth >= MaxDepth {
			return i, ErrDepth
		}
		i = SkipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, ErrSyntax
			}
			var err error
			if i, err = skipString(b, i); err != nil {
				return i, err
			}
			i = SkipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, ErrSyntax
			}
			if i, err = skip(b, SkipSpace(b, i+1), depth+1); err != nil {
				return i, err
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, ErrSyntax
			}
			if b[i] == '}' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, ErrSyntax
			}
			i = SkipSpace(b, i+1)
		}
	case c == '[':
		if depth >= MaxDepth {
			return i, ErrDepth
		}
		i = SkipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skip(b, i, depth+1); err != nil {
				return i, err
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, ErrSyntax
			}
			if b[i] == ']' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, ErrSyntax
			}
			i = SkipSpace(b, i+1)
		}
	case c == 't':
		return skipLit(b, i, "true")
	case c == 'f':
		return skipLit(b, i, "false")
	case c == 'n':
		return skipLit(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	}
	return i, ErrSyntax
}

func skipLit(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, ErrSyntax
	}
	return i + len(lit), nil
}

func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, ErrSyntax
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, ErrSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return i, ErrSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return i, ErrSyntax
		}
	}
	return i, nil
}

// skipString validates the string whose opening quote is at b[i] and its escapes, and
// returns the offset after the closing quote. Invalid UTF-8 passes, as it does in
// encoding/json: the gateway forwards bytes, it does not police their encoding.
func skipString(b []byte, i int) (int, error) {
	i++
	for i < len(b) {
		// Eight bytes at a time over the plain run of the string: prompts and
		// answers are mostly text between the bytes that need a look.
		for i+8 <= len(b) {
			m := stringStops(binary.LittleEndian.Uint64(b[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return i, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex4(b[i+2:i+6]) {
					return i, ErrSyntax
				}
				i += 6
			default:
				return i, ErrSyntax
			}
		case c < 0x20:
			return i, ErrSyntax
		default:
			i++
		}
	}
	return i, ErrSyntax
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// stringStops flags, in the high bit of each byte of the little-endian word x, the
// bytes a string scan must stop at: '"', '\\' and control bytes. Bytes above the
// lowest flagged one may be flagged wrongly (a borrow carries upward), so only the
// lowest flag is exact, which is the one the scan uses.
func stringStops(x uint64) uint64 {
	q := x ^ (ones * '"')
	s := x ^ (ones * '\\')
	return ((q-ones)&^q | (s-ones)&^s | (x-ones*0x20)&^x) & highs
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if HexDigit(c) < 0 {
			return false
		}
	}
	return true
}

// SkipSpace returns the index of the first byte at or after i that is not JSON
// Array walks the elements of a JSON array whose bytes were validated already (the
// value of a member Iter returned): it only finds the boundaries.
type Array struct {
	b     []byte
	pos   int
	first bool
}

// Reset points a at raw and reports whether raw is an array.
func (a *Array) Reset(raw []byte) bool {
	if len(raw) < 2 || raw[0] != '[' {
		return false
	}
	*a = Array{b: raw, pos: 1, first: true}
	return true
}

// Next returns the next element's raw bytes; ok is false after the last.
func (a *Array) Next() (elem []byte, ok bool) {
	i := SkipSpace(a.b, a.pos)
	if i >= len(a.b) || a.b[i] == ']' {
		return nil, false
	}
	if !a.first {
		if a.b[i] != ',' {
			return nil, false
		}
		i = SkipSpace(a.b, i+1)
	}
	a.first = false
	e, err := Skip(a.b, i)
	if err != nil {
		return nil, false
	}
	a.pos = e
	return a.b[i:e], true
}

// SkipSpace returns the index of the first byte of b at or after i that is not JSON
// whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// IsString reports whether raw is a JSON string value.
func IsString(raw []byte) bool { return len(raw) >= 2 && raw[0] == '"' }

// IsNull reports whether raw is the JSON null literal.
func IsNull(raw []byte) bool { return len(raw) == 4 && string(raw) == "null" }

// Bool reads a raw true or false.
func Bool(raw []byte) (v, ok bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// Int reads a raw JSON number that is a whole number fitting in int64.
func Int(raw []byte) (int64, bool) {
	if len(raw) == 0 || len(raw) > 19 {
		return 0, false
	}
	neg := raw[0] == '-'
	s := raw
	if neg {
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	// Accumulated as a negative number, whose range reaches MinInt64; a step past it
	// is an overflow.
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n < (math.MinInt64+d)/10 {
			return 0, false
		}
		n = n*10 - d
	}
	if !neg {
		if n == math.MinInt64 {
			return 0, false
		}
		n = -n
	}
	return n, true
}

// Count reads a raw JSON number that is a whole number, written as an integer or not
// (5000, 5000.0, 5e3), or a string holding an integer as pydantic's lax mode, behind
// vLLM, reads one ("5000", " 5000 ", "+5000", "5_000", "5000.0", "0005000";
// countString): all are a count to vLLM, so a client cannot write its max_tokens or n
// in a form the estimate misses and the upstream honours. It is capped at limit; n is
// 0 with ok false for anything else, a fraction included.
func Count(raw []byte, limit int64) (n int64, ok bool) {
	if n, ok := Int(raw); ok {
		return min(n, limit), true
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		s := raw[1 : len(raw)-1]
		if bytes.IndexByte(s, '\\') >= 0 {
			var buf [64]byte
			u, ok := AppendUnquote(buf[:0], raw)
			if !ok {
				return 0, false
			}
			s = u
		}
		return countString(s, limit)
	}
	f, ok := Float(raw)
	if !ok || f != math.Trunc(f) || math.IsInf(f, 0) {
		return 0, false
	}
	if f >= float64(limit) {
		return limit, true
	}
	return int64(f), true
}

// CountText reads s, the text of a string (a JSON string's, decoded, or a YAML
// scalar's), as pydantic's lax mode reads one for an int field: countString.
func CountText(s []byte, limit int64) (int64, bool) { return countString(s, limit) }

// countString reads s, a JSON string's text, as pydantic-core's str_as_int does:
// Unicode space around it, one sign, digits with single underscores between them,
// leading zeros, and a fraction of zeros only ("5000.0", not "5000." nor "5e3"). The
// value is capped at limit (and at -limit below), where pydantic reads any length.
func countString(s []byte, limit int64) (int64, bool) {
	s = bytes.TrimFunc(s, unicode.IsSpace)
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg, s = s[0] == '-', s[1:]
	}
	var n int64
	digits := 0
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			// Between two digits only.
			if i == 0 || s[i-1] == '_' || i+1 == len(s) || s[i+1] < '0' || s[i+1] > '9' {
				return 0, false
			}
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		digits++
		switch {
		case n > limit:
		case n > (math.MaxInt64-9)/10:
			n = math.MaxInt64
		default:
			n = n*10 + int64(c-'0')
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) {
		if s[i] != '.' || i+1 == len(s) {
			return 0, false
		}
		for _, c := range s[i+1:] {
			if c != '0' {
				return 0, false
			}
		}
	}
	n = min(n, limit)
	if neg {
		n = -n
	}
	return n, true
}

// Float reads a raw JSON number.
func Float(raw []byte) (float64, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// AppendUnquote appends the decoded contents of the raw JSON string to dst. ok is false
// when raw is not a well-formed string.
func AppendUnquote(dst, raw []byte) (out []byte, ok bool) {
	if !IsString(raw) || raw[len(raw)-1] != '"' {
		return dst, false
	}
	return AppendUnescape(dst, raw[1:len(raw)-1])
}

// AppendUnescape appends the decoded contents of a JSON string, s being what stands
// between its quotes (a member name as Iter.Next returns it), to dst. ok is false when
// s has a malformed escape.
func AppendUnescape(dst, s []byte) (out []byte, ok bool) {
	for i := 0; i < len(s); {
		j := bytes.IndexByte(s[i:], '\\')
		if j < 0 {
			return append(dst, s[i:]...), true
		}
		dst = append(dst, s[i:i+j]...)
		i += j
		r, n := DecodeEscape(s, i)
		if n == 0 {
			return dst, false
		}
		dst = utf8.AppendRune(dst, r)
		i += n
	}
	return dst, true
}

// DecodeEscape decodes the escape s[i] (a backslash) begins, as encoding/json does:
// \" \\ \/ \b \f \n \r \t and \uXXXX, a surrogate pair as one character and a lone
// surrogate as U+FFFD. n is how many bytes of s the escape takes, 0 when it is
// malformed.
func DecodeEscape(s []byte, i int) (r rune, n int) {
	if i+1 >= len(s) {
		return 0, 0
	}
	switch s[i+1] {
	case '"', '\\', '/':
		return rune(s[i+1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		if len(s)-i < 6 || !isHex4(s[i+2:]) {
			return 0, 0
		}
		r, n = rune(hex4(s[i+2:])), 6
		if r >= 0xD800 && r < 0xDC00 && len(s)-i >= 12 && s[i+6] == '\\' && s[i+7] == 'u' && isHex4(s[i+8:]) {
			if lo := rune(hex4(s[i+8:])); lo >= 0xDC00 && lo < 0xE000 {
				return (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000, 12
			}
		}
		if r >= 0xD800 && r < 0xE000 {
			r = utf8.RuneError
		}
		return r, n
	}
	return 0, 0
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		v = v<<4 | uint16(HexDigit(c))
	}
	return v
}

// HexDigit is the value of the hex digit c, either case, or -1: for \u escapes here,
// and the percent-escapes and chunk sizes other packages read.
func HexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// AppendQuote appends s as a JSON string, escaping what JSON requires and the HTML
// characters, so any bytes can be embedded in a response body safely.
func AppendQuote(dst []byte, s string) []byte { return appendQuote(dst, s, true) }

// AppendQuoteNoHTML is AppendQuote leaving <, > and & as they are, as encoding/json
// does with SetEscapeHTML(false) and slog's JSON handler always does.
func AppendQuoteNoHTML(dst []byte, s string) []byte { return appendQuote(dst, s, false) }

// appendQuote escapes quote, backslash and control characters, writes invalid UTF-8
// as U+FFFD, escapes U+2028 and U+2029 (and with html <, > and &), and copies every
// run of bytes that needs nothing at once.
func appendQuote(dst []byte, s string, html bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!html || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + n
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, "89"[r-'\u2028'])
			start = i + n
		}
		i += n
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Field returns the raw value of the top-level member key of the object in b, scanning
// only as far as that member.
func Field(b []byte, key string) ([]byte, bool) {
	var it Iter
	if it.Reset(b) != nil {
		return nil, false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
	}
}

// AppendCompact appends raw, a JSON value, without the whitespace between its tokens
// (strings are kept as they are), so that it fits on one line.
func AppendCompact(dst, raw []byte) []byte {
	if bytes.IndexAny(raw, " \t\r\n") < 0 {
		return append(dst, raw...)
	}
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case in && c == '\\' && i+1 < len(raw):
			dst = append(dst, c, raw[i+1])
			i++
			continue
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
