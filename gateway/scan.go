package gateway

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// fields are what the gateway reads of a request body; everything else is forwarded
// untouched.
type fields struct {
	model         [2]int
	streamOptions [2]int
	stream        bool
	includeUsage  bool
	maxTokens     int64
	user          [2]int
	temperature   [2]int
	// promptBytes is the size of messages/prompt/input, for token estimates.
	promptBytes int
}

// scanBody reads the fields the pipeline needs in one pass over body. It returns nil or
// the error to answer with.
func scanBody(body []byte, f *fields) *apiError {
	*f = fields{model: [2]int{-1, -1}, streamOptions: [2]int{-1, -1}, user: [2]int{-1, -1}, temperature: [2]int{-1, -1}}
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		if jsonscan.Valid(body) {
			return &errNotObject
		}
		return &errMalformed
	}
	var keyBuf [32]byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		off := it.ValueOffset()
		if bytes.IndexByte(k, '\\') >= 0 {
			// Upstreams decode "mod\u0065l" as "model": so must the gateway, or a
			// client could set a field it rewrites or reads behind its back.
			k = unescapeKey(keyBuf[:0], k)
		}
		switch string(k) {
		case "model":
			if !jsonscan.IsString(v) {
				return &errModelType
			}
			if f.model[0] >= 0 {
				// The gateway rewrites one "model"; a parser that keeps the first of
				// two would see the client's.
				return &errModelTwice
			}
			f.model = [2]int{off, off + len(v)}
		case "stream":
			b, ok := jsonscan.Bool(v)
			if !ok && !jsonscan.IsNull(v) {
				return &errStreamType
			}
			f.stream = b
		case "stream_options":
			f.streamOptions = [2]int{off, off + len(v)}
			if raw, ok := jsonscan.Field(v, "include_usage"); ok {
				f.includeUsage, _ = jsonscan.Bool(raw)
			}
		case "max_tokens", "max_completion_tokens":
			if n, ok := jsonscan.Int(v); ok && n > 0 {
				// Far above any model's context, and low enough that the token
				// estimate built on it cannot overflow.
				f.maxTokens = min(n, 1<<40)
			}
		case "user":
			if jsonscan.IsString(v) {
				f.user = [2]int{off + 1, off + len(v) - 1}
			}
		case "temperature":
			f.temperature = [2]int{off, off + len(v)}
		case "messages", "prompt", "input":
			f.promptBytes += len(v)
		default:
			if len(k) == len("model") && bytes.EqualFold(k, strModel) {
				// Go's encoding/json, behind some upstreams, reads "Model" as
				// "model": the gateway would rewrite one and the upstream use the
				// other.
				return &errModelCase
			}
		}
	}
	if it.Err() != nil {
		return &errMalformed
	}
	for _, c := range body[it.End():] {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return &errMalformed
		}
	}
	if f.model[0] < 0 {
		return &errNoModel
	}
	return nil
}

var strModel = []byte("model")

// unescapeKey decodes a member name that holds escapes (k is the name between its
// quotes) into dst; one that does not decode is returned as it is, and the iterator
// reports the body malformed.
func unescapeKey(dst, k []byte) []byte {
	q := make([]byte, 0, len(k)+2)
	q = append(append(append(q, '"'), k...), '"')
	if out, ok := jsonscan.AppendUnquote(dst, q); ok {
		return out
	}
	return k
}
