package gateway

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// The audio API's bodies (POST /v1/audio/transcriptions and /translations) are
// multipart/form-data (RFC 7578, framed as RFC 2046 §5.1 says). scanForm reads the
// few fields the gateway needs from such a body in place, as scanBody does for JSON:
// mime/multipart copies every part and allocates per header.
//
// Where the upstreams' parsers could read one body two ways (Go's mime/multipart
// takes the first of a repeated field, Starlette's form the last; Go ignores a
// Content-Disposition other than form-data, Starlette does not look), the body is
// refused rather than read one way: the gateway must not route on a model, or expect
// a stream, that the upstream reads otherwise. Every body scanForm takes, Go's
// mime/multipart reads with the same parts and values (FuzzScanForm holds it to
// that), but for a preamble or boundary line over 4 KiB, which Go's reader cannot
// read (its buffer's size, not a rule of the format).

// Limits of the scan. Starlette (in front of vLLM) takes at most 1,000 fields and
// 1,000 files; 16 KiB of headers is many times what any client writes for a part.
const (
	formMaxParts       = 1000
	formMaxHeaderBytes = 16 << 10
	formMaxModelBytes  = 256
	formMaxBoundary    = 70 // RFC 2046 §5.1.1
	// formMaxParams bounds the parameters of a Content-Type or Content-Disposition
	// (clients write two at most), so that repeated ones are found without a map.
	formMaxParams = 8
)

// The scan's errors. Their messages go to the client in a 400 invalid_request_error:
// they say what is wrong in plain words and never quote the body. Those about one of
// the fields the gateway reads are formErrors, which name it in the error's param.
var (
	errFormBoundary         = errors.New("the multipart boundary must be 1 to 70 characters that RFC 2046 allows")
	errFormNoDelimiter      = errors.New("the multipart body does not contain the boundary its Content-Type names")
	errFormEmpty            = errors.New("the multipart body has no parts")
	errFormTruncated        = errors.New("the multipart body ends before its closing boundary")
	errFormBoundaryLine     = errors.New("a boundary line of the multipart body has other text after the boundary")
	errFormHeader           = errors.New("a part of the multipart body has a malformed header line")
	errFormHeaderSize       = errors.New("a part of the multipart body has more than 16 KiB of headers")
	errFormParts            = errors.New("the multipart body has more than 1000 parts")
	errFormNoName           = errors.New("a part of the multipart body has no Content-Disposition form-data header with a field name")
	errFormDisposition      = errors.New("a part of the multipart body has a malformed or repeated Content-Disposition header")
	errFormEscapedName      = errors.New("a part of the multipart body escapes its field name in a way servers read differently")
	errFormModel            = &formError{"model", "the model field must be valid UTF-8 on one line, at most 256 bytes"}
	errFormModelTwice       = &formError{"model", "the multipart body gives the model field more than once"}
	errFormFileTwice        = &formError{"file", "the multipart body has more than one file part"}
	errFormStream           = &formError{"stream", "the stream field must be true or false"}
	errFormStreamTwice      = &formError{"stream", "the multipart body gives the stream field more than once"}
	errFormStreamUsage      = &formError{"stream_include_usage", "the stream_include_usage field must be true or false"}
	errFormStreamUsageTwice = &formError{"stream_include_usage", "the multipart body gives the stream_include_usage field more than once"}
	errFormFormatTwice      = &formError{"response_format", "the multipart body gives the response_format field more than once"}
	errFormPromptTwice      = &formError{"prompt", "the multipart body gives the prompt field more than once"}
	// errFormFieldFile, by field, is a text field sent as a file.
	errFormFieldFile = [...]*formError{
		formModel:       {"model", "the model field must be text, not a file"},
		formStream:      {"stream", "the stream field must be text, not a file"},
		formStreamUsage: {"stream_include_usage", "the stream_include_usage field must be text, not a file"},
		formFormat:      {"response_format", "the response_format field must be text, not a file"},
		formPrompt:      {"prompt", "the prompt field must be text, not a file"},
	}
)

