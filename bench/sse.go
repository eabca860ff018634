package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// sseReader splits a text/event-stream body into events and returns the
// data of each (the "data:" lines joined by '\n', as the SSE spec says).
// Comments, "event:", "id:" and "retry:" lines are skipped. The returned
// slice is valid until the next call.
type sseReader struct {
	r    *bufio.Reader
	data []byte
}

var (
	prefixData = []byte("data:")
	doneData   = []byte("[DONE]")
)

// errLineTooLong is returned for a line over the reader's buffer: no event
// the upstreams send comes near it, so it means a broken stream.
var errLineTooLong = errors.New("sse line too long")

// next returns the data of the next event that has any; io.EOF when the body
// ends. A final event without its blank line is still returned.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	have := false
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errLineTooLong
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0) {
			if have && errors.Is(err, io.EOF) {
				return s.data, nil
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if have {
				return s.data, nil
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		if bytes.HasPrefix(line, prefixData) {
			v := line[len(prefixData):]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			if have {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, v...)
			have = true
		}
		if err != nil {
			// io.EOF after a last line with no newline.
			if have {
				return s.data, nil
			}
			return nil, err
		}
	}
}

// hasContent reports whether a chat chunk carries generated text: a
// non-empty "content" string (the first chunk's role-only delta has "").
func hasContent(chunk []byte) bool {
	for off := 0; ; {
		i := bytes.Index(chunk[off:], keyContent)
		if i < 0 {
			return false
		}
		j := off + i + len(keyContent)
		for j < len(chunk) && (chunk[j] == ' ' || chunk[j] == ':') {
			j++
		}
		if j+1 < len(chunk) && chunk[j] == '"' && chunk[j+1] != '"' {
			return true
		}
		off = j
	}
}

// isErrorEvent reports whether a stream's event is an error rather than a chunk:
// a JSON object with a top-level "error" member, as OpenAI and vLLM send when the
// upstream fails mid-stream (and the gateway passes on, counting that stream as
// failed even when [DONE] follows). The substring test keeps the walk off every
// ordinary chunk; the walk keeps a nested "error" (a tool call's arguments, a
// choice's own field) from counting.
func isErrorEvent(data []byte) bool {
	return bytes.Contains(data, keyError) && hasMember(data, "error")
}

// hasMember reports whether b is exactly one JSON object (space around it
// allowed) with a top-level member named key, compared as written.
func hasMember(b []byte, key string) bool {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return false
	}
	found := false
	for {
		k, _, ok := it.Next()
		if !ok {
			break
		}
		found = found || string(k) == key
	}
	return found && it.Err() == nil && jsonscan.SkipSpace(b, it.End()) == len(b)
}

// isMessage reports whether b is one Messages API answer: exactly one JSON object
// (space around it allowed) whose top-level "type" is "message" and whose "usage" is
// an object holding "output_tokens", as every message the API answers has. A chat
// completion, the API's error body ("type":"error"), a usage nested elsewhere or a
// body cut short is none.
func isMessage(b []byte) bool {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return false
	}
	message, usage := false, false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			message = string(v) == `"message"`
		case "usage":
			usage = hasMember(v, "output_tokens")
		}
	}
	return message && usage && it.Err() == nil && jsonscan.SkipSpace(b, it.End()) == len(b)
}

var (
	keyContent = []byte(`"content"`)
	keyError   = []byte(`"error"`)
)
