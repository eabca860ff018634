package mockllm

import (
	"io"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// kind selects a stream's event grammar.
type kind uint8

const (
	kChat kind = iota
	kCompletion
	kMessages
	kResponses
	kAudio
)

// item is one prompt of a completions request or one input of an embeddings request.
type item struct {
	h      uint64
	tokens int
	// With echo, the prompt as it goes back: echoBuf[echoFrom:echoTo], escaped for a
	// JSON string; echoChars its length in characters (text offsets count them, as
	// Python's len); ids marks a prompt of token ids, echoed as /detokenize spells it.
	echoFrom, echoTo int
	echoChars        int
	ids              bool
}

// state is one request, pooled. When the answer streams, it is also the response body
// (fasthttp calls WriteTo, then Close), so it owns copies of everything the events
// need: nothing in it points into the request after the handler returns.
type state struct {
	s     *Server
	conn  *watchConn // nil when the handler runs on a server of another's
	hdr   overrides
	owned bool
	route route

	// The parsed request. modelRaw, messages and tools point into the request body
	// and are used only inside the handler.
	modelRaw     []byte
	messages     []byte
	tools        []byte
	respFormat   []byte // chat: response_format, in the request
	toolChoice   []byte // chat: tool_choice, in the request
	forced       uint8  // chat: the tool call tool_choice forces (structured.go)
	stream       bool
	streamOpts   bool // stream_options is truthy, as vLLM's check reads it
	includeUsage bool
	contUsage    bool
	optsType     bool // stream_options is neither null nor an object
	maxTokens    int64
	n            int
	seed         int64
	hasSeed      bool
	promptTokens int
	items        []item
	stopOff      []int
	stops        [][]byte
	stopBuf      []byte
	base64       bool
	dims         int
	logprobs     bool
	topLogprobs  int64 // chat: top_logprobs; completions: logprobs
	topNull      bool  // chat: "top_logprobs": null
	minTokens    int64
	ignoreEOS    bool
	inclStop     bool // include_stop_str_in_output
	echo         bool
	echoOnly     bool // completions: echo with max_tokens 0, each prompt alone (vLLM's echo_without_generation)
	suffix       bool
	temperature  float64
	topP         float64
	caps         claudeCaps
	noDisable    *badRequest // the model's refusal of thinking disabled; nil where taken
	effort       []byte      // output_config.effort as sent, in the request; nil for the default
	// useIDs are the tool_use ids of a Messages request's history, as sent (JSON
	// strings, in the request), and useDone which of them a tool_result answered.
	useIDs  [][]byte
	useDone []bool
	// rid is an Anthropic answer's request-id header, also its error body's request_id.
	rid []byte
	// rsp is a Responses API request's (responses.go).
	rsp respState
	// rank is a rerank or score request's (rerank.go).
	rank rankState
	// aud is an audio transcription or translation request's (audio.go).
	aud audioState

	// The answer. Its id ends in reqID (the X-Request-Id header, else the body's
	// request_id, escaped for a JSON string), or when none was usable in idA and idB.
	plans   []plan
	reqID   []byte
	idA     uint64
	idB     uint64
	created int64
	tool    toolCall
	calls   chatCalls
	think   thinkingAnswer
	format  formatAnswer
	steps   int // generation steps: the longest choice, or Anthropic's content events

	queueD time.Duration // how long the request waited for a slot

	// The scheduler: a waiting request's links in the queue, and how its grant comes
	// (wake when its connection is not watched).
	qPrev    *state
	qNext    *state
	granted  bool
	watching bool
	wake     chan struct{}

	out      []byte
	scratch  []byte
	vec      []float32
	echoBuf  []byte
	echoDec  []byte
	echoCuts []int

	recHdr  []byte
	recBody []byte
	recPath []byte

	// Stream progress.
	kind     kind
	phase    int
	step     int
	choice   int
	lastStep int
	started  bool
	emitted  int
	cutAfter int
	held     bool
	queued   bool // a stream that has yet to take its slot
	finished bool
	failed   bool // ended by an error event (x-mock-error-after)
	ttftD    time.Duration
	tpotD    time.Duration
	// paceAt is when the last step's content was due (real timers only): each later
	// step is due tpotD after the one before, whenever a timer woke for it.
	paceAt  time.Time
	prefix  []byte
	ev      []byte
	pending []byte
	jsonOff int
}

// reset clears the request fields and keeps every buffer's capacity.
func (st *state) reset() {
	s := st.s
	*st = state{
		s:        s,
		hdr:      overrides{retryAfter: st.hdr.retryAfter[:0], tier: st.hdr.tier[:0], toolArgs: st.hdr.toolArgs[:0], cutAfter: -1, errorAfter: -1},
		items:    st.items[:0],
		stopOff:  st.stopOff[:0],
		stops:    st.stops[:0],
		stopBuf:  st.stopBuf[:0],
		plans:    st.plans[:0],
		reqID:    st.reqID[:0],
		useIDs:   st.useIDs[:0],
		useDone:  st.useDone[:0],
		rid:      st.rid[:0],
		rsp:      respState{items: st.rsp.items[:0]},
		rank:     st.rank.reset(),
		aud:      st.aud.reset(),
		echoBuf:  st.echoBuf[:0],
		echoDec:  st.echoDec[:0],
		echoCuts: st.echoCuts[:0],
		tool:     toolCall{name: st.tool.name[:0], input: st.tool.input[:0], text: st.tool.text[:0]},
		calls:    chatCalls{names: st.calls.names[:0], ends: st.calls.ends[:0]},
		think:    thinkingAnswer{text: st.think.text[:0], sig: st.think.sig[:0]},
		format:   formatAnswer{text: st.format.text[:0]},
		out:      st.out[:0],
		scratch:  st.scratch[:0],
		vec:      st.vec[:0],
		recHdr:   st.recHdr[:0],
		recBody:  st.recBody[:0],
		recPath:  st.recPath[:0],
		prefix:   st.prefix[:0],
		ev:       st.ev[:0],
		wake:     st.wake,
		cutAfter: -1,
		lastStep: -1,
		topP:     1,
	}
}

// setStops turns the collected stop offsets into slices of stopBuf, once stopBuf has
// stopped growing.
func (st *state) setStops() {
	st.stops = st.stops[:0]
	for i := 0; i+1 < len(st.stopOff); i += 2 {
		st.stops = append(st.stops, st.stopBuf[st.stopOff[i]:st.stopOff[i+1]])
	}
}

// addStop appends one decoded stop sequence from raw (a JSON string).
func (st *state) addStop(raw []byte) bool {
	start := len(st.stopBuf)
	var ok bool
	st.stopBuf, ok = appendUnquoted(st.stopBuf, raw)
	if !ok {
		return false
	}
	st.stopOff = append(st.stopOff, start, len(st.stopBuf))
	return true
}

// parseStops reads a string or an array of strings (OpenAI's stop, Anthropic's
// stop_sequences).
func (st *state) parseStops(raw []byte, arrayOnly bool) bool {
	if isNull(raw) {
		return true
	}
	if !arrayOnly && len(raw) > 0 && raw[0] == '"' {
		return st.addStop(raw)
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		return false
	}
	for {
		v, ok := a.Next()
		if !ok {
			return true
		}
		if !st.addStop(v) {
			return false
		}
	}
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// waitContent sleeps before content of generation step step: TTFT before the first,
// TPOT before each later step (the choices of one step come out together). It
// returns errGone when the client left meanwhile.
//
// With real timers a stream is paced by the clock, as an engine's steps are: step k
// is due TTFT plus k TPOTs after the first wait began, so a timer that wakes late
// (a Go timer in an idle process may wake up to a millisecond after its time) delays
// that step alone, not every step after it; a stream of 1ms TPOT would otherwise run
// at about two thirds of its token rate, at a rate that moves with the machine's
// load. A step already due (a client that reads slower than the rate) is not waited
// for. Options.Sleep waits each TPOT whole, as its recorded sleeps show.
func (st *state) waitContent(step int) error {
	real := st.s.opts.Sleep == nil
	if !st.started {
		st.started = true
		st.lastStep = step
		if real {
			st.paceAt = time.Now().Add(st.ttftD)
		}
		if !st.wait(st.ttftD) {
			return errGone
		}
		st.observeTTFT()
		return nil
	}
	d := time.Duration(0)
	if step != st.lastStep {
		st.lastStep = step
		d = st.tpotD
		if real && d > 0 {
			d = st.stepDelay(time.Now())
		}
	}
	if !st.wait(d) {
		return errGone
	}
	return nil
}

// stepDelay moves the pace to the next step's due time and returns how long from now
// that is: negative when it is already due.
func (st *state) stepDelay(now time.Time) time.Duration {
	st.paceAt = st.paceAt.Add(st.tpotD)
	return st.paceAt.Sub(now)
}

// The latency histograms observe what the request was meant to take, as vLLM's engine
// measures it whatever the client's reading speed: the real time it queued for a
// slot, then its TTFT and TPOTs (options or x-mock-* headers). A test that records
// Sleep sees them too, and no clock is read per token.

// observeTTFT records the time to first token, once per choice: vLLM runs each of n
// choices as a request of its own.
func (st *state) observeTTFT() {
	st.s.ttftHist.observe(st.queueD+st.ttft(), len(st.plans))
}

// observeEnd records a finished request's end-to-end latency, per choice, and TPOT as
// its inter-token latency, once per gap between two tokens of a choice.
func (st *state) observeEnd() {
	s := st.s
	s.e2eHist.observe(st.queueD+st.generationDelay(st.steps), len(st.plans))
	gaps := max(st.steps-1, 0)
	if st.route != rMessages {
		gaps = 0
		for i := range st.plans {
			gaps += max(st.plans[i].n-1, 0)
		}
	}
	s.itlHist.observe(st.tpot(), gaps)
}

// cutNow reports whether the stream must be cut before the next content chunk.
func (st *state) cutNow() bool { return st.cutAfter >= 0 && st.emitted >= st.cutAfter }

// next produces the next event in st.ev; io.EOF ends the stream, errCut cuts it.
// The stream's first call takes its scheduler slot, waiting as vLLM's queue does.
func (st *state) next() ([]byte, error) {
	if st.queued {
		st.queued = false
		if err := st.s.acquireSeq(st); err != nil {
			return nil, err
		}
		st.held = true
	}
	switch st.kind {
	case kChat, kCompletion:
		return st.nextOpenAI()
	case kResponses:
		return st.nextResponses()
	case kAudio:
		return st.nextAudio()
	default:
		return st.nextMessages()
	}
}

// SupportsBodyWriteTo tells fasthttp to call WriteTo, which frames and flushes each
// Write as one chunk: one event per flush, with no pipe or goroutine in between.
func (st *state) SupportsBodyWriteTo() bool { return true }

// WriteTo writes the stream's events to w, one Write each.
func (st *state) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		ev, err := st.next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(ev)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// Read serves readers that do not use WriteTo (fasthttp's Body() in tests).
func (st *state) Read(p []byte) (int, error) {
	for len(st.pending) == 0 {
		ev, err := st.next()
		if err != nil {
			return 0, err
		}
		st.pending = ev
	}
	n := copy(p, st.pending)
	st.pending = st.pending[n:]
	return n, nil
}

// Close settles the stream's accounting and returns the state to the pool.
func (st *state) Close() error {
	if !st.owned {
		return nil
	}
	st.owned = false
	s := st.s
	s.genTok.Add(int64(st.generated()))
	switch {
	case st.finished:
		st.countFinish()
		st.observeEnd()
	case st.failed:
		// Counted as injected when the error event went out.
	case st.cutAfter >= 0 && st.emitted >= st.cutAfter:
		s.cut.Add(1)
	default:
		// The client left, or the server shut down, before the stream's end.
		st.countAbort()
	}
	if st.held {
		st.held = false
		s.releaseSeq()
	}
	s.states.Put(st)
	return nil
}

// generated counts the output tokens the stream has sent so far.
func (st *state) generated() int {
	if st.kind == kMessages {
		return st.outputTokensSent()
	}
	return st.emitted
}

// countAbort adds one abort per choice to vllm:request_success_total: vLLM aborts a
// request whose client left and counts it under finished_reason "abort".
func (st *state) countAbort() { st.s.finished[2].Add(int64(max(len(st.plans), 1))) }

// countFinish adds one success per choice to vllm:request_success_total.
func (st *state) countFinish() {
	for i := range st.plans {
		if st.plans[i].stop {
			st.s.finished[0].Add(1)
		} else {
			st.s.finished[1].Add(1)
		}
	}
}
