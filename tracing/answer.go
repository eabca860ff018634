package tracing

import (
	"bytes"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// maxFinishReasons bounds the finish reasons kept from one answer: one per
// choice, and a request asking for more choices than this is not worth a
// larger span.
const maxFinishReasons = 16

// Answer gathers what an upstream answered, from a whole body or from the
// chunks of a stream, in OpenAI's chat.completion, text_completion or
// embedding list form: the model that answered, the response's ID, each
// choice's finish reason and, with capture_content on, the first choice's
// text. Its zero value reads nothing; Start arms it for one upstream span.
type Answer struct {
	on, capture bool
	// responses is set for an answer of OpenAI's Responses API: a response
	// object, or its stream's events, whose status stands for the finish reason.
	responses bool
	// messages is set for an answer of Anthropic's Messages API: a message, or its
	// stream's events; its stop_reason stands for the finish reason.
	messages bool
	// streamed is set once an answer of the Responses API came as a stream: its
	// text is its deltas', not that of the responses its events carry.
	streamed  bool
	model, id []byte
	status    []byte
	reasons   []string
	text      []byte
}

// Start prepares a to read the answer to span's attempt. a reads nothing
// when span is not recording, so that a stream with tracing off pays no
// more than a flag test per chunk, and keeps the text only when
// capture_content is on.
func (a *Answer) Start(t *Tracing, span trace.Span) {
	a.on = span.IsRecording()
	a.capture = a.on && t.capture
	a.responses, a.messages, a.streamed = false, false, false
	a.model, a.id, a.status, a.reasons, a.text = a.model[:0], a.id[:0], a.status[:0], a.reasons[:0], a.text[:0]
}

// StartResponses is Start for an answer of the Responses API: its response's status
// is recorded as the finish reason (completed, incomplete, failed), and the text
// captured is its first message's (output_text), or its stream's text deltas.
func (a *Answer) StartResponses(t *Tracing, span trace.Span) {
	a.Start(t, span)
	a.responses = true
}

// StartMessages is Start for an answer of Anthropic's Messages API: its stop_reason
// is recorded as the finish reason, and the text captured is its text blocks', or
// its stream's text deltas.
func (a *Answer) StartMessages(t *Tracing, span trace.Span) {
	a.Start(t, span)
	a.messages = true
}

// Chunk reads one event of a stream. Its data is not kept.
func (a *Answer) Chunk(data []byte) {
	if a.on {
		a.chunk(data)
	}
}

// strFinishReason finds the finish_reason member; in a chunk's JSON it can
// only be a key, because a string value would escape its quotes.
var strFinishReason = []byte(`"finish_reason"`)

func (a *Answer) chunk(data []byte) {
	if a.responses {
		a.event(data)
		return
	}
	if a.messages {
		a.messageEvent(data)
		return
	}
	// Every chunk repeats the ID and model and carries finish_reason, null
	// until the choice's last chunk: a chunk is walked only until the ID or
	// model was found, for a finish reason that is not null, and for text
	// to capture.
	if (len(a.model) > 0 || len(a.id) > 0) && !a.capture && !hasFinishReason(data) {
		return
	}
	a.read(data)
}

// hasFinishReason reports whether data holds a finish_reason that is not
// null.
func hasFinishReason(data []byte) bool {
	for {
		i := bytes.Index(data, strFinishReason)
		if i < 0 {
			return false
		}
		data = data[i+len(strFinishReason):]
		j := jsonscan.SkipSpace(data, 0)
		if j < len(data) && data[j] == ':' {
			j = jsonscan.SkipSpace(data, j+1)
			if j < len(data) && data[j] != 'n' {
				return true
			}
		}
	}
}

// Body reads a whole answer.
func (a *Answer) Body(body []byte) {
	switch {
	case !a.on:
	case a.messages:
		a.message(body)
	default:
		a.read(body)
	}
}

// message reads a Messages API message: its ID, model, stop reason and, with
// capture_content on, its text blocks' text.
func (a *Answer) message(b []byte) {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return
		}
		if a.idOrModel(k, v) {
			continue
		}
		switch string(k) {
		case "stop_reason":
			a.stopReason(v)
		case "content":
			if !a.capture {
				continue
			}
			var blocks jsonscan.Array
			if !blocks.Reset(v) {
				continue
			}
			for blk, ok := blocks.Next(); ok; blk, ok = blocks.Next() {
				if t, _ := jsonscan.Field(blk, "type"); string(t) == `"text"` {
					if text, _ := jsonscan.Field(blk, "text"); jsonscan.IsString(text) {
						a.appendText(text)
					}
				}
			}
		}
	}
}

// idOrModel keeps the first ID and model an answer or its chunks name, and reports
// whether member k was either.
func (a *Answer) idOrModel(k, v []byte) bool {
	switch string(k) {
	case "id":
		if len(a.id) == 0 {
			a.id, _ = jsonscan.AppendUnquote(a.id[:0], v)
		}
	case "model":
		if len(a.model) == 0 {
			a.model, _ = jsonscan.AppendUnquote(a.model[:0], v)
		}
	default:
		return false
	}
	return true
}

// stopReason records a Messages API stop_reason, when it is one.
func (a *Answer) stopReason(v []byte) {
	if jsonscan.IsString(v) && len(a.reasons) < maxFinishReasons {
		if r, ok := jsonscan.AppendUnquote(nil, v); ok {
			a.reasons = append(a.reasons, string(r))
		}
	}
}

