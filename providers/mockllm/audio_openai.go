package mockllm

import (
	"math"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// With x-mock-audio-api: openai the audio routes answer as OpenAI's API does, since
// mockllm's --api openai is vLLM's server: transcriptions as gpt-4o-transcribe (json
// with token usage, or text; streamed as transcript.text.delta events and
// transcript.text.done, without [DONE]), translations as whisper-1, the one model
// OpenAI translates with (json, text, srt, vtt, verbose_json; no stream). Refusals
// take OpenAI's shape: {"error":{"message","type":"invalid_request_error","param",
// "code"}}.

// audioTokensPerSecond is the audio tokens a second of input counts for in OpenAI's
// token usage.
const audioTokensPerSecond = 10

var (
	errAudioModel = &audioError{status: 400, typ: "Bad Request", msg: "model: Field required",
		field: "model", code: "missing_required_parameter", openaiMsg: "Missing required parameter: 'model'."}
	strTextPlainUTF8 = []byte("text/plain; charset=utf-8")
)

// fmtDiarized is OpenAI's diarized_json, a value its transcriptions take that
// gpt-4o-transcribe refuses.
const fmtDiarized audioFormat = fmtVTT + 1

// openAIFormatError refuses a response_format value OpenAI's API does not define.
func (st *state) openAIFormatError(v []byte) *audioError {
	list := "'json', 'text', 'srt', 'verbose_json', 'vtt', and 'diarized_json'"
	if st.aud.translate {
		list = "'json', 'text', 'srt', 'verbose_json', and 'vtt'"
	}
	return &audioError{status: 400, field: "response_format", code: "invalid_value",
		msg: "Invalid value: '" + string(v) + "'. Supported values are: " + list + "."}
}

// checkOpenAIFormat refuses what the model does not answer: gpt-4o-transcribe
// answers json and text only; whisper-1 every format.
func (st *state) checkOpenAIFormat() *audioError {
	a := &st.aud
	if a.translate || a.format == fmtJSON || a.format == fmtText {
		return nil
	}
	return &audioError{status: 400, field: "response_format", code: "unsupported_value",
		msg: "response_format '" + string(a.fields[afFormat]) + "' is not compatible with model '" + string(a.fields[afModel]) +
			"'. Use 'json' or 'text' instead."}
}

// audioContentType is OpenAI's refusal of a body that is not a multipart form.
func (s *Server) audioContentType(ctx *fasthttp.RequestCtx, st *state) {
	msg := "Invalid Content-Type header (" + string(ctx.Request.Header.ContentType()) +
		"), expected multipart/form-data. (HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')"
	st.out = appendOpenAIAPIError(st.out[:0], msg, "invalid_request_error", "", "")
	s.setJSON(ctx, st, fasthttp.StatusBadRequest)
}

// appendOpenAIAPIError appends OpenAI's error body: param and code null when empty.
func appendOpenAIAPIError(b []byte, msg, typ, param, code string) []byte {
	b = append(b, `{"error":{"message":`...)
	b = jsonscan.AppendQuote(b, msg)
	b = append(b, `,"type":`...)
	b = jsonscan.AppendQuote(b, typ)
	b = append(b, `,"param":`...)
	b = appendQuoteOrNull(b, param)
	b = append(b, `,"code":`...)
	b = appendQuoteOrNull(b, code)
	return append(b, "}}"...)
}

func appendQuoteOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return jsonscan.AppendQuote(b, s)
}

// appendOpenAIAudioUsage appends gpt-4o-transcribe's token usage: the audio's tokens
// (audioTokensPerSecond, rounded up) and the prompt's text tokens in, output out.
func (st *state) appendOpenAIAudioUsage(b []byte, output int) []byte {
	audio := int64(math.Ceil(st.aud.duration * audioTokensPerSecond))
	text := int64(st.aud.prompt)
	b = append(b, `{"type":"tokens","input_tokens":`...)
	b = strconv.AppendInt(b, audio+text, 10)
	b = append(b, `,"input_token_details":{"text_tokens":`...)
	b = strconv.AppendInt(b, text, 10)
	b = append(b, `,"audio_tokens":`...)
	b = strconv.AppendInt(b, audio, 10)
	b = append(b, `},"output_tokens":`...)
	b = strconv.AppendInt(b, int64(output), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, audio+text+int64(output), 10)
	return append(b, '}')
}

