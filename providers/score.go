package providers

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// ScoreSide reports whether v, one JSON value, is a side of a score call as vLLM's
// ScoreRequest union takes it: a string, a multimodal object ({"content": [...]}),
// or a list of both. The union skips a pair of members with any other value (an
// object without a content list, a number, null, a list of numbers) for the next
// pair, and so do the gateway's estimate and prefix hash.
func ScoreSide(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case '"':
		return true
	case '{':
		return scoreMultimodal(v)
	case '[':
		var a jsonscan.Array
		if !a.Reset(v) {
			return false
		}
		for {
			e, ok := a.Next()
			if !ok {
				return true
			}
			if len(e) == 0 || e[0] != '"' && !(e[0] == '{' && scoreMultimodal(e)) {
				return false
			}
		}
	}
	return false
}

// scoreMultimodal reports whether the object v is vLLM's ScoreMultiModalParam: its
// content a list.
func scoreMultimodal(v []byte) bool {
	c := MultimodalContent(v)
	return len(c) > 0 && c[0] == '['
}

// MultimodalContent is the content member of vLLM's multimodal object (a rerank's
// query or documents, a score call's item), nil without one: the last member of that
// name, its name's escapes decoded, as vLLM's parser reads it.
func MultimodalContent(v []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(v) != nil {
		return nil
	}
	var content []byte
	for {
		k, val, ok := it.Next()
		if !ok {
			return content
		}
		if bytes.IndexByte(k, '\\') >= 0 {
			var buf [32]byte
			if u, ok := jsonscan.AppendUnescape(buf[:0], k); ok {
				k = u
			}
		}
		if string(k) == "content" {
			content = val
		}
	}
}
