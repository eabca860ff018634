package mockllm

import (
	"bytes"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// onlySpaceAfter reports whether b holds nothing but white space from i on.
func onlySpaceAfter(b []byte, i int) bool { return jsonscan.SkipSpace(b, i) == len(b) }

// strLen is the decoded length of a raw JSON string, close enough for token
// estimates: a \uXXXX escape counts as one byte.
func strLen(raw []byte) int {
	if !jsonscan.IsString(raw) {
		return 0
	}
	n := len(raw) - 2
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] == '\\' {
			if raw[i+1] == 'u' {
				n -= 5
				i += 5
			} else {
				n--
				i++
			}
		}
	}
	return n
}

// contentBytes counts the text of a message content: a string, or an array of parts
// or blocks whose "text", tool "input" or tool_result "content" is counted.
func contentBytes(raw []byte) int {
	if jsonscan.IsString(raw) {
		return strLen(raw)
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		return 0
	}
	n := 0
	for {
		part, ok := a.Next()
		if !ok {
			return n
		}
		var it jsonscan.Iter
		if it.Reset(part) != nil {
			n += strLen(part)
			continue
		}
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			switch string(k) {
			case "text":
				n += strLen(v)
			case "content":
				n += contentBytes(v)
			case "input", "arguments":
				n += len(v)
			}
		}
	}
}

// messagesBytes sums contentBytes over a messages array; ok is false when raw is not
// an array of objects.
func messagesBytes(raw []byte) (n int, ok bool) {
	var a jsonscan.Array
	if !a.Reset(raw) {
		return 0, false
	}
	for {
		m, more := a.Next()
		if !more {
			return n, true
		}
		var it jsonscan.Iter
		if it.Reset(m) != nil {
			return 0, false
		}
		for {
			k, v, more := it.Next()
			if !more {
				break
			}
			if string(k) == "content" {
				n += contentBytes(v)
			}
		}
	}
}

// toolsBytes is what a tools array adds to a prompt's size: its JSON without the
// blanks between tokens (jsonscan.AppendCompact, into st.scratch; a chat template
// renders the tools' schemas as JSON text, so vLLM counts them in the prompt;
// Anthropic counts them in input_tokens), 0 for none (absent, null, [], or a value
// that is no array).
func (st *state) toolsBytes(raw []byte) int {
	if raw = bytes.TrimSpace(raw); len(raw) < 2 || raw[0] != '[' {
		return 0
	}
	st.scratch = jsonscan.AppendCompact(st.scratch[:0], raw)
	if n := len(st.scratch); n > 2 {
		return n
	}
	return 0
}

// appendUnquoted appends the decoded string raw to dst; ok is false when raw is no
// JSON string.
func appendUnquoted(dst, raw []byte) ([]byte, bool) {
	if !jsonscan.IsString(raw) {
		return dst, false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' {
			return jsonscan.AppendUnquote(dst, raw)
		}
	}
	return append(dst, body...), true
}

// appendQuoteBytes appends b as a JSON string. Bytes that need no escaping are copied
// as they are; the rest goes through jsonscan.AppendQuote so the escaping rules stay in
// one place.
func appendQuoteBytes(dst, b []byte) []byte {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			return jsonscan.AppendQuote(dst, string(b))
		}
	}
	dst = append(dst, '"')
	dst = append(dst, b...)
	return append(dst, '"')
}
