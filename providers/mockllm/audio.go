package mockllm

import (
	"bytes"
	"io"
	"math"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// vLLM's speech-to-text API (vllm/entrypoints/openai/speech_to_text): POST
// /v1/audio/transcriptions and /v1/audio/translations take a multipart form (file,
// model, language, prompt, response_format, temperature, timestamp_granularities[],
// stream, and vLLM's stream_include_usage, stream_continuous_usage_stats,
// to_language, which the mock takes and ignores, as it does any other field) and
// answer as vLLM serving Whisper does. The audio is cut into
// 30-second pieces (Whisper's max_audio_clip_s; vLLM cuts at a quiet point near each
// mark, the mock at the mark), each generated as a request of its own, at once, of
// audioWordsPerSecond words of its length; the answer joins them. With
// x-mock-audio-api: openai it answers as OpenAI's API does instead (audio_openai.go).

// audioWordsPerSecond is how many tokens (words) a second of audio transcribes to:
// speech at 120 words a minute.
const audioWordsPerSecond = 2

// audioClipSeconds is the length of the pieces the audio is generated in.
const audioClipSeconds = 30

// maxAudioFileBytes is vLLM's VLLM_MAX_AUDIO_CLIP_FILESIZE_MB default, 25 MiB.
const maxAudioFileBytes = 25 << 20

// whisperPromptTokens is the decoder prompt of a Whisper request, which vLLM's usage
// counts as its prompt: <|startoftranscript|>, the language, the task and
// <|notimestamps|>, after <|startofprev|> and the prompt's tokens when one is given.
func whisperPromptTokens(prompt []byte) int {
	if len(prompt) == 0 {
		return 4
	}
	return 5 + promptTokens(len(prompt))
}

// audioFormat is a response_format.
type audioFormat uint8

const (
	fmtJSON audioFormat = iota
	fmtText
	fmtSRT
	fmtVerboseJSON
	fmtVTT
)

// The form fields the routes read, in the order vLLM's request model declares (and
// pydantic validates) them.
const (
	afFile = iota
	afModel
	afLanguage
	afPrompt
	afFormat
	afStream
	afIncludeUsage
	afContUsage
	afTemperature
	afSeed
	afMaxTokens
	numAudioFields
)

var audioFieldNames = [numAudioFields]string{
	afFile:         "file",
	afModel:        "model",
	afLanguage:     "language",
	afPrompt:       "prompt",
	afFormat:       "response_format",
	afStream:       "stream",
	afIncludeUsage: "stream_include_usage",
	afContUsage:    "stream_continuous_usage_stats",
	afTemperature:  "temperature",
	afSeed:         "seed",
	afMaxTokens:    "max_completion_tokens",
}

// audioState is a transcription or translation request's part of the pooled state.
type audioState struct {
	translate bool
	// openai answers as OpenAI's API does (x-mock-audio-api: openai).
	openai bool
	format audioFormat
	// fields are the form's values by af index (slices of the request, used only in
	// the handler; nil when absent: FastAPI takes an empty string for none, not an
	// empty file), and fileStr tells a file field that came without a filename.
	fields  [numAudioFields][]byte
	fileStr bool
	// badGran is the index of the first timestamp_granularities[] value that is
	// neither word nor segment, -1 for none; grans counts them.
	badGran, grans int
	delim          []byte

	temperature float64
	duration    float64
	// prompt is a piece's prompt tokens (vLLM: Whisper's decoder prompt; OpenAI:
	// the prompt's text tokens).
	prompt int
	// modelJSON is the stream chunks' model: vLLM writes the request's, null when it
	// named none.
	modelJSON []byte
}

// reset keeps the buffers' capacity for the next request.
func (a *audioState) reset() audioState {
	return audioState{delim: a.delim[:0], badGran: -1}
}

// audioError is a refusal of an audio request, in vLLM's words and, with
// x-mock-audio-api: openai, OpenAI's.
type audioError struct {
	status int
	// typ is vLLM's error type: its validation handler's "Bad Request", an
	// HTTPException's status phrase, or empty for an error raised while serving
	// (openAIErrorType of the status).
	typ   string
	msg   string
	param string // vLLM's param, empty for null
	// field is the OpenAI answer's param (empty for null), code its code.
	field, code string
	// openaiMsg replaces msg in OpenAI's answer when set.
	openaiMsg string
}

var (
	errAudioParse = &audioError{status: 400, typ: "Bad Request", msg: "There was an error parsing the body"}
	errAudioFile  = &audioError{status: 400, typ: "Bad Request", msg: "file: Field required",
		field: "file", code: "missing_required_parameter", openaiMsg: "Missing required parameter: 'file'."}
	// errAudioFileStr is TranscriptionRequest.validate_transcription_request's
	// HTTPException, raised before the fields are validated; TranslationRequest has
	// no such check, and its field validation refuses the str.
	errAudioFileStr = &audioError{status: 422, typ: "Unprocessable Entity", msg: "Expected 'file' to be a file-like object, not 'str'.",
		field: "file", code: "invalid_value", openaiMsg: "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"}
	errTranslationFileStr = &audioError{status: 400, typ: "Bad Request", msg: "file: Expected UploadFile, received: <class 'str'>",
		field: "file", code: "invalid_value", openaiMsg: "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"}
	errAudioFormat = &audioError{status: 400, typ: "Bad Request", msg: "response_format: Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'",
		field: "response_format", code: "invalid_value"}
	// errAudioFormatServed and errAudioVerboseStream are _create_speech_to_text's
	// refusals: srt and vtt are in the request model, but vLLM answers neither.
	errAudioFormatServed  = &audioError{status: 400, msg: "Currently only support response_format: `text`, `json` or `verbose_json`"}
	errAudioVerboseStream = &audioError{status: 400, msg: "verbose_json format doesn't support streaming case"}
	errAudioTooLarge      = &audioError{status: 400, msg: "Maximum file size exceeded", param: "audio_filesize_mb",
		field: "file", code: "invalid_value"}
	errAudioUnreadable = &audioError{status: 400, msg: "Invalid or unsupported audio file.",
		field: "file", code: "invalid_value", openaiMsg: "Audio file might be corrupted or unsupported"}
)

// audioBool is a form field of type bool, as pydantic reads one from a string.
func audioBool(v []byte) (val, ok bool) {
	switch {
	case bytes.EqualFold(v, []byte("true")), bytes.EqualFold(v, []byte("1")), bytes.EqualFold(v, []byte("yes")),
		bytes.EqualFold(v, []byte("on")), bytes.EqualFold(v, []byte("t")), bytes.EqualFold(v, []byte("y")):
		return true, true
	case bytes.EqualFold(v, []byte("false")), bytes.EqualFold(v, []byte("0")), bytes.EqualFold(v, []byte("no")),
		bytes.EqualFold(v, []byte("off")), bytes.EqualFold(v, []byte("f")), bytes.EqualFold(v, []byte("n")):
		return false, true
	}
	return false, false
}

// audioFormatError refuses a response_format value the request model does not
// define.
func (st *state) audioFormatError() *audioError {
	if st.aud.openai {
		return st.openAIFormatError(st.aud.fields[afFormat])
	}
	return errAudioFormat
}

// errAudioType refuses a field whose value is not of its type, in pydantic's words.
func errAudioType(field, want string) *audioError {
	return &audioError{status: 400, typ: "Bad Request", msg: field + ": " + want, field: field, code: "invalid_type"}
}

// audioField keeps one form part's value; a repeated field keeps its last, as
// Starlette's FormData.get gives it.
func (a *audioState) audioField(name, v []byte, file bool) {
	if string(name) == "timestamp_granularities[]" {
		if a.badGran < 0 && string(v) != "word" && string(v) != "segment" {
			a.badGran = a.grans
		}
		a.grans++
		return
	}
	for i, n := range audioFieldNames {
		if string(name) == n {
			if len(v) == 0 && !file {
				v = nil
			}
			a.fields[i] = v
			if i == afFile {
				a.fileStr = !file && v != nil
			}
			return
		}
	}
}

// readAudioForm reads the form: a multipart body, an urlencoded one (Starlette reads
// both), or none for any other body, whose fields are then all absent.
func (st *state) readAudioForm(ctx *fasthttp.RequestCtx) *audioError {
	a := &st.aud
	ct := ctx.Request.Header.ContentType()
	switch {
	case hasPrefixFold(ct, strFormData):
		boundary := ctx.Request.Header.MultipartFormBoundary()
		if len(boundary) == 0 {
			return errAudioParse
		}
		a.delim = append(append(a.delim[:0], "\r\n--"...), boundary...)
		var r formReader
		r.reset(ctx.PostBody(), a.delim)
		for {
			p, ok := r.next()
			if !ok {
				break
			}
			a.audioField(p.name, p.data, p.file)
		}
		if r.bad {
			return errAudioParse
		}
	case hasPrefixFold(ct, strURLForm):
		for k, v := range ctx.PostArgs().All() {
			a.audioField(k, v, false)
		}
	}
	return nil
}

func hasPrefixFold(b, prefix []byte) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], prefix)
}