// openAIAudioAnswer writes a non-streamed answer in OpenAI's shapes: JSON, or the
// text formats as text/plain.
func (s *Server) openAIAudioAnswer(ctx *fasthttp.RequestCtx, st *state, generated int) {
	a := &st.aud
	b := st.out[:0]
	switch a.format {
	case fmtText:
		b = st.appendAudioText(b)
		b = append(b, '\n')
	case fmtSRT, fmtVTT:
		b = st.appendSubtitles(b, a.format == fmtVTT)
	case fmtVerboseJSON:
		b = st.appendOpenAIVerbose(b)
	default:
		b = append(b, `{"text":"`...)
		b = st.appendAudioText(b)
		b = append(b, '"')
		if !a.translate {
			b = append(b, `,"usage":`...)
			b = st.appendOpenAIAudioUsage(b, generated)
		}
		b = append(b, '}')
	}
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
	if a.format != fmtJSON && a.format != fmtVerboseJSON {
		ctx.Response.Header.SetContentTypeBytes(strTextPlainUTF8)
	}
}

// appendOpenAIVerbose appends whisper-1's verbose_json translation: the task, the
// language it translated to, the duration as a number, and the segments in OpenAI's
// field order, seek in 10 ms frames.
func (st *state) appendOpenAIVerbose(b []byte) []byte {
	b = append(b, `{"task":"translate","language":"english","duration":`...)
	b = appendPyFloat(b, st.aud.duration)
	b = append(b, `,"text":"`...)
	b = st.appendAudioText(b)
	b = append(b, `","segments":[`...)
	id := 0
	for c, sg := range st.segments {
		if id > 0 {
			b = append(b, ',')
		}
		logprob, ratio := st.segmentStats(sg)
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, int64(id), 10)
		b = append(b, `,"seek":`...)
		b = strconv.AppendInt(b, int64(c*audioClipSeconds*100), 10)
		b = append(b, `,"start":`...)
		b = appendPyFloat(b, sg.start)
		b = append(b, `,"end":`...)
		b = appendPyFloat(b, sg.end)
		b = append(b, `,"text":"`...)
		b = st.appendSegmentText(b, sg)
		b = append(b, `","tokens":`...)
		b = st.appendSegmentTokens(b, sg)
		b = append(b, `,"temperature":`...)
		b = appendPyFloat(b, st.aud.temperature)
		b = append(b, `,"avg_logprob":`...)
		b = appendPyFloat(b, logprob)
		b = append(b, `,"compression_ratio":`...)
		b = appendPyFloat(b, ratio)
		b = append(b, `,"no_speech_prob":`...)
		b = appendPyFloat(b, -logprob/50)
		b = append(b, '}')
		id++
	}
	return append(b, "]}"...)
}

// appendSubtitles appends the segments as SubRip (numbered cues, comma before the
// milliseconds) or WebVTT (a WEBVTT header, a dot).
func (st *state) appendSubtitles(b []byte, vtt bool) []byte {
	sep := byte(',')
	if vtt {
		b = append(b, "WEBVTT\n\n"...)
		sep = '.'
	}
	n := 0
	for _, sg := range st.segments {
		n++
		if !vtt {
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, '\n')
		}
		b = appendCueTime(b, sg.start, sep)
		b = append(b, " --> "...)
		b = appendCueTime(b, sg.end, sep)
		b = append(b, '\n')
		from := len(b)
		b = st.appendSegmentText(b, sg)
		if len(b) > from && b[from] == ' ' {
			b = append(b[:from], b[from+1:]...)
		}
		b = append(b, "\n\n"...)
	}
	return b
}

// appendCueTime appends t seconds as HH:MM:SS followed by sep and milliseconds.
func appendCueTime(b []byte, t float64, sep byte) []byte {
	ms := int64(math.Round(t * 1000))
	b = append2(b, ms/3_600_000)
	b = append(b, ':')
	b = append2(b, ms/60_000%60)
	b = append(b, ':')
	b = append2(b, ms/1000%60)
	b = append(b, sep)
	v := ms % 1000
	return append(b, byte('0'+v/100), byte('0'+v/10%10), byte('0'+v%10))
}

// append2 appends v with at least two digits.
func append2(b []byte, v int64) []byte {
	if v < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, v, 10)
}