// formError is a scan error about the field param.
type formError struct{ param, msg string }

func (e *formError) Error() string { return e.msg }

// formFields are what the gateway reads of an audio API body; the rest is forwarded
// untouched. Spans are offsets into the scanned body.
type formFields struct {
	model [2]int // span of the "model" part's value in body (raw bytes, no quotes); {-1,-1} when absent
	// stream is the "stream" part read as FastAPI and pydantic read a form bool
	// (formBool); false without the part.
	stream bool
	// streamIncludeUsage is vLLM's stream_include_usage, read as stream is.
	streamIncludeUsage bool
	responseFormat     [2]int // span of response_format's value, {-1,-1} when absent
	fileBytes          int    // size of the "file" part's content; -1 when there is no file part
	textBytes          int    // size of the "prompt" part's value (0 without)
	parts              int    // number of parts
}

// The fields scanForm reads, by the part name that gives each.
const (
	formOther = iota
	formModel
	formFile
	formStream
	formStreamUsage
	formFormat
	formPrompt
	formEscaped // a name that spells one of the above only once unescaped
)

var formFieldNames = [...]string{
	formModel:       "model",
	formFile:        "file",
	formStream:      "stream",
	formStreamUsage: "stream_include_usage",
	formFormat:      "response_format",
	formPrompt:      "prompt",
}

// formBoundary returns the boundary parameter of a multipart/form-data Content-Type
// value (RFC 2045 §5.1 syntax: type, subtype and parameter names in any case,
// parameters in any order, whitespace around ";" and "=" as Go's mime package takes
// it). The boundary is a sub-slice of contentType. A quoted boundary holding a
// backslash is refused: its unescaped form would need a copy, parsers disagree on
// what "\x" means (Go keeps the backslash unless x is a tspecial), and no client
// writes one. ok is false for another media type, a missing or invalid boundary
// (RFC 2046: 1 to 70 bchars, not ending in a space), malformed parameters, a
// repeated one (Go's mime refuses two that differ, Python's email takes the last) or
// more than 8.
func formBoundary(contentType []byte) (boundary []byte, ok bool) {
	v := contentType
	i := formLWSP(v, 0)
	t := formTokenEnd(v, i)
	if !formFold(v[i:t], "multipart") || t == len(v) || v[t] != '/' {
		return nil, false
	}
	i = formTokenEnd(v, t+1)
	if !formFold(v[t+1:i], "form-data") {
		return nil, false
	}
	found := false
	var keys formKeys
	for {
		i = formLWSP(v, i)
		if i == len(v) {
			break
		}
		if v[i] != ';' {
			return nil, false
		}
		if i = formLWSP(v, i+1); i == len(v) {
			break // a trailing ";", which Go's mime takes too
		}
		key, val, esc, next, pok := formParam(v, i)
		if !pok || !keys.add(key) {
			return nil, false
		}
		i = next
		if formFold(key, "boundary") {
			if found || esc {
				return nil, false
			}
			found, boundary = true, val
		} else if formFold(formParamBase(key), "boundary") {
			return nil, false // RFC 2231 boundary*: Go and Python would read it instead
		}
	}
	if !found || !validBoundary(boundary) {
		return nil, false
	}
	return boundary, true
}

// validBoundary reports whether b is a boundary RFC 2046 §5.1.1 allows: 1 to 70
// bchars, the last not a space.
func validBoundary(b []byte) bool {
	if len(b) == 0 || len(b) > formMaxBoundary || b[len(b)-1] == ' ' {
		return false
	}
	for _, c := range b {
		if !formBchar(c) {
			return false
		}
	}
	return true
}

