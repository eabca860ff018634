package mockllm

import (
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// parseCommon reads the members chat and completions share; it reports whether key
// was one of them, and e when its value is unusable.
// setModel reads the body's model, a string; null (as vLLM's Optional[str]) means the
// served model.
func (st *state) setModel(v []byte) *badRequest {
	switch {
	case isNull(v):
	case !jsonscan.IsString(v):
		return errBadModel
	default:
		st.modelRaw = v
	}
	return nil
}

func (st *state) parseCommon(key, v []byte) (known bool, e *badRequest) {
	switch string(key) {
	case "model":
		return true, st.setModel(v)
	case "stream":
		b, ok := jsonscan.Bool(v)
		if !ok && !isNull(v) {
			return true, errBadStream
		}
		st.stream = b
	case "stream_options":
		if isNull(v) {
			return true, nil
		}
		// vLLM's validate_stream_options refuses stream_options without stream only
		// when the value is truthy in Python: {} passes. One that is no object is
		// refused after that check, by the field's validation.
		st.streamOpts = pyTruthy(v)
		if v[0] != '{' {
			st.optsType = true
			return true, nil
		}
		// vLLM's StreamOptions defaults include_usage to true when the object is given;
		// an explicit null is falsy (should_include_usage reads it with bool()).
		st.includeUsage = true
		if f, ok := jsonscan.Field(v, "include_usage"); ok {
			b, ok := jsonscan.Bool(f)
			if !ok && !isNull(f) {
				return true, &badRequest{msg: "stream_options.include_usage: Input should be a valid boolean", param: "stream_options"}
			}
			st.includeUsage = b
		}
		// continuous_usage_stats (vLLM's extension) puts usage on every chunk, when
		// include_usage holds too.
		if f, ok := jsonscan.Field(v, "continuous_usage_stats"); ok {
			b, ok := jsonscan.Bool(f)
			if !ok && !isNull(f) {
				return true, &badRequest{msg: "stream_options.continuous_usage_stats: Input should be a valid boolean", param: "stream_options"}
			}
			st.contUsage = b
		}
	case "max_tokens", "max_completion_tokens":
		if isNull(v) {
			return true, nil
		}
		n, ok := laxInt(v)
		if !ok || n < 1 {
			return true, errBadMax(string(key), v)
		}
		// max_completion_tokens wins over the deprecated max_tokens, as in vLLM.
		if st.maxTokens == 0 || string(key) == "max_completion_tokens" {
			st.maxTokens = n
		}
	case "n":
		if isNull(v) {
			return true, nil
		}
		n, ok := laxInt(v)
		switch {
		case !ok:
			return true, &badRequest{msg: "n: Input should be a valid integer", param: "n"}
		case n < 1:
			return true, &badRequest{msg: "n must be at least 1, got " + string(v) + ".", param: "n", serving: true}
		case n > maxN:
			return true, &badRequest{msg: "n must be at most " + strconv.Itoa(maxN) + ", got " + string(v) + ".", param: "n", serving: true}
		}
		st.n = int(n)
	case "seed":
		if isNull(v) {
			return true, nil
		}
		n, ok := laxInt(v)
		if !ok {
			return true, errBadSeed
		}
		st.seed, st.hasSeed = n, true
	case "stop":
		if !st.parseStops(v, false) {
			return true, errBadStop
		}
	case "logprobs":
		return true, st.parseLogprobs(v)
	case "top_logprobs":
		// Chat's; the legacy completions API has none, and ignores it as an extra.
		if st.route != rChat {
			return false, nil
		}
		if isNull(v) {
			st.topNull = true
			return true, nil
		}
		n, ok := laxInt(v)
		if !ok {
			return true, &badRequest{msg: "top_logprobs: Input should be a valid integer", param: "top_logprobs"}
		}
		st.topLogprobs = n
	case "temperature", "top_p":
		// An unsigned JSON number is a valid temperature: the common case needs no
		// ParseFloat.
		if isNull(v) || string(key) == "temperature" && v[0] >= '0' && v[0] <= '9' {
			return true, nil
		}
		f, ok := jsonscan.Float(v)
		if !ok {
			return true, &badRequest{msg: string(key) + ": Input should be a valid number", param: string(key)}
		}
		if string(key) == "temperature" {
			st.temperature = f
		} else {
			st.topP = f
		}
	case "min_tokens":
		if isNull(v) {
			return true, nil
		}
		n, ok := laxInt(v)
		if !ok {
			return true, &badRequest{msg: "min_tokens: Input should be a valid integer", param: "min_tokens"}
		}
		st.minTokens = n
	case "ignore_eos", "include_stop_str_in_output":
		// vLLM's sampling extras, plain bools (null refused).
		b, ok := jsonscan.Bool(v)
		if !ok {
			return true, &badRequest{msg: string(key) + ": Input should be a valid boolean", param: string(key)}
		}
		if string(key) == "ignore_eos" {
			st.ignoreEOS = b
		} else {
			st.inclStop = b
		}
	case "request_id":
		return true, st.setRequestID(v)
	default:
		return false, nil
	}
	return true, nil
}

// parseLogprobs reads logprobs: chat's flag, or the legacy completions' count of top
// candidates per token.
func (st *state) parseLogprobs(v []byte) *badRequest {
	if isNull(v) {
		return nil
	}
	if st.route == rChat {
		b, ok := jsonscan.Bool(v)
		if !ok {
			return &badRequest{msg: "logprobs: Input should be a valid boolean", param: "logprobs"}
		}
		st.logprobs = b
		return nil
	}
	n, ok := jsonscan.Int(v)
	if !ok {
		return &badRequest{msg: "logprobs: Input should be a valid integer", param: "logprobs"}
	}
	// vLLM's CompletionRequest.check_logprobs.
	if n < 0 && n != -1 {
		return &badRequest{msg: "Value error, `logprobs` must be a positive value or -1."}
	}
	st.logprobs, st.topLogprobs = true, n
	return nil
}

// checkTopLogprobs is vLLM's ChatCompletionRequest.check_logprobs, which runs as the
// body is validated.
func (st *state) checkTopLogprobs() *badRequest {
	n := st.topLogprobs
	if n < 0 && n != -1 {
		return &badRequest{msg: "Value error, `top_logprobs` must be a positive value or -1."}
	}
	if n != 0 && !st.logprobs {
		return &badRequest{msg: "Value error, when using `top_logprobs`, `logprobs` must be set to true."}
	}
	return nil
}

// maxN bounds the choices of one request, so that a fuzzed n cannot exhaust memory.
const maxN = 128

// choiceHash seeds choice i of n: the first is the prompt's own answer, so n leaves
// it unchanged, and the others differ from it and from each other.
func choiceHash(h uint64, i int) uint64 {
	if i == 0 {
		return h
	}
	return mix(h ^ uint64(i)*golden)
}

// parseChat reads a chat completions request.
func (st *state) parseChat(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if known, e := st.parseCommon(k, v); known {
			if e != nil {
				return e
			}
			continue
		}
		switch string(k) {
		case "messages":
			st.messages = v
		case "tools":
			st.tools = v
		case "response_format":
			st.respFormat = v
		case "tool_choice":
			st.toolChoice = v
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	if st.messages == nil {
		return &badRequest{msg: "messages: Field required", param: "messages"}
	}
	n, ok := messagesBytes(st.messages)
	if !ok {
		return &badRequest{msg: "messages: Input should be a valid list of messages", param: "messages"}
	}
	if e := st.checkStreamOptions(); e != nil {
		return e
	}
	if e := st.checkTopLogprobs(); e != nil {
		return e
	}
	// vLLM's chat answers logprobs only when top_logprobs is not None, and an
	// explicit null is.
	st.logprobs = st.logprobs && !st.topNull
	st.promptTokens = promptTokens(n + st.toolsBytes(st.tools))
	st.setStops()
	return nil
}

// parseCompletions reads a legacy completions request; each prompt becomes an item.
func (st *state) parseCompletions(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	var prompt, zeroMax []byte
	sawMax := false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "max_completion_tokens":
			// Not a member of vLLM's CompletionRequest: ignored, as extra fields are.
			continue
		case "max_tokens":
			sawMax = true
			// max_tokens 0 asks for the prompt alone with echo (OpenAI's legacy
			// API, vLLM's echo_without_generation); the last one given counts.
			if n, ok := laxInt(v); ok && n == 0 {
				zeroMax, st.maxTokens = v, 0
				continue
			}
			zeroMax = nil
		case "echo":
			b, ok := jsonscan.Bool(v)
			if !ok && !isNull(v) {
				return &badRequest{msg: "echo: Input should be a valid boolean", param: "echo"}
			}
			st.echo = b
			continue
		case "suffix":
			// Refused once the model is known (admit), as vLLM's create_completion
			// does.
			switch {
			case jsonscan.IsString(v):
				st.suffix = true
			case !isNull(v):
				return &badRequest{msg: "suffix: Input should be a valid string", param: "suffix"}
			}
			continue
		}
		if known, e := st.parseCommon(k, v); known {
			if e != nil {
				return e
			}
			continue
		}
		if string(k) == "prompt" {
			prompt = v
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	if prompt == nil {
		return &badRequest{msg: "prompt: Field required", param: "prompt"}
	}
	if !st.parseInputs(prompt) {
		return &badRequest{msg: "prompt: Input should be a string, a list of strings, a list of tokens or a list of token lists", param: "prompt"}
	}
	if e := st.checkStreamOptions(); e != nil {
		return e
	}
	if zeroMax != nil {
		if !st.echo {
			// Without echo vLLM's SamplingParams refuses it as any count under 1.
			return errBadMax("max_tokens", zeroMax)
		}
		st.echoOnly = true
	}
	if !sawMax {
		st.maxTokens = defaultCompletionMaxTokens
	}
	st.setStops()
	return nil
}

// defaultCompletionMaxTokens is vLLM's CompletionRequest default for max_tokens (and
// OpenAI's legacy API's); an explicit null lifts it.
const defaultCompletionMaxTokens = 16

// setRequestID reads the body's request_id, vLLM's extra parameter, which names the
// answer when no X-Request-Id header came.
func (st *state) setRequestID(v []byte) *badRequest {
	if !jsonscan.IsString(v) {
		return &badRequest{msg: "request_id: Input should be a valid string", param: "request_id"}
	}
	// The scanner has checked the string: its inside is valid in a JSON string as
	// it is.
	if id := v[1 : len(v)-1]; !st.hdr.reqID && len(id) <= maxRequestIDLen {
		st.reqID = append(st.reqID[:0], id...)
	}
	return nil
}

// parseInputs reads OpenAI's prompt/input union: a string, an array of strings, an
// array of token ids, or an array of token-id arrays. Each input is hashed as its raw
// bytes, and counted as its tokens (ids) or about four bytes a token (text).
func (st *state) parseInputs(raw []byte) bool {
	seed := st.s.opts.Seed
	if jsonscan.IsString(raw) {
		st.items = append(st.items, item{h: promptHash(seed, st.seed, st.hasSeed, raw), tokens: promptTokens(strLen(raw))})
		st.keepEcho(raw, false)
		return true
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		return false
	}
	first, ok := a.Next()
	if !ok {
		return false
	}
	if isNumber(first) {
		n, ok := countInts(raw)
		if !ok {
			return false
		}
		st.items = append(st.items, item{h: promptHash(seed, st.seed, st.hasSeed, raw), tokens: n})
		st.keepEcho(raw, true)
		return true
	}
	a.Reset(raw)
	for {
		v, more := a.Next()
		if !more {
			return true
		}
		switch {
		case jsonscan.IsString(v):
			st.items = append(st.items, item{h: promptHash(seed, st.seed, st.hasSeed, v), tokens: promptTokens(strLen(v))})
			st.keepEcho(v, false)
		case len(v) > 0 && v[0] == '[':
			n, ok := countInts(v)
			if !ok || n == 0 {
				return false
			}
			st.items = append(st.items, item{h: promptHash(seed, st.seed, st.hasSeed, v), tokens: n})
			st.keepEcho(v, true)
		default:
			return false
		}
	}
}

// keepEcho copies the last item's prompt for echo (a completions request's), as vLLM
// echoes it: a text prompt as it came, a token-id prompt (raw, an array of integers)
// detokenized, as /detokenize spells it.
func (st *state) keepEcho(raw []byte, ids bool) {
	if !st.echo || st.route != rCompletions {
		return
	}
	it := &st.items[len(st.items)-1]
	it.echoFrom, it.ids = len(st.echoBuf), ids
	if ids {
		var a jsonscan.Array
		a.Reset(raw)
		for i := 0; ; i++ {
			v, ok := a.Next()
			if !ok {
				break
			}
			if i > 0 {
				st.echoBuf = append(st.echoBuf, ' ')
			}
			id, _ := jsonscan.Int(v)
			st.echoBuf = append(st.echoBuf, words[uint64(id)&(vocabSize-1)]...)
		}
		it.echoTo = len(st.echoBuf)
		it.echoChars = it.echoTo - it.echoFrom
		return
	}
	// The scanner has checked the string: its inside is valid in a JSON string as
	// it is.
	st.echoBuf = append(st.echoBuf, raw[1:len(raw)-1]...)
	it.echoTo = len(st.echoBuf)
	st.echoDec, _ = jsonscan.AppendUnescape(st.echoDec[:0], st.echoBuf[it.echoFrom:])
	it.echoChars = utf8.RuneCount(st.echoDec)
}

// echoOf is the item whose prompt choice c echoes, or nil without echo.
func (st *state) echoOf(c int) *item {
	if !st.echo {
		return nil
	}
	return &st.items[c/max(st.n, 1)]
}

// appendEcho appends the prompt choice c echoes: nothing without echo.
func (st *state) appendEcho(b []byte, c int) []byte {
	if it := st.echoOf(c); it != nil {
		b = append(b, st.echoBuf[it.echoFrom:it.echoTo]...)
	}
	return b
}

func isNumber(v []byte) bool { return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') }

// countInts counts the elements of an array of integers.
func countInts(raw []byte) (int, bool) {
	var a jsonscan.Array
	if !a.Reset(raw) {
		return 0, false
	}
	n := 0
	for {
		v, ok := a.Next()
		if !ok {
			return n, true
		}
		if _, ok := jsonscan.Int(v); !ok {
			return 0, false
		}
		n++
	}
}

// admit runs the checks every generation request shares after parsing: the model,
// the context length and sampling parameters, the error-rate draw and a scheduler
// slot. false means the answer has been written, or the client is gone.
func (s *Server) admit(ctx *fasthttp.RequestCtx, st *state) bool {
	if !s.modelOK(st.modelRaw, st.scratch) {
		s.modelNotFound(ctx, st, st.modelRaw)
		return false
	}
	if st.suffix {
		s.badRequest(ctx, st, errSuffix)
		return false
	}
	if e := st.checkContext(); e != nil {
		s.badRequest(ctx, st, e)
		return false
	}
	if s.chance(s.opts.ErrorRate) {
		s.injectedError(ctx, st)
		return false
	}
	st.created = s.opts.Now().Unix()
	if st.stream {
		st.queued = true
		return true
	}
	switch s.acquireSeq(st) {
	case nil:
	case errGone:
		ctx.SetConnectionClose()
		st.countAbort()
		return false
	default:
		s.unavailable(ctx, st)
		return false
	}
	st.held = true
	return true
}

// checkContext refuses a request that does not fit MaxModelLen, as vLLM does before
// it queues the request (each completions prompt and embeddings input is checked),
// then checks the sampling parameters as vLLM's SamplingParams does, against the
// max_tokens the context leaves.
func (st *state) checkContext() *badRequest {
	s := st.s
	route := st.route
	if route == rMessages && !s.anthropic {
		// vLLM serves the Messages API as a chat completion.
		route = rChat
	}
	switch route {
	case rChat, rResponses:
		if e := s.contextTooLong(st.promptTokens, st.maxTokens); e != nil {
			return e
		}
		return st.checkSampling(st.maxTokensFor(st.promptTokens))
	case rCompletions:
		for _, it := range st.items {
			if e := s.contextTooLong(it.tokens, st.maxTokens); e != nil {
				return e
			}
			if e := st.checkSampling(st.maxTokensFor(it.tokens)); e != nil {
				return e
			}
		}
	case rEmbeddings:
		for _, it := range st.items {
			if e := s.embeddingTooLong(it.tokens); e != nil {
				return e
			}
		}
	}
	return nil
}

// maxTokensFor is the max_tokens of a prompt of prompt tokens: the request's, else
// what the context leaves (vLLM's get_max_tokens).
func (st *state) maxTokensFor(prompt int) int64 {
	if st.maxTokens > 0 {
		return st.maxTokens
	}
	return int64(st.s.opts.MaxModelLen - prompt)
}

// done finishes a non-streamed answer: it waits out the generation time, releases
// the slot and counts the tokens. false means the client left meanwhile: as vLLM
// (@with_cancellation) the request is aborted, and nothing is to be written.
func (st *state) done(ctx *fasthttp.RequestCtx, steps, generated int) bool {
	s := st.s
	st.steps = steps
	alive := st.wait(st.generationDelay(steps))
	s.releaseSeq()
	st.held = false
	if !alive {
		ctx.SetConnectionClose()
		st.countAbort()
		return false
	}
	s.genTok.Add(int64(generated))
	st.countFinish()
	st.observeTTFT()
	st.observeEnd()
	return true
}

func (s *Server) chat(ctx *fasthttp.RequestCtx, st *state) {
	if e := st.parseChat(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if !s.admit(ctx, st) {
		return
	}
	h := promptHash(s.opts.Seed, st.seed, st.hasSeed, st.messages)
	steps, generated := 0, 0
	maxTokens := st.maxTokensFor(st.promptTokens)
	for i := range max(st.n, 1) {
		p := newPlan(choiceHash(h, i), s.opts.MaxTokens, maxTokens, st.hdr.tokens, int(st.minTokens), st.ignoreEOS)
		st.scratch = p.applyStops(st.stops, st.scratch, int(st.minTokens), st.inclStop)
		st.plans = append(st.plans, p)
	}
	st.setToolCalls(st.tools)
	st.setStructured(h, s.opts.MaxTokens, maxTokens)
	for i := range st.plans {
		steps = max(steps, st.plans[i].n)
		generated += st.plans[i].n
	}
	st.idA, st.idB = s.nextID(h)
	s.promptTok.Add(int64(st.promptTokens))
	if st.stream {
		st.kind = kChat
		s.startOpenAIStream(ctx, st, "chatcmpl-", "chat.completion.chunk")
		return
	}
	if !st.done(ctx, steps, generated) {
		return
	}
	b := st.out[:0]
	b = appendHead(b, st, "chatcmpl-", "chat.completion")
	b = append(b, `,"choices":[`...)
	for i := range st.plans {
		p := &st.plans[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		if st.calls.n > 0 {
			b = append(b, `,"message":{"role":"assistant","content":null,"refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":`...)
			b = st.appendToolCalls(b)
			b = append(b, `,"reasoning_content":null},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}`...)
			continue
		}
		if st.format.on {
			b = st.appendStructuredChoice(b, p, i)
			continue
		}
		b = append(b, `,"message":{"role":"assistant","content":"`...)
		b = p.appendText(b)
		b = append(b, `","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning_content":null},"logprobs":`...)
		b = st.appendLogprobs(b, p, 0, p.n, 0, nil)
		b = append(b, `,"finish_reason":`...)
		b = appendFinish(b, st, p)
		b = append(b, '}')
	}
	b = append(b, `],"service_tier":null,"system_fingerprint":null,"usage":`...)
	b = st.appendUsage(b, st.promptTokens, generated, false)
	b = append(b, `,"prompt_logprobs":null,"kv_transfer_params":null}`...)
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

func (s *Server) completions(ctx *fasthttp.RequestCtx, st *state) {
	if e := st.parseCompletions(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if !s.admit(ctx, st) {
		return
	}
	steps, generated := 0, 0
	// vLLM numbers the choices prompt by prompt: prompt i's choice j is i*n + j.
	for _, it := range st.items {
		maxTokens := st.maxTokensFor(it.tokens)
		for j := range max(st.n, 1) {
			p := newPlan(choiceHash(it.h, j), s.opts.MaxTokens, maxTokens, st.hdr.tokens, int(st.minTokens), st.ignoreEOS)
			st.scratch = p.applyStops(st.stops, st.scratch, int(st.minTokens), st.inclStop)
			if st.echoOnly {
				// Nothing generated: the choice ends at its length, its text the
				// echoed prompt.
				p.n, p.stop = 0, false
			}
			// A stream's text offsets count on after the echoed prompt.
			p.off = it.echoChars
			st.plans = append(st.plans, p)
			steps = max(steps, p.n)
			generated += p.n
		}
		st.promptTokens += it.tokens
	}
	st.idA, st.idB = s.nextID(st.items[0].h)
	s.promptTok.Add(int64(st.promptTokens))
	if st.stream {
		st.kind = kCompletion
		s.startOpenAIStream(ctx, st, "cmpl-", "text_completion")
		return
	}
	if !st.done(ctx, steps, generated) {
		return
	}
	b := st.out[:0]
	b = appendHead(b, st, "cmpl-", "text_completion")
	b = append(b, `,"choices":[`...)
	for i := range st.plans {
		p := &st.plans[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"text":"`...)
		// vLLM's echo: the prompt, then the completion.
		b = st.appendEcho(b, i)
		b = p.appendText(b)
		b = append(b, `","logprobs":`...)
		b = st.appendLogprobs(b, p, 0, p.n, p.off, st.echoOf(i))
		b = append(b, `,"finish_reason":`...)
		b = appendFinish(b, st, p)
		b = append(b, `,"prompt_logprobs":null}`...)
	}
	b = append(b, `],"usage":`...)
	b = st.appendUsage(b, st.promptTokens, generated, false)
	b = append(b, '}')
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// appendHead opens a response object: id, object, created, model. The id is vLLM's:
// the prefix and the request's id (X-Request-Id, else the body's request_id), or when
// it has none one of the server's, 32 hex digits as vLLM's random_uuid.
func appendHead(b []byte, st *state, idPrefix, object string) []byte {
	b = append(b, `{"id":"`...)
	b = st.appendID(b, idPrefix)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, st.created, 10)
	b = append(b, `,"model":`...)
	return append(b, st.s.modelJSON...)
}

// appendID appends an answer's id, the inside of its JSON string: the prefix and the
// request's id, or when it has none one of the server's.
func (st *state) appendID(b []byte, idPrefix string) []byte {
	b = append(b, idPrefix...)
	if len(st.reqID) > 0 {
		return append(b, st.reqID...)
	}
	b = appendHex64(b, st.idA)
	return appendHex64(b, st.idB)
}

// appendFinish appends finish_reason and vLLM's stop_reason (the matched stop string).
func appendFinish(b []byte, st *state, p *plan) []byte {
	if p.stop {
		b = append(b, `"stop"`...)
	} else {
		b = append(b, `"length"`...)
	}
	b = append(b, `,"stop_reason":`...)
	if p.stopSeq >= 0 {
		return appendQuoteBytes(b, st.stops[p.stopSeq])
	}
	return append(b, "null"...)
}

// appendUsage appends a request's final usage: the prompt_tokens_details of vLLM run
// with --enable-prompt-tokens-details and prefix caching, which holds the tokens
// x-mock-cached-tokens says the prefix cache served, and is null (as vLLM has it)
// when there were none, or left out in a stream's usage chunk, which vLLM writes
// without its None members (exclude_none).
func (st *state) appendUsage(b []byte, prompt, completion int, stream bool) []byte {
	b = appendUsage(b, prompt, completion)
	cached, _, _ := st.cacheCounts(prompt)
	switch {
	case cached == 0 && stream:
		return append(b, '}')
	case cached == 0:
		return append(b, `,"prompt_tokens_details":null}`...)
	}
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, int64(cached), 10)
	return append(b, "}}"...)
}

// appendUsage appends a usage object, less its prompt_tokens_details and closing
// brace.
func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	b = append(b, `,"completion_tokens":`...)
	return strconv.AppendInt(b, int64(completion), 10)
}

// Stream phases of the OpenAI grammar.
const (
	oRole = iota
	oContent
	oFinal
	oUsage
	oDone
	oEnd
	// oTools sends a tool calls answer's chunks (toolcalls.go), then its finish.
	oTools
)

// startOpenAIStream renders the part every event shares ("data: {id, object,
// created, model, choices:[") once, and hands the state to fasthttp.
func (s *Server) startOpenAIStream(ctx *fasthttp.RequestCtx, st *state, idPrefix, object string) {
	b := append(st.prefix[:0], "data: "...)
	b = appendHead(b, st, idPrefix, object)
	st.prefix = append(b, `,"choices":[`...)
	st.ttftD, st.tpotD = st.ttft(), st.tpot()
	total := 0
	for i := range st.plans {
		total += st.plans[i].n
		st.steps = max(st.steps, st.plans[i].n)
	}
	st.cutAfter = st.cutPoint(total)
	if st.kind == kCompletion {
		st.phase = oContent
	}
	s.beginStream(ctx, st)
}

// nextOpenAI yields chat.completion.chunk or text_completion events: the role delta
// (chat), one event per token (choices of one step interleaved; a choice's last token
// carries its finish_reason), a finish event for a choice without tokens, the usage
// event when include_usage was asked for, and [DONE].
func (st *state) nextOpenAI() ([]byte, error) {
	b := st.ev[:0]
	switch st.phase {
	case oRole:
		// One role chunk per choice, as vLLM sends them.
		if err := st.waitContent(0); err != nil {
			return nil, err
		}
		b = append(b, st.prefix...)
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(st.choice), 10)
		b = append(b, `,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`...)
		b = st.endChunk(b, st.choice, 0)
		st.choice++
		if st.choice == len(st.plans) {
			st.phase, st.choice = oContent, 0
			if st.calls.n > 0 {
				st.phase = oTools
			}
		}
	case oTools:
		if st.cutNow() {
			return nil, errCut
		}
		b = append(b, st.prefix...)
		if st.step == st.plans[0].n {
			b = append(b, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}`...)
			b = st.endChunk(b, 0, st.emitted)
			st.phase = oUsage
			if !st.includeUsage {
				st.phase = oDone
			}
			break
		}
		if err := st.waitContent(st.step); err != nil {
			return nil, err
		}
		b = st.appendToolDelta(b, st.step)
		st.step++
		st.emitted++
		b = st.endChunk(b, 0, st.emitted)
	case oContent:
		c, ok := st.nextToken()
		if !ok {
			st.phase, st.choice = oFinal, 0
			return st.nextOpenAI()
		}
		if st.cutNow() {
			return nil, errCut
		}
		if err := st.waitContent(st.step); err != nil {
			return nil, err
		}
		p := &st.plans[c]
		b = append(b, st.prefix...)
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(c), 10)
		if st.kind == kChat && st.format.on {
			b = st.appendStructuredDelta(b, p, c)
		} else if st.kind == kChat {
			b = append(b, `,"delta":{"content":"`...)
			b = p.appendToken(b, st.step)
			b = append(b, `"},"logprobs":`...)
		} else {
			b = append(b, `,"text":"`...)
			// vLLM echoes the prompt in a choice's first chunk, before its first
			// token.
			if st.step == 0 {
				b = st.appendEcho(b, c)
			}
			b = p.appendToken(b, st.step)
			b = append(b, `","logprobs":`...)
		}
		if st.logprobs && !st.format.on {
			var echo *item
			if st.step == 0 {
				echo = st.echoOf(c)
			}
			b = st.appendLogprobs(b, p, st.step, st.step+1, p.off, echo)
			p.off += p.tokenLen(st.step)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"finish_reason":`...)
		// vLLM puts finish_reason on the chunk of a choice's last token; there is no
		// separate empty-delta finish chunk.
		switch {
		case st.step == p.n-1:
			b = st.appendChatFinish(b, p)
		case st.kind == kChat:
			b = append(b, "null"...)
		default:
			b = append(b, `null,"stop_reason":null`...)
		}
		b = append(b, '}')
		st.emitted++
		b = st.endChunk(b, c, st.step+1)
		st.choice = c + 1
	case oFinal:
		if st.cutNow() {
			return nil, errCut
		}
		// Only a choice that generated nothing still needs its finish chunk.
		for st.choice < len(st.plans) && st.plans[st.choice].n > 0 {
			st.choice++
		}
		if st.choice == len(st.plans) {
			st.phase = oUsage
			if !st.includeUsage {
				st.phase = oDone
			}
			return st.nextOpenAI()
		}
		c := st.choice
		p := &st.plans[c]
		b = append(b, st.prefix...)
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(c), 10)
		if st.kind == kChat {
			b = append(b, `,"delta":{},"logprobs":null,"finish_reason":`...)
		} else {
			b = append(b, `,"text":"`...)
			b = st.appendEcho(b, c)
			b = append(b, `","logprobs":`...)
			if it := st.echoOf(c); it != nil {
				b = st.appendLogprobs(b, p, 0, 0, p.off, it)
			} else {
				b = append(b, "null"...)
			}
			b = append(b, `,"finish_reason":`...)
		}
		b = st.appendChatFinish(b, p)
		b = append(b, '}')
		b = st.endChunk(b, c, 0)
		st.choice++
	case oUsage:
		b = append(b, st.prefix...)
		b = append(b, `],"usage":`...)
		b = st.appendUsage(b, st.promptTokens, st.emitted, true)
		b = append(b, "}\n\n"...)
		st.phase = oDone
	case oDone:
		b = append(b, "data: [DONE]\n\n"...)
		st.phase = oEnd
		st.finished = true
	default:
		return nil, io.EOF
	}
	st.ev = b
	return b, nil
}

// endChunk closes the choices of a chunk about choice c, and the chunk (a completions
// chunk with "usage":null, as vLLM writes it). With
// continuous_usage_stats it adds choice c's usage so far, completion being its tokens
// sent, as vLLM does on every chunk (serving_chat.py: completion_tokens =
// previous_num_tokens[i]); a completions choice counts its own prompt's tokens.
func (st *state) endChunk(b []byte, c, completion int) []byte {
	if !st.contUsage || !st.includeUsage {
		if st.kind == kCompletion {
			// vLLM writes a completions chunk with all its fields
			// (serving_completion.py: exclude_unset=False), usage null included.
			return append(b, `],"usage":null}`+"\n\n"...)
		}
		return append(b, "]}\n\n"...)
	}
	prompt := st.promptTokens
	if st.kind == kCompletion {
		prompt = st.items[c/max(st.n, 1)].tokens
	}
	b = append(b, `],"usage":`...)
	// vLLM's usage on every chunk has no prompt_tokens_details, only the final one:
	// a chat chunk leaves it out (exclude_unset), a completions chunk writes its
	// None.
	b = appendUsage(b, prompt, completion)
	if st.kind == kChat {
		return append(b, "}}\n\n"...)
	}
	return append(b, `,"prompt_tokens_details":null}}`+"\n\n"...)
}

// nextToken advances (step, choice) to the next choice that has a token at step.
func (st *state) nextToken() (int, bool) {
	for {
		live := false
		for c := st.choice; c < len(st.plans); c++ {
			if st.plans[c].n > st.step {
				st.choice = c
				return c, true
			}
		}
		for c := range st.plans {
			if st.plans[c].n > st.step+1 {
				live = true
				break
			}
		}
		if !live {
			return 0, false
		}
		st.step++
		st.choice = 0
	}
}

// models answers GET /v1/models with vLLM's model card (or Anthropic's list).
func (s *Server) models(ctx *fasthttp.RequestCtx, st *state) {
	now := s.opts.Now()
	b := st.out[:0]
	if s.anthropic {
		b = append(b, `{"data":[{"type":"model","id":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"display_name":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"created_at":"`...)
		b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
		b = append(b, `"}],"has_more":false,"first_id":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"last_id":`...)
		b = append(b, s.modelJSON...)
		b = append(b, '}')
	} else {
		created := now.Unix()
		b = append(b, `{"object":"list","data":[{"id":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"object":"model","created":`...)
		b = strconv.AppendInt(b, created, 10)
		b = append(b, `,"owned_by":"vllm","root":`...)
		b = append(b, s.modelJSON...)
		b = append(b, `,"parent":null,"max_model_len":`...)
		b = strconv.AppendInt(b, int64(s.opts.MaxModelLen), 10)
		b = append(b, `,"permission":[{"id":"modelperm-`...)
		b = appendHex64(b, mix(uint64(s.opts.Seed)))
		b = appendHex64(b, mix(uint64(created)))
		b = append(b, `","object":"model_permission","created":`...)
		b = strconv.AppendInt(b, created, 10)
		b = append(b, `,"allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}]}]}`...)
	}
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// laxInt reads an integer field as vLLM's pydantic models do in lax mode: a whole
// number written as a float (3.0, 5e3) or as a string ("3", "3.0"; jsonscan.Count) is
// that integer; a fraction is not one.
// checkStreamOptions is vLLM's validate_stream_options, then the stream_options
// field's type check.
func (st *state) checkStreamOptions() *badRequest {
	switch {
	case st.streamOpts && !st.stream:
		return errBadOptions
	case st.optsType:
		return errOptionsType
	}
	return nil
}

// pyTruthy reports whether the JSON value v is true in Python's bool() once
// decoded: false for false, null, 0, "", [] and {}.
func pyTruthy(v []byte) bool {
	switch v[0] {
	case '{', '[':
		return jsonscan.SkipSpace(v, 1) < len(v)-1
	case '"':
		return len(v) > 2
	case 'f', 'n':
		return false
	case 't':
		return true
	}
	f, ok := jsonscan.Float(v)
	return !ok || f != 0
}

func laxInt(v []byte) (int64, bool) { return jsonscan.Count(v, math.MaxInt64) }
