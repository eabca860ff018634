package providers

import (
	"bytes"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// A custom tool ({"type":"custom","name","description","format"}: Codex CLI's
// freeform apply_patch and exec) takes free-form text, not JSON arguments. Chat has
// no such tool: each goes up as a function taking one string parameter, input, its
// description saying so, and a chat call of it comes back as a custom_tool_call item
// whose input is that parameter's value (inputScan reads it from the arguments, as
// they stream). A custom_tool_call item of the history goes up as the call of that
// function it was, its custom_tool_call_output as the tool message answering it.
//
// A grammar format (lark or regex) cannot be enforced: chat completions constrain the
// whole answer or nothing, never one argument. The grammar goes to the model as text
// in the parameter's description, and the input comes back as the model wrote it;
// the client checks it as it checks any input (Codex's apply_patch answers a patch it
// cannot parse with an error the model reads and corrects).

var (
	// strCustomNote ends a custom tool's function description.
	strCustomNote = []byte(`This tool takes free-form text, not JSON: give its whole input, as it is, in the string parameter input.`)
	// strInputNote begins the description of the input parameter.
	strInputNote = []byte(`The tool's whole input, free-form text.`)
)

// customFormat reads a custom tool's format (raw, nil when absent or null): syntax
// and definition are a grammar's raw JSON strings, nil for text; ok is false for a
// format that is neither.
func customFormat(f []byte) (syntax, definition []byte, ok bool) {
	if f == nil {
		return nil, nil, true
	}
	var it jsonscan.Iter
	if it.Reset(f) != nil {
		return nil, nil, false
	}
	var typ []byte
	var buf keyBuf
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(keyName(k, &buf)) {
		case "type":
			typ = v
		case "syntax":
			syntax = v
		case "definition":
			definition = v
		}
	}
	switch {
	case isString(typ, "text"):
		return nil, nil, true
	case isString(typ, "grammar") && (isString(syntax, "lark") || isString(syntax, "regex")) && jsonscan.IsString(definition):
		return syntax, definition, true
	}
	return nil, nil, false
}

// appendCustomChatTool appends the chat function for the custom tool name (a raw JSON
// string, of namespace ns when ns is not nil) to the request's tools, n of which are
// written already: description (nil for none) and the grammar (syntax and definition,
// nil for text) go into its descriptions.
func appendCustomChatTool(dst []byte, n int, ns, name, description, syntax, definition []byte) []byte {
	dst = openChatTool(dst, n, ns, name)
	dst = append(dst, `,"description":"`...)
	if jsonscan.IsString(description) && len(description) > 2 {
		dst = append(dst, description[1:len(description)-1]...)
		dst = append(dst, `\n\n`...)
	}
	dst = append(dst, strCustomNote...)
	dst = append(dst, `","parameters":{"type":"object","properties":{"input":{"type":"string","description":"`...)
	dst = append(dst, strInputNote...)
	if definition != nil {
		dst = append(dst, ` It must match this `...)
		dst = append(dst, syntax[1:len(syntax)-1]...)
		dst = append(dst, ` grammar:\n`...)
		dst = append(dst, definition[1:len(definition)-1]...)
	}
	return append(dst, `"}},"required":["input"],"additionalProperties":false}}}`...)
}

