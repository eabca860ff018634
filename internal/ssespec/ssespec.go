// Package ssespec reads a Server-Sent Events stream as the WHATWG specification has
// it, the way a client of the gateway does, for tests that check what a client reads.
package ssespec

import "bytes"

// Events parses b as the WHATWG spec (and every SDK built on it: browsers'
// EventSource, openai-python's SSEDecoder, which splits with bytes.splitlines) does:
// a line ends at CRLF, LF or a lone CR; data lines join with LF; a blank line
// dispatches the event. It returns the data of each event that had a data field.
func Events(b []byte) []string {
	var out []string
	var data []byte
	seen := false
	for len(b) > 0 {
		end, next := len(b), len(b)
		if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
			end, next = i, i+1
			if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
				next = i + 2
			}
		}
		line := b[:end]
		b = b[next:]
		if len(line) == 0 {
			if seen {
				out = append(out, string(data))
			}
			data, seen = data[:0], false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		if string(field) == "data" {
			if seen {
				data = append(data, '\n')
			}
			data = append(data, value...)
			seen = true
		}
	}
	return out
}