// messageEvent reads one event of a Messages API stream: message_start's message (ID,
// model), message_delta's stop reason, and, with capture_content on, a text delta's
// text.
func (a *Answer) messageEvent(data []byte) {
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return
		}
		switch string(k) {
		case "message":
			a.message(v)
		case "delta":
			if r, ok := jsonscan.Field(v, "stop_reason"); ok {
				a.stopReason(r)
			}
			if a.capture {
				if t, _ := jsonscan.Field(v, "type"); string(t) == `"text_delta"` {
					if text, _ := jsonscan.Field(v, "text"); jsonscan.IsString(text) {
						a.appendText(text)
					}
				}
			}
		}
	}
}

// read takes the ID, model, finish reasons and text from one answer or
// chunk. A body that is not JSON (an upstream's compressed answer, say)
// yields nothing.
func (a *Answer) read(b []byte) {
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return
		}
		if a.idOrModel(k, v) {
			continue
		}
		switch string(k) {
		case "choices":
			a.choices(v)
		case "status":
			if a.responses && jsonscan.IsString(v) {
				a.status, _ = jsonscan.AppendUnquote(a.status[:0], v)
			}
		case "output":
			if a.capture && a.responses && !a.streamed {
				a.output(v)
			}
		}
	}
}

// finalStatus reports whether status is one a response ends with, not queued or
// in_progress (the status of a stream cut before its terminal event).
func finalStatus(status []byte) bool {
	switch string(status) {
	case "completed", "incomplete", "failed", "cancelled":
		return true
	}
	return false
}

// strTextDelta is the type of a Responses API stream's text delta event.
var strTextDelta = []byte(`"response.output_text.delta"`)

// event reads one event of a Responses API stream: the response it carries (ID,
// model, status), and, with capture_content on, a text delta's text.
func (a *Answer) event(data []byte) {
	a.streamed = true
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return
	}
	var typ, delta []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			typ = v
		case "delta":
			delta = v
		case "response":
			a.read(v)
		}
	}
	if a.capture && bytes.Equal(typ, strTextDelta) && jsonscan.IsString(delta) {
		a.appendText(delta)
	}
}

// output reads a response's output items for the text of its first message.
func (a *Answer) output(v []byte) {
	var items jsonscan.Array
	if !items.Reset(v) {
		return
	}
	for item, ok := items.Next(); ok; item, ok = items.Next() {
		if t, _ := jsonscan.Field(item, "type"); string(t) != `"message"` {
			continue
		}
		content, _ := jsonscan.Field(item, "content")
		var parts jsonscan.Array
		if !parts.Reset(content) {
			return
		}
		for part, ok := parts.Next(); ok; part, ok = parts.Next() {
			if t, _ := jsonscan.Field(part, "type"); string(t) == `"output_text"` {
				if text, _ := jsonscan.Field(part, "text"); jsonscan.IsString(text) {
					a.appendText(text)
				}
			}
		}
		return
	}
}

// choices reads the elements of a choices array.
func (a *Answer) choices(v []byte) {
	var arr jsonscan.Array
	if !arr.Reset(v) {
		return
	}
	for c, ok := arr.Next(); ok; c, ok = arr.Next() {
		a.choice(c)
	}
}

// choice reads one choice: its finish reason, and its text (message or
// delta content for chat, text for completions) when it is the first.
func (a *Answer) choice(c []byte) {
	var it jsonscan.Iter
	if it.Reset(c) != nil {
		return
	}
	first := true
	var text []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "index":
			n, ok := jsonscan.Int(v)
			first = ok && n == 0
		case "finish_reason":
			if jsonscan.IsString(v) && len(a.reasons) < maxFinishReasons {
				if r, ok := jsonscan.AppendUnquote(nil, v); ok {
					a.reasons = append(a.reasons, string(r))
				}
			}
		case "text":
			text = v
		case "message", "delta":
			if a.capture {
				text, _ = jsonscan.Field(v, "content")
			}
		}
	}
	if !a.capture || !first || !jsonscan.IsString(text) {
		return
	}
	a.appendText(text)
}

// appendText adds text, a JSON string, to the captured text. The text is kept to the
// capture bound and a few bytes more, so that truncating it later can cut at a
// character boundary.
func (a *Answer) appendText(text []byte) {
	if len(a.text) < maxCapturedContent+utf8.UTFMax {
		a.text, _ = jsonscan.AppendUnquote(a.text, text)
		if len(a.text) > maxCapturedContent+utf8.UTFMax {
			a.text = a.text[:maxCapturedContent+utf8.UTFMax]
		}
	}
}

// End records what a read on span (gen_ai.response.model, gen_ai.response.id,
// gen_ai.response.finish_reasons) and, with capture_content on, the text,
// if there was any, as an EventCompletion event, then disarms a.
func (a *Answer) End(span trace.Span) {
	if !a.on {
		return
	}
	a.on = false
	if !span.IsRecording() {
		return
	}
	if a.responses && finalStatus(a.status) {
		a.reasons = append(a.reasons, string(a.status))
	}
	SetResponse(span, string(a.model), string(a.id), a.reasons...)
	if a.capture && len(a.text) > 0 {
		addCompletion(span, a.text)
	}
}