// scanForm reads f from a multipart/form-data body with the given boundary. On an
// error f is left part filled.
//
// Line endings: CRLF as RFC 2046 says, or bare LF as Go's mime/multipart takes it:
// the first delimiter line decides for the whole body (a delimiter line ending in LF
// makes every delimiter "\n--boundary" and every header line end in LF). LF bodies
// come from hand-written requests (printf, test tools) and Go servers take them; the
// gateway reads from one exactly what Go's reader reads and forwards it untouched,
// so an upstream that wants CRLF (Starlette's python-multipart, in front of vLLM)
// refuses it with its own 400. Header lines are held to the body's ending: a CR in
// an LF body's header block, or a bare LF in a CRLF body's, is refused (Go would
// take both, python-multipart neither).
func scanForm(body, boundary []byte, f *formFields) error {
	*f = formFields{model: [2]int{-1, -1}, responseFormat: [2]int{-1, -1}, fileBytes: -1}
	if !validBoundary(boundary) {
		return errFormBoundary
	}
	var buf [4 + formMaxBoundary]byte
	delim := buf[:copy(buf[:], "\r\n--")+copy(buf[4:], boundary)]
	pos, lf, err := formFirstDelimiter(body, delim)
	if err != nil {
		return err
	}
	nl := 2
	if lf {
		delim, nl = delim[1:], 1
	}
	var seen [formEscaped]bool
	for {
		if f.parts++; f.parts > formMaxParts {
			return errFormParts
		}
		var p formPart
		blank, err := formHeaders(body, pos, lf, &p)
		if err != nil {
			return err
		}
		// The blank line's line ending may be the delimiter's own: a part with no
		// content (RFC 2046's body-part without [CRLF *OCTET]), as Go reads it.
		end, after, last, err := formPartEnd(body, blank, delim)
		if err != nil {
			return err
		}
		start := blank + nl
		if end < start {
			end = start
		}
		if err := f.take(&p, body, start, end, &seen); err != nil {
			return err
		}
		r := formLWSP(body, after)
		if last {
			if r == len(body) || formNL(body[r:], lf) {
				return nil // the epilogue is ignored
			}
			return errFormBoundaryLine
		}
		if formNL(body[r:], lf) {
			pos = r + nl
			continue
		}
		if r == len(body) || len(body)-r < nl && body[r] == '\r' {
			return errFormTruncated
		}
		return errFormBoundaryLine
	}
}

// take records the part p, whose content is body[start:end], in f.
func (f *formFields) take(p *formPart, body []byte, start, end int, seen *[formEscaped]bool) error {
	field := formFieldOf(p.name)
	switch field {
	case formOther:
		return nil
	case formEscaped:
		return errFormEscapedName
	}
	if seen[field] {
		switch field {
		case formModel:
			return errFormModelTwice
		case formFile:
			return errFormFileTwice
		case formStream:
			return errFormStreamTwice
		case formStreamUsage:
			return errFormStreamUsageTwice
		case formFormat:
			return errFormFormatTwice
		default:
			return errFormPromptTwice
		}
	}
	seen[field] = true
	if field == formFile {
		f.fileBytes = end - start
		return nil
	}
	// Starlette hands a part with a filename over as an upload, Go's form as a file:
	// neither is the text value the gateway would read.
	if p.filename {
		return errFormFieldFile[field]
	}
	v := body[start:end]
	var ok bool
	switch field {
	case formModel:
		if len(v) > formMaxModelBytes || bytes.IndexByte(v, '\r') >= 0 || bytes.IndexByte(v, '\n') >= 0 || !utf8.Valid(v) {
			return errFormModel
		}
		f.model = [2]int{start, end}
	case formStream:
		if f.stream, ok = formBool(v); !ok {
			return errFormStream
		}
	case formStreamUsage:
		if f.streamIncludeUsage, ok = formBool(v); !ok {
			return errFormStreamUsage
		}
	case formFormat:
		f.responseFormat = [2]int{start, end}
	case formPrompt:
		f.textBytes = end - start
	}
	return nil
}