// appendInputArguments appends the chat arguments of a freeform call whose input is
// the raw JSON string input: {"input":<input>}, as a JSON string.
func appendInputArguments(dst, input []byte) []byte {
	dst = append(dst, `"{\"input\":`...)
	start := 0
	for i, c := range input {
		if c == '"' || c == '\\' {
			dst = append(dst, input[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		}
	}
	dst = append(dst, input[start:]...)
	return append(dst, `}"`...)
}

// The states of an inputScan.
const (
	inputStart  uint8 = iota // before the object
	inputKey                 // before the member name
	inputName                // in the member name
	inputColon               // after the member name
	inputValue               // before the value
	inputString              // in the value
	inputDone                // after the value
	inputOther               // arguments of another shape
)

// inputScan reads the value of the input member of a chat call's arguments (JSON
// text, which a stream gives in pieces: feed each as it comes, then finish), as the
// inside of a JSON string: what the model wrote, its escapes kept. Arguments of
// another shape than {"input":"..."} (another first member, a value that is no
// string) are found out before any of it is given, and the caller takes the
// arguments' whole text instead. A piece that ends inside an escape, a surrogate
// pair or a UTF-8 sequence keeps that end for the next: each piece given is a JSON
// string's inside by itself, which a client decodes alone. What is no JSON (a raw
// control character, a backslash before no escape) is given escaped.
type inputScan struct {
	state uint8
	// name holds the member name read so far, n its length.
	name [5]byte
	n    int
	// esc holds an escape not ended, or ended as a high surrogate waiting for its
	// low one (then 6 bytes, and the next escape's after them); nEsc its length.
	esc  [12]byte
	nEsc int
	// cut holds a UTF-8 sequence the piece before ended in, nCut its length.
	cut  [3]byte
	nCut int
}

// found reports whether the arguments are of the shape {"input":"...}: what feed gave
// is the input.
func (s *inputScan) found() bool { return s.state == inputString || s.state == inputDone }

// inputPunct is the byte each state before the value waits for.
var inputPunct = [...]byte{inputStart: '{', inputKey: '"', inputColon: ':', inputValue: '"'}

// feed appends what text, the next piece of the arguments, gives of the input.
func (s *inputScan) feed(dst, text []byte) []byte {
	from := len(dst)
	if s.nCut > 0 {
		// A UTF-8 sequence cut at the piece before goes on here.
		dst = append(dst, s.cut[:s.nCut]...)
		s.nCut = 0
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch s.state {
		case inputStart, inputKey, inputColon, inputValue:
			if isSpace(c) {
				continue
			}
			if c != inputPunct[s.state] {
				s.state = inputOther
				return dst
			}
			s.state++
		case inputName:
			switch {
			case c == '"' && string(s.name[:s.n]) == "input":
				s.state = inputColon
			case c == '"' || c == '\\' || s.n == len(s.name):
				s.state = inputOther
				return dst
			default:
				s.name[s.n] = c
				s.n++
			}
		case inputString:
			var end bool
			if dst, end = s.char(dst, c); end {
				s.state = inputDone
				return dst
			}
		default:
			return dst
		}
	}
	if s.state != inputString || s.nEsc > 0 {
		return dst
	}
	// The last character's bytes, when they are not all there, wait for the rest.
	for k := len(dst) - 1; k >= from && k >= len(dst)-3; k-- {
		if dst[k]&0xC0 != 0x80 {
			if dst[k] >= utf8.RuneSelf && !utf8.FullRune(dst[k:]) {
				s.nCut = copy(s.cut[:], dst[k:])
				dst = dst[:k]
			}
			break
		}
	}
	return dst
}

// char appends c, a byte of the input string; end reports its closing quote.
func (s *inputScan) char(dst []byte, c byte) (out []byte, end bool) {
	if s.nEsc > 0 {
		var taken bool
		if dst, taken = s.escape(dst, c); taken {
			return dst, false
		}
	}
	switch {
	case c == '"':
		return dst, true
	case c == '\\':
		s.esc[0], s.nEsc = c, 1
	case c < 0x20:
		// A control character a model wrote raw, which JSON has no string with.
		dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	default:
		dst = append(dst, c)
	}
	return dst, false
}

// escape reads c, a byte after the escape begun in esc: taken reports whether it
// belongs to it; what of the escape is whole is appended.
func (s *inputScan) escape(dst []byte, c byte) (out []byte, taken bool) {
	n := s.nEsc
	switch {
	case n == 1:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.nEsc = 0
			return append(dst, '\\', c), true
		case 'u':
			s.esc[1], s.nEsc = c, 2
			return dst, true
		}
		// A backslash before no escape: the backslash itself.
		s.nEsc = 0
		return append(dst, '\\', '\\'), false
	case n < 6, n > 7:
		if jsonscan.HexDigit(c) < 0 {
			// \u without four hex digits: its text.
			from := 0
			if n >= 8 {
				// The high surrogate before it stands.
				dst = append(dst, s.esc[:6]...)
				from = 6
			}
			dst = append(dst, '\\', '\\')
			dst = append(dst, s.esc[from+1:n]...)
			s.nEsc = 0
			return dst, false
		}
		s.esc[n] = c
		s.nEsc++
		switch {
		case s.nEsc == 12, s.nEsc == 6 && !highSurrogate(s.esc[2:6]):
			dst = append(dst, s.esc[:s.nEsc]...)
			s.nEsc = 0
		}
		return dst, true
	case n == 6:
		if c == '\\' {
			s.esc[6], s.nEsc = c, 7
			return dst, true
		}
		// A high surrogate with no escape after it: as it is.
		dst = append(dst, s.esc[:6]...)
		s.nEsc = 0
		return dst, false
	}
	// n == 7: a backslash after a high surrogate.
	if c == 'u' {
		s.esc[7], s.nEsc = c, 8
		return dst, true
	}
	dst = append(dst, s.esc[:6]...)
	s.esc[0], s.nEsc = '\\', 1
	return s.escape(dst, c)
}

// highSurrogate reports whether hex, four hex digits, is a high surrogate.
func highSurrogate(hex []byte) bool {
	if hex[0] != 'd' && hex[0] != 'D' {
		return false
	}
	switch hex[1] {
	case '8', '9', 'a', 'b', 'A', 'B':
		return true
	}
	return false
}

// finish appends what the scan kept at the end of the arguments: a high surrogate
// alone as it is; an escape or a UTF-8 sequence cut short has no character, and is
// left out.
func (s *inputScan) finish(dst []byte) []byte {
	if s.nEsc >= 6 {
		dst = append(dst, s.esc[:6]...)
	}
	s.nEsc, s.nCut = 0, 0
	return dst
}

// appendCustomInput appends the input of a freeform call (a JSON string) whose chat
// arguments are args, a raw JSON value: the value of its input member, or the whole
// arguments' text when they are of another shape. dst past its length is scratch.
func appendCustomInput(dst, args []byte) []byte {
	var s inputScan
	at := len(dst)
	switch {
	case jsonscan.IsString(args):
		text, ok := jsonscan.AppendUnescape(dst, args[1:len(args)-1])
		if !ok {
			return append(dst, args...)
		}
		out := append(text, '"')
		from := len(out)
		out = s.finish(s.feed(out, text[at:]))
		if !s.found() {
			return append(out[:at], args...)
		}
		n := copy(out[at:], out[from-1:])
		return append(out[:at+n], '"')
	case len(args) > 0 && args[0] == '{':
		out := append(dst, '"')
		out = s.finish(s.feed(out, args))
		if !s.found() {
			return jsonscan.AppendQuote(out[:at], b2s(args))
		}
		return append(out, '"')
	}
	return append(dst, strEmptyString...)
}

// lookupCall finds the tool a chat call's name (a raw JSON string) names among tools
// (a JSON array of Responses API tools): a custom tool by its name, or a function or
// custom tool of a namespace by the name appendNamespaced wrote. fn and ns are its
// name and its namespace's (nil for none), raw JSON strings in tools; custom is set
// for a custom tool; ok is false when name names none of these (a function's name
// is itself).
func lookupCall(tools, name []byte) (fn, ns []byte, custom, ok bool) {
	var a jsonscan.Array
	if !a.Reset(tools) {
		return nil, nil, false, false
	}
	split := bytes.Contains(name, strNamespaceSep)
	for {
		raw, more := a.Next()
		if !more {
			return nil, nil, false, false
		}
		typ, _ := jsonscan.Field(raw, "type")
		n, _ := jsonscan.Field(raw, "name")
		switch {
		case !jsonscan.IsString(n):
		case isString(typ, "custom"):
			if bytes.Equal(n, name) {
				return n, nil, true, true
			}
		case split && isString(typ, "namespace"):
			if fn, custom, ok := namespaceMember(raw, n, name); ok {
				return fn, n, custom, true
			}
		}
	}
}

// namespaceMember finds the tool of namespace tool raw (named ns) that the chat name
// name (both raw JSON strings) names, "<ns>__<fn>": its name, and whether it is a
// custom tool.
func namespaceMember(raw, ns, name []byte) (fn []byte, custom, ok bool) {
	rest, found := bytes.CutPrefix(name[1:len(name)-1], ns[1:len(ns)-1])
	if rest, found = bytes.CutPrefix(rest, strNamespaceSep); !found {
		return nil, false, false
	}
	list, _ := jsonscan.Field(raw, "tools")
	var b jsonscan.Array
	if !b.Reset(list) {
		return nil, false, false
	}
	for {
		f, more := b.Next()
		if !more {
			return nil, false, false
		}
		if fname, _ := jsonscan.Field(f, "name"); jsonscan.IsString(fname) && bytes.Equal(fname[1:len(fname)-1], rest) {
			typ, _ := jsonscan.Field(f, "type")
			return fname, isString(typ, "custom"), true
		}
	}
}