// checkAudioFields validates the form as vLLM's request model does: its
// model_validator first, then the fields in their order.
func (st *state) checkAudioFields() *audioError {
	a := &st.aud
	f := &a.fields
	if a.fileStr {
		if a.translate {
			return errTranslationFileStr
		}
		return errAudioFileStr
	}
	if !a.openai && f[afStream] == nil {
		// validate_stream_options reads the raw form: a stream option with any value
		// ("false" too) and no stream is refused.
		for _, i := range [...]int{afIncludeUsage, afContUsage} {
			if f[i] != nil {
				return &audioError{status: 400, typ: "Bad Request", msg: "Stream options can only be defined when `stream=True`.", param: audioFieldNames[i]}
			}
		}
	}
	if f[afFile] == nil {
		return errAudioFile
	}
	switch string(f[afFormat]) {
	case "", "json":
		a.format = fmtJSON
	case "text":
		a.format = fmtText
	case "srt":
		a.format = fmtSRT
	case "verbose_json":
		a.format = fmtVerboseJSON
	case "vtt":
		a.format = fmtVTT
	case "diarized_json":
		if !a.openai || a.translate {
			return st.audioFormatError()
		}
		a.format = fmtDiarized
	default:
		return st.audioFormatError()
	}
	if a.badGran >= 0 && !a.translate {
		n := strconv.Itoa(a.badGran)
		return &audioError{status: 400, typ: "Bad Request", msg: "timestamp_granularities[]." + n + ": Input should be 'word' or 'segment'",
			field: "timestamp_granularities[]", code: "invalid_value"}
	}
	for _, i := range [...]int{afStream, afIncludeUsage, afContUsage} {
		if f[i] == nil {
			continue
		}
		v, ok := audioBool(f[i])
		if !ok {
			return errAudioType(audioFieldNames[i], "Input should be a valid boolean, unable to interpret input")
		}
		switch i {
		case afStream:
			st.stream = v
		case afIncludeUsage:
			st.includeUsage = v
		default:
			st.contUsage = v
		}
	}
	st.contUsage = st.contUsage && st.includeUsage
	if v := f[afTemperature]; v != nil {
		t, ok := jsonscan.Float(v)
		if !ok {
			var err error
			t, err = strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			ok = err == nil
		}
		if !ok {
			return errAudioType("temperature", "Input should be a valid number, unable to parse string as a number")
		}
		a.temperature, st.temperature = t, t
	}
	if v := f[afSeed]; v != nil {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return errAudioType("seed", "Input should be a valid integer, unable to parse string as an integer")
		}
		st.seed, st.hasSeed = n, true
	}
	if v := f[afMaxTokens]; v != nil {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return errAudioType("max_completion_tokens", "Input should be a valid integer, unable to parse string as an integer")
		}
		if n < 1 {
			// SamplingParams._verify_args, while serving.
			return &audioError{status: 400, msg: "max_tokens must be at least 1, got " + strconv.FormatInt(n, 10) + ".", param: "max_tokens",
				field: "max_completion_tokens", code: "invalid_value"}
		}
		st.maxTokens = n
	}
	return nil
}