// formBool reads a form value as a bool as vLLM's FastAPI and pydantic do: true for
// "true", "1", "yes", "on", "t", "y", false for "false", "0", "no", "off", "f", "n", in
// any case, around whitespace; an empty value is the field's default, false
// (FastAPI reads an empty form field as not given). ok is false for anything else.
// Trimming is the lenient reading: a value padded with spaces that the upstream
// refuses is refused there.
func formBool(v []byte) (val, ok bool) {
	if len(v) == 0 {
		return false, true
	}
	v = bytes.Trim(v, " \t\r\n\v\f")
	switch {
	case formFold(v, "true"), formFold(v, "1"), formFold(v, "yes"), formFold(v, "on"), formFold(v, "t"), formFold(v, "y"):
		return true, true
	case formFold(v, "false"), formFold(v, "0"), formFold(v, "no"), formFold(v, "off"), formFold(v, "f"), formFold(v, "n"):
		return false, true
	}
	return false, false
}

// formPart is what scanForm reads of a part's headers.
type formPart struct {
	name        []byte // the name parameter as written (between its quotes when quoted)
	filename    bool   // a filename (or RFC 2231 filename*) parameter is given
	disposition bool   // a Content-Disposition header was read
	cd          []byte // its value, read once the header block is whole
}

// formFirstDelimiter finds the first delimiter line, skipping the preamble as Go's
// reader does (a line that begins with "--boundary" but is not a delimiter line is
// preamble), and returns where the first part's headers begin and whether the body
// ends its lines in bare LF. delim is "\r\n--" and the boundary.
func formFirstDelimiter(body, delim []byte) (pos int, lf bool, err error) {
	dash := delim[2:]
	from, at := 0, 0
	if !bytes.HasPrefix(body, dash) {
		at = -1
	}
	for {
		if at < 0 {
			i := bytes.Index(body[from:], delim[1:])
			if i < 0 {
				return 0, false, errFormNoDelimiter
			}
			at = from + i + 1
		}
		a := at + len(dash)
		r := formLWSP(body, a)
		if r < len(body) && body[r] == '\n' {
			return r + 1, true, nil
		}
		if formNL(body[r:], false) {
			return r + 2, false, nil
		}
		if len(body)-a >= 2 && body[a] == '-' && body[a+1] == '-' {
			// A close delimiter before any part: Go reads an empty form, RFC 2046
			// wants one part at least, and the audio API needs a file.
			if r = formLWSP(body, a+2); r == len(body) || formNL(body[r:], false) {
				return 0, false, errFormEmpty
			}
		}
		from, at = a, -1
	}
}

// formPartEnd finds the delimiter that ends a part, searching body from from (the
// part's blank line), and returns where the content ends, where the text after
// "--boundary" begins (after its "--" for the close delimiter) and whether it is the
// close delimiter. As in Go's reader, "--boundary" followed by anything but
// whitespace, a line ending or "--" is content: a boundary is never a prefix of a
// longer word.
func formPartEnd(body []byte, from int, delim []byte) (end, after int, last bool, err error) {
	for {
		i := bytes.Index(body[from:], delim)
		if i < 0 {
			return 0, 0, false, errFormTruncated
		}
		end = from + i
		a := end + len(delim)
		if a == len(body) {
			return 0, 0, false, errFormTruncated
		}
		switch body[a] {
		case ' ', '\t', '\r', '\n':
			return end, a, false, nil
		case '-':
			if a+1 == len(body) {
				return 0, 0, false, errFormTruncated
			}
			if body[a+1] == '-' {
				return end, a + 2, true, nil
			}
		}
		from = a
	}
}

