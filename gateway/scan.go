package gateway

import (
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
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		off := it.ValueOffset()
		switch string(k) {
		case "model":
			if !jsonscan.IsString(v) {
				return &errModelType
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
				f.maxTokens = n
			}
		case "user":
			if jsonscan.IsString(v) {
				f.user = [2]int{off + 1, off + len(v) - 1}
			}
		case "temperature":
			f.temperature = [2]int{off, off + len(v)}
		case "messages", "prompt", "input":
			f.promptBytes += len(v)
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