// audio answers POST /v1/audio/transcriptions and /v1/audio/translations: the form,
// the checks vLLM runs in its order (validation, model, response_format, the file),
// the checks every generation request shares (admit), then the answer, plain or
// streamed.
func (s *Server) audio(ctx *fasthttp.RequestCtx, st *state) {
	a := &st.aud
	a.translate = st.route == rTranslate
	a.openai = st.hdr.audioOpenAI
	if a.openai && !hasPrefixFold(ctx.Request.Header.ContentType(), strFormData) {
		s.audioContentType(ctx, st)
		return
	}
	if e := st.readAudioForm(ctx); e != nil {
		s.audioFail(ctx, st, e)
		return
	}
	if e := st.checkAudioFields(); e != nil {
		s.audioFail(ctx, st, e)
		return
	}
	f := &a.fields
	if a.openai && a.translate {
		// OpenAI's translations do not stream: whisper-1 answers at once.
		st.stream = false
	}
	if a.openai && f[afModel] == nil {
		s.audioFail(ctx, st, errAudioModel)
		return
	}
	if m := f[afModel]; m != nil && !bytes.Equal(m, s.model) {
		s.audioModelNotFound(ctx, st, m)
		return
	}
	if f[afModel] != nil {
		a.modelJSON = s.modelJSON
	}
	if e := st.checkAudioFormat(); e != nil {
		s.audioFail(ctx, st, e)
		return
	}
	file := f[afFile]
	if len(file) > maxAudioFileBytes {
		s.audioFail(ctx, st, errAudioTooLarge)
		return
	}
	d, ok := audioDuration(file)
	if !ok {
		s.audioFail(ctx, st, errAudioUnreadable)
		return
	}
	a.duration = d
	if a.openai {
		a.prompt = 0
		if p := f[afPrompt]; p != nil {
			a.prompt = promptTokens(len(p))
		}
	} else {
		a.prompt = whisperPromptTokens(f[afPrompt])
	}
	if e := st.checkSampling(st.maxTokensFor(a.prompt)); e != nil {
		s.audioFail(ctx, st, &audioError{status: 400, msg: e.msg, param: e.param, field: e.param, code: "invalid_value"})
		return
	}
	if !s.admit(ctx, st) {
		return
	}
	steps, generated := st.planAudio(file)
	if st.stream {
		s.startAudioStream(ctx, st, steps, generated)
		return
	}
	if !st.done(ctx, steps, generated) {
		return
	}
	if a.openai {
		s.openAIAudioAnswer(ctx, st, generated)
		return
	}
	if a.format == fmtVerboseJSON {
		st.out = st.appendVerboseAudio(st.out[:0])
	} else {
		// vLLM answers text as it answers json: a JSON TranscriptionResponse.
		st.out = st.appendAudioJSON(st.out[:0])
	}
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// maxAudioPieces bounds the pieces one request generates (over two hours of audio),
// so that a WAV header claiming days of audio costs no more.
const maxAudioPieces = 256

// planAudio plans the answer to the audio file: one plan a piece, seeded by the
// file, the seeds and the task, of audioWordsPerSecond words a second of the piece
// (x-mock-tokens instead when given). It returns the generation steps (the longest
// piece: they run at once) and the tokens generated.
func (st *state) planAudio(file []byte) (steps, generated int) {
	s, d := st.s, st.aud.duration
	h := promptHash(s.opts.Seed, st.seed, st.hasSeed, file)
	if st.aud.translate {
		// The same audio translates to other words than it transcribes to.
		h = mix(h ^ (golden + 3))
	}
	pieces := min(max(int(math.Ceil(d/audioClipSeconds)), 1), maxAudioPieces)
	for i := range pieces {
		n := max(int(math.Ceil(min(d-float64(i*audioClipSeconds), audioClipSeconds)*audioWordsPerSecond)), 1)
		if st.hdr.tokens > 0 {
			n = st.hdr.tokens
		}
		p := newPlan(choiceHash(h, i), s.opts.MaxTokens, st.maxTokens, n, 0, false)
		st.plans = append(st.plans, p)
		steps = max(steps, p.n)
		generated += p.n
	}
	st.idA, st.idB = s.nextID(h)
	s.promptTok.Add(int64(st.aud.prompt * pieces))
	return steps, generated
}

// startAudioStream renders what vLLM's chunks share (id, object, created) once and
// hands the state to fasthttp.
func (s *Server) startAudioStream(ctx *fasthttp.RequestCtx, st *state, steps, generated int) {
	st.kind = kAudio
	st.ttftD, st.tpotD = st.ttft(), st.tpot()
	st.steps = steps
	st.cutAfter = st.cutPoint(generated)
	if !st.aud.openai {
		b := append(st.prefix[:0], `data: {"id":"`...)
		if st.aud.translate {
			b = st.appendID(b, "translate-")
			b = append(b, `","object":"translation.chunk","created":`...)
		} else {
			b = st.appendID(b, "transcribe-")
			b = append(b, `","object":"transcription.chunk","created":`...)
		}
		st.prefix = strconv.AppendInt(b, st.created, 10)
	}
	s.beginStream(ctx, st)
}

// appendAudioJSON appends vLLM's TranscriptionResponse, the text and its usage (the
// seconds rounded up, as OpenAI's duration usage is), or TranslationResponse, the
// text alone.
func (st *state) appendAudioJSON(b []byte) []byte {
	b = append(b, `{"text":"`...)
	b = st.appendAudioText(b)
	b = append(b, '"')
	if !st.aud.translate {
		b = append(b, `,"usage":{"type":"duration","seconds":`...)
		b = strconv.AppendInt(b, int64(math.Ceil(st.aud.duration)), 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// checkAudioFormat is _create_speech_to_text's check of response_format, after the
// model's (OpenAI's, in OpenAI mode).
func (st *state) checkAudioFormat() *audioError {
	a := &st.aud
	if a.openai {
		return st.checkOpenAIFormat()
	}
	switch {
	case a.format == fmtSRT || a.format == fmtVTT:
		return errAudioFormatServed
	case a.format == fmtVerboseJSON && st.stream:
		return errAudioVerboseStream
	}
	return nil
}

// audioFail writes e in vLLM's error shape, or OpenAI's in OpenAI mode.
func (s *Server) audioFail(ctx *fasthttp.RequestCtx, st *state, e *audioError) {
	status := e.status
	if st.aud.openai {
		msg := e.msg
		if e.openaiMsg != "" {
			msg = e.openaiMsg
		}
		// OpenAI answers a request it cannot read with 400, where FastAPI says 422.
		status = min(status, fasthttp.StatusBadRequest)
		st.out = appendOpenAIAPIError(st.out[:0], msg, "invalid_request_error", e.field, e.code)
	} else {
		typ := e.typ
		if typ == "" {
			typ = openAIErrorType(e.status)
		}
		st.out = appendOpenAIError(st.out[:0], e.status, typ, e.msg, e.param)
	}
	s.setJSON(ctx, st, status)
}

// audioModelNotFound is _check_model's 404 (OpenAI's, in OpenAI mode).
func (s *Server) audioModelNotFound(ctx *fasthttp.RequestCtx, st *state, name []byte) {
	if st.aud.openai {
		st.out = appendOpenAIAPIError(st.out[:0], "The model `"+string(name)+"` does not exist or you do not have access to it.",
			"invalid_request_error", "", "model_not_found")
		s.setJSON(ctx, st, fasthttp.StatusNotFound)
		return
	}
	s.fail(ctx, st, fasthttp.StatusNotFound, "The model `"+string(name)+"` does not exist.", "model")
}

// appendAudioToken appends token i of piece c: Whisper's text has a space before
// every word, the first included (OpenAI's has none before its first), and a full
// stop after a piece's natural last word.
func (st *state) appendAudioToken(b []byte, c, i int) []byte {
	p := &st.plans[c]
	if !st.aud.openai || c > 0 || i > 0 {
		b = append(b, ' ')
	}
	b = append(b, p.word(i)...)
	if i == p.natural-1 {
		b = append(b, '.')
	}
	return b
}

// appendAudioText appends the whole transcript: the pieces' texts joined.
func (st *state) appendAudioText(b []byte) []byte {
	for c := range st.plans {
		for i := range st.plans[c].n {
			b = st.appendAudioToken(b, c, i)
		}
	}
	return b
}

// segmentTokens is the most tokens a verbose_json segment holds.
const segmentTokens = 8

// audioSegment is one segment of a verbose answer: piece c's tokens [from, to), from
// start to end seconds.
type audioSegment struct {
	c, from, to int
	start, end  float64
}

// segments yields each segment of the audio in order, with the clip (30 s piece)
// it is in.
func (st *state) segments(yield func(clip int, sg audioSegment) bool) {
	for c := range st.plans {
		for j := 0; ; j++ {
			sg, ok := st.segment(c, j)
			if !ok {
				break
			}
			if !yield(c, sg) {
				return
			}
		}
	}
}

// segment returns segment j of piece c, and false past its last. A piece's natural
// length spreads over its seconds; Whisper's timestamps count 0.02 s steps from the
// piece's start.
func (st *state) segment(c, j int) (audioSegment, bool) {
	p := &st.plans[c]
	from := j * segmentTokens
	if from >= p.n {
		return audioSegment{}, false
	}
	to := min(from+segmentTokens, p.n)
	offset := float64(c * audioClipSeconds)
	length := min(st.aud.duration-offset, audioClipSeconds)
	return audioSegment{c: c, from: from, to: to,
		start: whisperTime(offset, length, i2f(from, p.natural)),
		end:   whisperTime(offset, length, i2f(to, p.natural))}, true
}

// i2f is i over n, the share of a piece's words before word i.
func i2f(i, n int) float64 { return float64(i) / float64(n) }

// whisperTime is the timestamp a share of a piece of length seconds from offset
// reads as, in Whisper's 0.02 s steps: offset + 0.02 × steps, as vLLM computes it.
func whisperTime(offset, length, share float64) float64 {
	return offset + 0.02*float64(int(share*length/0.02))
}

// appendSegmentText appends a segment's words.
func (st *state) appendSegmentText(b []byte, sg audioSegment) []byte {
	for i := sg.from; i < sg.to; i++ {
		b = st.appendAudioToken(b, sg.c, i)
	}
	return b
}

// appendSegmentTokens appends a segment's token ids, as /tokenize numbers the words.
func (st *state) appendSegmentTokens(b []byte, sg audioSegment) []byte {
	p := &st.plans[sg.c]
	b = append(b, '[')
	for i := sg.from; i < sg.to; i++ {
		if i > sg.from {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p.wordIndex(i)), 10)
	}
	return append(b, ']')
}

// segmentStats are a segment's avg_logprob and compression_ratio: deterministic and
// plausible (between -0.5 and -0.05, and 1.0 and 2.4), not computed from the text.
func (st *state) segmentStats(sg audioSegment) (logprob, ratio float64) {
	x := mix(st.plans[sg.c].h ^ uint64(sg.from+1)*golden)
	return -float64(50+x%450) / 1000, float64(100+(x>>20)%140) / 100
}

// appendVerboseAudio appends vLLM's TranscriptionResponseVerbose (and
// TranslationResponseVerbose): the duration as Python's str of the float, the
// request's language (the detected one, "en", without), the text, and the segments
// in their model's field order; words stays null, as vLLM fills none.
func (st *state) appendVerboseAudio(b []byte) []byte {
	a := &st.aud
	b = append(b, `{"duration":"`...)
	b = appendPyFloat(b, a.duration)
	b = append(b, `","language":`...)
	if l := a.fields[afLanguage]; l != nil {
		b = appendQuoteBytes(b, l)
	} else {
		b = append(b, `"en"`...)
	}
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
		b = append(b, `,"avg_logprob":`...)
		b = appendPyFloat(b, logprob)
		b = append(b, `,"compression_ratio":`...)
		b = appendPyFloat(b, ratio)
		b = append(b, `,"end":`...)
		b = appendPyFloat(b, sg.end)
		b = append(b, `,"no_speech_prob":null,"seek":`...)
		b = strconv.AppendInt(b, int64(c*audioClipSeconds), 10)
		b = append(b, `,"start":`...)
		b = appendPyFloat(b, sg.start)
		b = append(b, `,"temperature":`...)
		b = appendPyFloat(b, a.temperature)
		b = append(b, `,"text":"`...)
		b = st.appendSegmentText(b, sg)
		b = append(b, `","tokens":`...)
		b = st.appendSegmentTokens(b, sg)
		b = append(b, '}')
		id++
	}
	return append(b, `],"words":null}`...)
}

// Stream phases of the audio routes.
const (
	aTokens = iota
	aUsage
	aDone
	aEnd
)

// waitAudio paces a stream's tokens: the time to first token before the first, then
// the time per output token before each generation step not reached yet. The pieces
// are generated at once, as vLLM runs them, and streamed one after the other, so a
// later piece's tokens up to the step the earlier ones reached are ready.
func (st *state) waitAudio() error {
	if st.started && st.step <= st.lastStep {
		return nil
	}
	return st.waitContent(st.step)
}

// nextAudio yields vLLM's transcription.chunk (translation.chunk) events: one per
// token, a piece's last with its finish_reason and stop_reason, with
// stream_continuous_usage_stats the usage so far on each, the usage chunk with
// stream_include_usage, then [DONE]; or, in OpenAI mode, OpenAI's
// transcript.text.delta events and transcript.text.done, without [DONE].
func (st *state) nextAudio() ([]byte, error) {
	a := &st.aud
	b := st.ev[:0]
	switch st.phase {
	case aTokens:
		if st.cutNow() {
			return nil, errCut
		}
		if st.choice == len(st.plans) {
			st.phase = aDone
			if st.includeUsage && !a.openai {
				st.phase = aUsage
			}
			return st.nextAudio()
		}
		if err := st.waitAudio(); err != nil {
			return nil, err
		}
		p := &st.plans[st.choice]
		st.emitted++
		if a.openai {
			b = append(b, `data: {"type":"transcript.text.delta","delta":"`...)
			b = st.appendAudioToken(b, st.choice, st.step)
			b = append(b, "\"}\n\n"...)
		} else {
			b = st.appendAudioChunkHead(b, false)
			b = append(b, `,"choices":[{"delta":{"content":"`...)
			b = st.appendAudioToken(b, st.choice, st.step)
			b = append(b, `"}`...)
			if st.step == p.n-1 {
				b = append(b, `,"finish_reason":`...)
				b = appendFinish(b, st, p)
			}
			b = append(b, "}]"...)
			if st.contUsage {
				b = append(b, `,"usage":`...)
				b = appendUsage(b, a.prompt, st.emitted)
				b = append(b, '}')
			}
			b = append(b, "}\n\n"...)
		}
		st.step++
		if st.step == p.n {
			st.choice++
			st.step = 0
		}
	case aUsage:
		// Written with exclude_none: a null model is left out.
		b = st.appendAudioChunkHead(b, true)
		b = append(b, `,"choices":[],"usage":`...)
		b = appendUsage(b, a.prompt, st.emitted)
		b = append(b, "}}\n\n"...)
		st.phase = aDone
	case aDone:
		if a.openai {
			b = append(b, `data: {"type":"transcript.text.done","text":"`...)
			b = st.appendAudioText(b)
			b = append(b, `","usage":`...)
			b = st.appendOpenAIAudioUsage(b, st.emitted)
			b = append(b, "}\n\n"...)
		} else {
			b = append(b, "data: [DONE]\n\n"...)
		}
		st.phase = aEnd
		st.finished = true
	default:
		return nil, io.EOF
	}
	st.ev = b
	return b, nil
}

// appendAudioChunkHead appends a chunk's id, object, created and model; omitNull
// leaves a null model out.
func (st *state) appendAudioChunkHead(b []byte, omitNull bool) []byte {
	b = append(b, st.prefix...)
	switch {
	case st.aud.modelJSON != nil:
		b = append(b, `,"model":`...)
		b = append(b, st.aud.modelJSON...)
	case !omitNull:
		b = append(b, `,"model":null`...)
	}
	return b
}