// formHeaders reads the header block of a part at body[pos:] into p and returns where
// its blank line begins. Folded (obs-fold) lines are refused: Go unfolds them,
// python-multipart does not.
func formHeaders(body []byte, pos int, lf bool, p *formPart) (int, error) {
	limit := min(len(body), pos+formMaxHeaderBytes)
	for {
		i := bytes.IndexByte(body[pos:limit], '\n')
		if i < 0 {
			if limit < len(body) {
				return 0, errFormHeaderSize
			}
			return 0, errFormTruncated
		}
		line := body[pos : pos+i]
		if !lf {
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return 0, errFormHeader
			}
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			if !p.disposition {
				return 0, errFormNoName
			}
			return pos, formDisposition(p.cd, p)
		}
		if err := formHeaderLine(line, p); err != nil {
			return 0, err
		}
		pos += i + 1
	}
}

// formHeaderLine reads one header line (without its line ending). Header names are
// RFC 9110 tokens (Go takes a space before the colon and then never finds the
// header under its name; refused here); values hold no control characters but tab,
// as Go's textproto checks.
func formHeaderLine(line []byte, p *formPart) error {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return errFormHeader
	}
	for _, c := range line[:colon] {
		if !formTchar(c) {
			return errFormHeader
		}
	}
	v := line[colon+1:]
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return errFormHeader
		}
	}
	if !formFold(line[:colon], "content-disposition") {
		return nil // Content-Type, Content-Transfer-Encoding and others are not read
	}
	// Go's reader takes the first of two, Starlette the last.
	if p.disposition {
		return errFormDisposition
	}
	p.disposition, p.cd = true, formTrimLWSP(v)
	return nil
}

// formDisposition reads a Content-Disposition value as Go's mime.ParseMediaType does,
// refusing what it would read as a part without a name (another type than form-data,
// a malformed or repeated parameter) and what parsers read differently: a repeated
// parameter (Go refuses two differing values, Python takes the last) and RFC 2231's
// name* (Go and Python's email decode it and read it as the name; RFC 7578 §4.2 bars
// it). Parameter names are read in any case.
func formDisposition(v []byte, p *formPart) error {
	i := formTokenEnd(v, 0)
	if !formFold(v[:i], "form-data") {
		return errFormNoName
	}
	var keys formKeys
	named := false
	for {
		i = formLWSP(v, i)
		if i == len(v) {
			break
		}
		if v[i] != ';' {
			return errFormDisposition
		}
		if i = formLWSP(v, i+1); i == len(v) {
			break // a trailing ";", which Go's mime takes too
		}
		key, val, _, next, ok := formParam(v, i)
		if !ok || !keys.add(key) {
			return errFormDisposition
		}
		i = next
		switch base := formParamBase(key); {
		case formFold(key, "name"):
			p.name, named = val, true
		case formFold(key, "filename"), formFold(base, "filename"):
			p.filename = true
		case formFold(base, "name"):
			return errFormDisposition
		}
	}
	if !named || len(p.name) == 0 {
		return errFormNoName
	}
	return nil
}

// formKeys are the parameter names of one header value, to refuse a repeated one:
// Go's mime refuses the whole value when two differ, Python's email takes the last.
type formKeys struct {
	keys [formMaxParams][]byte
	n    int
}

// add records key, reporting false when it is there already (in any ASCII case) or
// there are formMaxParams already.
func (k *formKeys) add(key []byte) bool {
	if k.n == len(k.keys) {
		return false
	}
	for _, seen := range k.keys[:k.n] {
		if formFoldBytes(seen, key) {
			return false
		}
	}
	k.keys[k.n] = key
	k.n++
	return true
}

