package providers

import (
	"bytes"
	"math"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// sendForm sends an audio API call (Kind.Form): the client's multipart body with its
// model part's value replaced by the backend's model, under the client's own
// Content-Type (its boundary). The answer is JSON (json, verbose_json), text (text,
// srt, vtt), or a stream.
func (o *openAI) sendForm(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	req := o.request(t, call, call.Kind)
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetContentTypeBytes(call.Header.ContentType())
	buf := bodyPool.Get().(*[]byte)
	*buf = appendFormBody((*buf)[:0], call, o.rawModel)
	req.SetBodyRaw(*buf)
	up, err := o.answer(t, req, call, out, res)
	putBody(buf)
	if err != nil {
		return err
	}
	if call.Stream && up.StreamBody && up.BodyStream() != nil {
		r := o.events(t, up, out, false)
		r.audio = true
		res.Stream = r
		return nil
	}
	// Not a stream, or one its upstream answered whole (answer).
	return o.passAudioAnswer(t, up, out, res)
}

// wholeBody reads up's streamed body in full into up, up to max bytes and as hold
// allows (readStreamed), decoded when the upstream coded it; over max the answer is
// invalid (ErrAnswerTooLarge).
func wholeBody(up *fasthttp.Response, max int64, hold AnswerHold) error {
	body, err := readStreamed(up, max, hold)
	if err != nil {
		return err
	}
	up.Header.Del(fasthttp.HeaderContentEncoding)
	// As the response's own buffer, which passAnswer's swapBody hands on: not a
	// copy of it, which would hold the answer twice over, once uncounted.
	up.SwapBody(body)
	return nil
}

// readStreamed reads up's streamed body in full, up to max bytes, and closes the
// stream; decoded when the upstream coded it. A body over max is not cut to fit:
// the answer is invalid (ErrAnswerTooLarge). Its buffer grows with what came, as a
// buffered answer's does (readBody), and hold, when set, counts it once past
// maxPooledBuffer: a body it has no room for fails with ErrAnswerNoRoom, the rest
// of it unread and its connection closed. A body whose Content-Length is given grows
// to that length, not past it (fasthttp's stream ends there): its buffer is made to
// measure, as a buffered answer's is.
func readStreamed(up *fasthttp.Response, max int64, hold AnswerHold) ([]byte, error) {
	bound := max
	if n := up.Header.ContentLength(); n > 0 && int64(n) < max {
		bound = int64(n)
	}
	body, err := readToClose(up.BodyStream(), nil, int(bound), hold)
	_ = up.CloseBodyStream()
	if err != nil {
		return nil, classifyBody(err)
	}
	if enc := up.Header.ContentEncoding(); coded(enc) {
		return uncodedHeld(enc, body, max, hold)
	}
	return body, nil
}

// appendFormBody appends the call's multipart body with its model part's value (the
// span call.Model, raw bytes) replaced by model.
func appendFormBody(dst []byte, call *Call, model []byte) []byte {
	b := call.Body
	dst = append(dst, b[:call.Model[0]]...)
	dst = append(dst, model...)
	return append(dst, b[call.Model[1]:]...)
}

// passAudioAnswer gives out up, a 2xx audio API answer on t read whole: a JSON answer
// (json, verbose_json) as passAnswer gives one, its usage read; a text one (text, srt,
// vtt) as it came, under its own content type, or text/plain when it names none and
// is not a JSON object (the audio API's JSON answers are objects; a transcript may
// read as another JSON value: "7", "null").
func (o *openAI) passAudioAnswer(t *Target, up, out *fasthttp.Response, res *Result) error {
	ct := up.Header.ContentType()
	if len(ct) == 0 && jsonObject(up.Body()) || len(ct) > 0 && bytes.Equal(jsonType(ct), ct) {
		return o.passAnswer(t, up, out, res)
	}
	if len(ct) == 0 {
		ct = strTextPlain
	}
	defer endAttempt(t, up)
	out.SetStatusCode(up.StatusCode())
	out.Header.SetContentTypeBytes(ct)
	swapBody(out, up)
	return nil
}

var strTextPlain = []byte("text/plain; charset=utf-8")

// jsonObject reports whether b is a JSON object, around whitespace.
func jsonObject(b []byte) bool {
	i := jsonscan.SkipSpace(b, 0)
	return i < len(b) && b[i] == '{' && jsonscan.Valid(b)
}

// maxAudioMillis bounds the audio duration an answer is believed to report: a year.
const maxAudioMillis = 365 * 24 * 3600 * 1000

// audioMillis reads a usage's seconds (the audio API's usage of type duration, which
// whisper-1 and vLLM report in place of tokens) in milliseconds.
func audioMillis(v []byte) (int64, bool) {
	if jsonscan.IsNull(v) {
		return 0, true
	}
	s, ok := jsonscan.Float(v)
	if !ok || s < 0 || math.IsNaN(s) || s*1000 > maxAudioMillis {
		return 0, false
	}
	return int64(math.Round(s * 1000)), true
}

var (
	strTranscriptDone  = []byte("transcript.text.done")
	strTranscriptDelta = []byte("transcript.text.delta")
)

// inspectAudioEvent reads an audio API stream's event: vLLM's, a chunk of object
// transcription.chunk (choices[].delta.content, usage in the last chunk when asked
// for, then [DONE]), or OpenAI's, transcript.text.delta events and a last
// transcript.text.done carrying the usage, no [DONE]. final reports the latter.
func inspectAudioEvent(data []byte, ev *Event) (ok, final bool) {
	if !inspectChunk(data, ev) {
		return false, false
	}
	typ, found := jsonscan.Field(data, "type")
	if !found || len(typ) < 2 || typ[0] != '"' {
		return true, false
	}
	switch name := typ[1 : len(typ)-1]; {
	case bytes.Equal(name, strTranscriptDelta):
		ev.Content = true
	case bytes.Equal(name, strTranscriptDone):
		return true, true
	}
	return true, false
}

// audioDone reports whether data is OpenAI's last transcription event.
func audioDone(data []byte) bool {
	_, final := inspectAudioEvent(data, &Event{})
	return final
}
