package providers

import (
	"bytes"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// The Responses API's stream events the gateway acts on, by their type as quoted JSON:
// the terminal ones, after which the upstream closes the stream (it sends no [DONE]),
// and the error event.
var (
	strResponseCompleted  = []byte(`"response.completed"`)
	strResponseIncomplete = []byte(`"response.incomplete"`)
	strResponseFailed     = []byte(`"response.failed"`)
	strErrorType          = []byte(`"error"`)
	strDeltaType          = []byte(`.delta"`)
)

// inspectResponseEvent reads what the gateway needs of a Responses API stream event
// (a JSON object with its type): the usage and service tier of the response the
// event carries (whole in response.created, response.in_progress and the terminal
// events; usage only in the terminal ones), whether it carries generated content (a
// *.delta event with a non-empty delta: text, a refusal, a function call's arguments,
// reasoning) and the size of its text, and whether it is an error (the error event, response.failed, or an
// error object in place of an event). final reports a terminal event, which ends the
// stream; ok that data is one JSON object, as every event of the stream is.
func inspectResponseEvent(data []byte, ev *Event) (final, ok bool) {
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return false, false
	}
	var typ, delta []byte
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "type":
			typ = v
		case "delta":
			delta = v
		case "response":
			readResponse(v, it.ValueOffset(), ev)
		case "error":
			ev.Error = ev.Error || !jsonscan.IsNull(v)
		}
	}
	if it.Err() != nil || jsonscan.SkipSpace(data, it.End()) != len(data) {
		return false, false
	}
	switch {
	case bytes.Equal(typ, strResponseCompleted), bytes.Equal(typ, strResponseIncomplete):
		final = true
	case bytes.Equal(typ, strResponseFailed):
		final, ev.Error = true, true
	case bytes.Equal(typ, strErrorType):
		ev.Error = true
	case bytes.HasSuffix(typ, strDeltaType):
		ev.Content = len(delta) > 2 && delta[0] == '"'
		if ev.Content {
			ev.OutputBytes = len(delta) - 2
		}
	}
	return final, true
}

// IDEnds are the offsets of the closing quotes of a response object's id and
// previous_response_id strings in the body or event holding it; 0 for one that is not
// a string, or has escapes (no string ends at offset 0 of a JSON object).
type IDEnds [2]int

// note records member k's value v, at offset off, when it is one of the IDs.
func (e *IDEnds) note(k, v []byte, off int) {
	i := 0
	switch string(k) {
	case "id":
	case "previous_response_id":
		i = 1
	default:
		return
	}
	if jsonscan.IsString(v) && bytes.IndexByte(v, '\\') < 0 {
		e[i] = off + len(v) - 1
	}
}

// readResponse reads a response object's usage, service tier and IDs (the object
// at offset off of the event's data) into ev.
func readResponse(v []byte, off int, ev *Event) {
	var it jsonscan.Iter
	if it.Reset(v) != nil {
		return
	}
	for {
		k, val, ok := it.Next()
		if !ok {
			return
		}
		ev.IDEnds.note(k, val, off+it.ValueOffset())
		switch string(k) {
		case "usage":
			if !jsonscan.IsNull(val) && parseUsage(val, &ev.Usage) {
				ev.HasUsage = true
			}
		case "service_tier":
			ev.Usage.Tier.read(val)
		}
	}
}

// terminalEvent reports whether data, an event's payload, is a terminal event of a
// Responses API stream.
func terminalEvent(data []byte) bool {
	typ, ok := jsonscan.Field(data, "type")
	return ok && (bytes.Equal(typ, strResponseCompleted) || bytes.Equal(typ, strResponseIncomplete) ||
		bytes.Equal(typ, strResponseFailed))
}

// Forward sends a call on a stored response of the Responses API to target i, the
// replica that stored it: method on path under the target's /responses URL ("/{id}",
// "/{id}/cancel", "/{id}/input_items"), with the client's query after the target's
// own, the client's forwarded headers and the backend's credentials. A 2xx JSON answer
// is written to out as the upstream gave it, an API error as a call's is (masked).
// The call takes no slot on the target and makes no verdict on its health: these are
// reads and deletes of what the replica holds, not generations.
func (b *Backend) Forward(i int, call *Call, method, path, query []byte, out *fasthttp.Response, res *Result) error {
	var o *openAI
	switch p := b.p.(type) {
	case *openAI:
		o = p
	case *completionsChat:
		o = p.openAI
	}
	switch {
	case b.cfg.Provider == "azure":
		return errAzureResponses
	case o == nil:
		return errAnthropicResponses
	case i < 0 || i >= len(b.targets):
		return ErrNoHealthyTarget
	}
	t := b.targets[i]
	req := o.request(t, call, Responses)
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethodBytes(method)
	if !bytes.Equal(method, strPost) {
		req.Header.Del(fasthttp.HeaderContentType)
	}
	uri := req.URI()
	buf := bodyPool.Get().(*[]byte)
	defer putBody(buf)
	*buf = append(append((*buf)[:0], uri.Path()...), path...)
	uri.SetPathBytes(*buf)
	if len(query) > 0 {
		if own := uri.QueryString(); len(own) > 0 {
			*buf = append(append(append((*buf)[:0], own...), '&'), query...)
			uri.SetQueryStringBytes(*buf)
		} else {
			uri.SetQueryStringBytes(query)
		}
	}
	res.Target, res.Sent = t.URL, time.Now()
	up, err := o.answer(t, req, call, out, res)
	if err != nil {
		return err
	}
	return o.passAnswer(t, up, out, res)
}