// formParam reads a parameter, token "=" (token or quoted-string), at v[i:]; val is
// a quoted value between its quotes, escapes left in (esc says there are some).
func formParam(v []byte, i int) (key, val []byte, esc bool, next int, ok bool) {
	k := formTokenEnd(v, i)
	if k == i {
		return nil, nil, false, 0, false
	}
	key = v[i:k]
	i = formLWSP(v, k)
	if i == len(v) || v[i] != '=' {
		return nil, nil, false, 0, false
	}
	i = formLWSP(v, i+1)
	if i < len(v) && v[i] == '"' {
		// A backslash escapes the next byte (RFC 2045's quoted-pair). Go's mime
		// unescapes only tspecials and keeps the backslash before others, which ends
		// the string at the same quote.
		j := i + 1
		for ; j < len(v) && v[j] != '"'; j++ {
			if v[j] == '\\' {
				esc = true
				j++
			}
		}
		if j >= len(v) {
			return nil, nil, false, 0, false
		}
		return key, v[i+1 : j], esc, j + 1, true
	}
	j := formTokenEnd(v, i)
	if j == i {
		return nil, nil, false, 0, false
	}
	return key, v[i:j], false, j, true
}

// formParamBase is a parameter name up to its first "*" (RFC 2231's name*, name*0).
func formParamBase(key []byte) []byte {
	if i := bytes.IndexByte(key, '*'); i >= 0 {
		return key[:i]
	}
	return nil
}

// formFieldOf says which field a part name gives. A name written with backslashes
// or percent signs that spells one of them once unescaped (RFC 7578 §4.2 allows
// percent-encoding; some parsers unescape any "\x") is formEscaped: Go and Python
// read "mod\el" as written, another server may read model.
func formFieldOf(name []byte) int {
	switch string(name) {
	case "model":
		return formModel
	case "file":
		return formFile
	case "stream":
		return formStream
	case "stream_include_usage":
		return formStreamUsage
	case "response_format":
		return formFormat
	case "prompt":
		return formPrompt
	}
	if bytes.IndexByte(name, '\\') < 0 && bytes.IndexByte(name, '%') < 0 {
		return formOther
	}
	for _, s := range formFieldNames[formModel:] {
		if formNameLike(name, s) {
			return formEscaped
		}
	}
	return formOther
}

// formNameLike reports whether raw spells want when read leniently: a backslash
// escaping any byte, %XX a byte.
func formNameLike(raw []byte, want string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			i++
			c = raw[i]
		case c == '%' && i+2 < len(raw) && jsonscan.HexDigit(raw[i+1]) >= 0 && jsonscan.HexDigit(raw[i+2]) >= 0:
			c = byte(jsonscan.HexDigit(raw[i+1])<<4 | jsonscan.HexDigit(raw[i+2]))
			i += 2
		}
		if j == len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}

// formNL reports whether b begins with the body's line ending.
func formNL(b []byte, lf bool) bool {
	if lf {
		return len(b) > 0 && b[0] == '\n'
	}
	return len(b) > 1 && b[0] == '\r' && b[1] == '\n'
}

// formLWSP skips spaces and tabs from b[i:]: RFC 2046's transport padding, and the
// whitespace Go's mime skips between parameters as far as a header value holds it.
func formLWSP(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func formTrimLWSP(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	for j > i && (b[j-1] == ' ' || b[j-1] == '\t') {
		j--
	}
	return b[i:j]
}

// formTokenEnd returns the end of the RFC 2045 token at b[i:] (i when there is none).
func formTokenEnd(b []byte, i int) int {
	for i < len(b) && formMIMEToken(b[i]) {
		i++
	}
	return i
}

// formMIMEToken reports whether c may be in an RFC 2045 token: visible ASCII but
// tspecials.
func formMIMEToken(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=':
		return false
	}
	return true
}

// formTchar reports whether c may be in a header name (an RFC 9110 token).
func formTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// formBchar reports whether c may be in a boundary (RFC 2046 bchars).
func formBchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '\'', '(', ')', '+', '_', ',', '-', '.', '/', ':', '=', '?', ' ':
		return true
	}
	return false
}

// formFold reports whether b is s (lower case ASCII) in any ASCII case.
func formFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if formLower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// formFoldBytes reports whether a and b are equal in any ASCII case.
func formFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if formLower(a[i]) != formLower(b[i]) {
			return false
		}
	}
	return true
}

func formLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
