package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// reqKind is the request a load sends.
type reqKind int

const (
	kindChat reqKind = iota
	kindStream
	kindEmbeddings
	kindResponses
	kindRerank
	kindMessages
)

func (k reqKind) String() string {
	switch k {
	case kindStream:
		return "stream"
	case kindEmbeddings:
		return "embeddings"
	case kindResponses:
		return "responses"
	case kindRerank:
		return "rerank"
	case kindMessages:
		return "messages"
	default:
		return "chat"
	}
}

// target is one path under test: where to send and which model name that
// path expects (the gateway's endpoint name, or the upstream's model).
type target struct {
	Name  string
	Addr  string
	Model string
	// Pid is the proxy process whose memory the streams scenario reads; 0
	// when the path has none (direct).
	Pid int
	// AdminAddr is the gateway's admin listener, for go_goroutines.
	AdminAddr string

	client *fasthttp.HostClient
}

// loadSpec is one open-loop run against one target.
type loadSpec struct {
	Kind      reqKind
	Rate      float64
	Warmup    time.Duration
	Duration  time.Duration
	Conns     int
	MaxTokens int
	Timeout   time.Duration
	// Users > 0 sends X-User-ID: u<(FirstUser + index) % Users> so sticky
	// routing spreads the load over that many users; a path's later rounds
	// start where its earlier ones stopped, so every user is named.
	Users     int
	FirstUser int64
	// CountHeader names a response header whose values are tallied (the
	// gateway's x-tollgate-variant in the ab scenario).
	CountHeader string
	// Spin is the busy-wait tail of the pacer (see waiter).
	Spin time.Duration
	// ReadBuf is the per-connection read buffer (and the SSE line limit);
	// 0 means 64 KiB. streams-10k lowers it to keep the client small.
	ReadBuf int
	// Active, when set, counts streams between their first content chunk
	// and their end.
	Active *atomic.Int64
	// Closed runs the load closed-loop: every worker sends its next request
	// as soon as its last is answered, and Rate is ignored. It measures the
	// highest rate a path sustains at Conns concurrent clients.
	Closed bool
}

func (s *loadSpec) readBuf() int {
	if s.ReadBuf > 0 {
		return s.ReadBuf
	}
	return 64 << 10
}

// runStats is what one run measured. Latency is from the scheduled send
// time to the last body byte; TTFT from the scheduled send time to the
// first content chunk; Gap between consecutive content chunks; Lag from the
// scheduled time to when the pacer queued the request (the load generator's
// own lateness); Wait from then to when a worker took the request up (the
// path's: above a few µs only when all of its workers were busy).
type runStats struct {
	Sent     int64  // every request handed to a worker, warm-up included
	Measured int64  // requests scheduled after the warm-up
	OK       int64  // measured requests that succeeded
	Errs     Errors // measured requests that failed, by kind
	// WarmupErrs are the warm-up's failures: not part of any figure, but a run
	// that has any is not clean (--smoke fails on them).
	WarmupErrs Errors
	// NoFreeWorker counts the measured requests that found every worker busy
	// when the pacer queued them (open loop).
	NoFreeWorker int64
	// Completed counts the answers that succeeded within the measured window,
	// warm-up requests answered in it included: what the path achieved there,
	// however far behind the schedule.
	Completed int64
	Lat       *hdrhistogram.Histogram
	TTFT      *hdrhistogram.Histogram
	Gap       *hdrhistogram.Histogram
	Lag       *hdrhistogram.Histogram
	Wait      *hdrhistogram.Histogram
	Headers   map[string]int64
	Duration  time.Duration // measured window
	// The path's own process over its rounds, warm-up included (Sent's window):
	// CPU time, and garbage collections for a Go process with an admin listener;
	// cpuRounds and gcRounds count the rounds in which each could be read.
	User, Sys                   time.Duration
	GCCycles                    int64
	rounds, cpuRounds, gcRounds int
	// roundP99 holds each merged round's own p99 of Lat, TTFT and Gap (ns; a
	// round without samples of one adds nothing to its list).
	roundP99 [3][]int64
}

func newRunStats() *runStats {
	return &runStats{
		Errs: Errors{}, WarmupErrs: Errors{}, Lat: newHist(), TTFT: newHist(), Gap: newHist(), Lag: newHist(),
		Wait: newHist(), Headers: map[string]int64{},
	}
}

// merge folds o into s; rounds of one path are merged into its total.
func (s *runStats) merge(o *runStats) {
	s.Sent += o.Sent
	s.Measured += o.Measured
	s.OK += o.OK
	s.Errs.add(o.Errs)
	s.WarmupErrs.add(o.WarmupErrs)
	s.NoFreeWorker += o.NoFreeWorker
	s.Completed += o.Completed
	s.Lat.Merge(o.Lat)
	s.TTFT.Merge(o.TTFT)
	s.Gap.Merge(o.Gap)
	s.Lag.Merge(o.Lag)
	s.Wait.Merge(o.Wait)
	for k, v := range o.Headers {
		s.Headers[k] += v
	}
	s.Duration += o.Duration
	s.User += o.User
	s.Sys += o.Sys
	s.GCCycles += o.GCCycles
	s.rounds += o.rounds
	s.cpuRounds += o.cpuRounds
	s.gcRounds += o.gcRounds
	for i := range s.roundP99 {
		s.roundP99[i] = append(s.roundP99[i], o.roundP99[i]...)
	}
}

// markRound makes s one round of its path: its own p99s are kept apart when
// merged, for the median over rounds.
func (s *runStats) markRound() {
	for i, h := range [...]*hdrhistogram.Histogram{s.Lat, s.TTFT, s.Gap} {
		s.roundP99[i] = nil
		if h.TotalCount() > 0 {
			s.roundP99[i] = []int64{h.ValueAtQuantile(99)}
		}
	}
}

// cpuPerRequest is the process CPU per request sent, user and system, in µs; ok only
// when every round could be read (part of the CPU over all of the requests would
// understate it).
func (s *runStats) cpuPerRequest() (user, sys float64, ok bool) {
	if s.rounds == 0 || s.cpuRounds != s.rounds || s.Sent == 0 {
		return 0, 0, false
	}
	n := float64(s.Sent)
	return float64(s.User.Microseconds()) / n, float64(s.Sys.Microseconds()) / n, true
}

// recorder is the shared sink of a run's workers. One mutex is plenty: a
// lock per request is far below the cost of the request itself.
type recorder struct {
	mu sync.Mutex
	st *runStats
	// from and to are the measured window, for runStats.Completed.
	from, to time.Time
}

// outcome is one request's result, filled by the worker.
type outcome struct {
	measured bool
	errKind  string
	lat      time.Duration
	// paced: lag and wait were measured (open loop); busy: every worker was busy
	// when the request was queued.
	paced, busy bool
	lag, wait   time.Duration
	ttft        time.Duration // < 0: none
	gaps        []time.Duration
	header      []byte
}

func (r *recorder) record(o *outcome) {
	now := time.Now()
	r.mu.Lock()
	st := r.st
	st.Sent++
	if o.errKind == "" && !now.Before(r.from) && now.Before(r.to) {
		st.Completed++
	}
	if o.measured && o.busy {
		st.NoFreeWorker++
	}
	switch {
	case o.errKind != "":
		if o.measured {
			st.Measured++
			st.Errs[o.errKind]++
		} else {
			st.WarmupErrs[o.errKind]++
		}
	case o.measured:
		st.Measured++
		st.OK++
		recordDur(st.Lat, o.lat)
		if o.paced {
			recordDur(st.Lag, o.lag)
			recordDur(st.Wait, o.wait)
		}
		if o.ttft >= 0 {
			recordDur(st.TTFT, o.ttft)
		}
		for _, g := range o.gaps {
			recordDur(st.Gap, g)
		}
		if o.header != nil {
			st.Headers[string(o.header)]++
		}
	}
	r.mu.Unlock()
}

// newClient builds the connection pool for one path. Every worker owns at
// most one connection, so MaxConns = workers and no request ever waits for
// a free connection inside the client.
func newClient(addr string, conns int, timeout time.Duration, stream bool, readBuf int) *fasthttp.HostClient {
	if readBuf <= 0 {
		readBuf = 16 << 10
	}
	return &fasthttp.HostClient{
		Addr:                     addr,
		MaxConns:                 conns,
		MaxIdleConnDuration:      clientKeepAlive,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		ReadBufferSize:           readBuf,
		WriteBufferSize:          4 << 10,
		StreamResponseBody:       stream,
		NoDefaultUserAgentHeader: true,
	}
}

// requestBody is the body sent to a path; only the model differs between
// paths, so every path does identical work upstream.
func requestBody(k reqKind, model string, maxTokens int) []byte {
	var b []byte
	switch k {
	case kindEmbeddings:
		b = append(b, `{"model":`...)
		b = strconv.AppendQuote(b, model)
		b = append(b, `,"input":"The quick brown fox jumps over the lazy dog.","encoding_format":"float"}`...)
	case kindResponses:
		// store false: the upstream keeps nothing, as a chat call's.
		b = append(b, `{"model":`...)
		b = strconv.AppendQuote(b, model)
		b = append(b, `,"input":"Write a short note about load testing gateways.","store":false,"max_output_tokens":`...)
		b = strconv.AppendInt(b, int64(maxTokens), 10)
		b = append(b, '}')
	case kindRerank:
		// Eight short documents sharing words with the query in varying measure, so
		// the scores differ and the answer is three ranked results of eight.
		b = append(b, `{"model":`...)
		b = strconv.AppendQuote(b, model)
		b = append(b, `,"query":"Which gateway adds the least latency to LLM requests?","documents":[`+
			`"Tollgate is a gateway for LLM requests.",`+
			`"nginx is a reverse proxy in front of web servers.",`+
			`"Latency is the time a request waits for its answer.",`+
			`"A banana is a yellow fruit.",`+
			`"Rate limits keep a shared gateway fair.",`+
			`"The least latency comes from no proxy at all.",`+
			`"Canaries shift traffic between model versions.",`+
			`"Redis stores the token buckets every replica shares."],"top_n":3}`...)
	case kindMessages:
		// The shape the Anthropic SDKs send: max_tokens (the API requires it), a
		// system prompt, content as text blocks.
		b = append(b, `{"model":`...)
		b = strconv.AppendQuote(b, model)
		b = append(b, `,"max_tokens":`...)
		b = strconv.AppendInt(b, int64(maxTokens), 10)
		b = append(b, `,"system":"You are a concise technical writer.","messages":[{"role":"user","content":[`+
			`{"type":"text","text":"Write a short note about load testing gateways."}]}]}`...)
	default:
		b = append(b, `{"model":`...)
		b = strconv.AppendQuote(b, model)
		b = append(b, `,"messages":[{"role":"user","content":"Write a short note about load testing gateways."}],"max_tokens":`...)
		b = strconv.AppendInt(b, int64(maxTokens), 10)
		if k == kindStream {
			b = append(b, `,"stream":true`...)
		}
		b = append(b, '}')
	}
	return b
}

func requestPath(k reqKind) string {
	switch k {
	case kindEmbeddings:
		return "/v1/embeddings"
	case kindResponses:
		return "/v1/responses"
	case kindRerank:
		return "/v1/rerank"
	case kindMessages:
		return "/v1/messages"
	}
	return "/v1/chat/completions"
}

// anthropicVersion is the Messages API version the messages load names, as the
// Anthropic SDKs do on every call.
const anthropicVersion = "2023-06-01"

// setKindHeaders sets the headers a request of kind k carries beyond its content
// type: a stream's Accept, a Messages API call's anthropic-version.
func setKindHeaders(h *fasthttp.RequestHeader, k reqKind) {
	switch k {
	case kindStream:
		h.Set("Accept", "text/event-stream")
	case kindMessages:
		h.Set("anthropic-version", anthropicVersion)
	}
}

// isAnswer reports whether b is a non-streaming answer of kind k: one JSON object
// holding its kind's member (answerMember), or for the Messages API a message
// (isMessage).
func isAnswer(k reqKind, b []byte) bool {
	if k == kindMessages {
		return isMessage(b)
	}
	return hasMember(b, answerMember(k))
}

// answerMember is the top-level member a non-streaming answer of k must hold: a
// completion's "choices", embeddings' "data", a Responses API response's "output",
// a rerank's "results".
func answerMember(k reqKind) string {
	switch k {
	case kindEmbeddings:
		return "data"
	case kindResponses:
		return "output"
	case kindRerank:
		return "results"
	}
	return "choices"
}

// cutShort reports whether err is the connection's close or reset: read inside an
// answer's body, the body cut short (between events or inside one, on a chunk's
// boundary or within a chunk, where fasthttp reports io.ErrUnexpectedEOF).
func cutShort(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, fasthttp.ErrConnectionClosed)
}

// errKind names a transport error for the errors-by-kind table.
func errKind(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free conns"
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &op) && op.Op == "dial":
		return "connect"
	case cutShort(err):
		return "conn closed"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

func statusKind(code int) string { return "status " + strconv.Itoa(code) }

var headerUserID = []byte("X-User-ID")

// job is one request queued by the pacer: its index, when it was queued (from
// the start) and whether every worker was busy then.
type job struct {
	i      int64
	queued time.Duration
	busy   bool
}

// runLoad drives one open-loop run. Requests are scheduled by the pacer and
// queued to a fixed pool of workers; a request waiting for a worker is
// still timed from its scheduled time, so a slow path shows up as latency
// and never as a lower send rate (no coordinated omission). The pacer's own
// lateness (send lag) and the wait for a worker are recorded apart: the first
// is the load generator's, the second the path's.
func runLoad(ctx context.Context, t *target, s *loadSpec, prog *progress) *runStats {
	if s.Closed {
		return runClosed(ctx, t, s, prog)
	}
	p := pacer{rate: s.Rate}
	total := p.count(s.Warmup + s.Duration)
	st := newRunStats()
	st.Duration = s.Duration
	if total == 0 {
		return st
	}
	// Start a little ahead so the workers are parked before the first send.
	start := time.Now().Add(20 * time.Millisecond)
	rec := &recorder{st: st, from: start.Add(s.Warmup), to: start.Add(s.Warmup + s.Duration)}

	queue := min(total, 1<<20)
	jobs := make(chan job, queue)
	// inflight is the requests queued or being answered: more than s.Conns
	// means the newest found no free worker.
	var inflight atomic.Int64
	// Requests still queued this long after the last is due are given up:
	// the run must end even against a path that has stopped answering.
	hardStop := start.Add(s.Warmup + s.Duration + s.Timeout)
	prog.begin(t.Name, s, start)

	go func() {
		defer close(jobs)
		w := waiter{spin: s.Spin}
		w.lock()
		defer runtime.UnlockOSThread()
		for i := int64(0); i < total; i++ {
			if ctx.Err() != nil {
				return
			}
			w.until(start.Add(p.at(i)))
			j := job{i: i, queued: time.Since(start), busy: inflight.Add(1) > int64(s.Conns)}
			select {
			case jobs <- j:
				prog.sent()
			default:
				inflight.Add(-1)
				rec.record(&outcome{measured: p.at(i) >= s.Warmup, errKind: "backlog"})
			}
		}
	}()
	runWorkers(t, s, rec, prog, func(wk *worker) {
		for j := range jobs {
			at := p.at(j.i)
			o := outcome{measured: at >= s.Warmup, ttft: -1, paced: true, busy: j.busy,
				lag: j.queued - at, wait: time.Since(start) - j.queued}
			if time.Now().After(hardStop) {
				inflight.Add(-1)
				o.errKind = "backlog"
				rec.record(&o)
				prog.done(false)
				continue
			}
			wk.do(j.i, start.Add(at), &o)
			inflight.Add(-1)
			rec.record(&o)
			prog.done(o.errKind == "")
		}
	})
	prog.end()
	return st
}

// runWorkers runs s.Conns workers, each with its own request, response and
// buffers, calling each on its own goroutine, and returns when all have.
func runWorkers(t *target, s *loadSpec, rec *recorder, prog *progress, each func(wk *worker)) {
	body := requestBody(s.Kind, t.Model, s.MaxTokens)
	path := requestPath(s.Kind)
	var wg sync.WaitGroup
	for range s.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := worker{t: t, s: s, body: body, path: path, rec: rec, prog: prog}
			wk.init()
			defer wk.release()
			each(&wk)
		}()
	}
	wg.Wait()
}

// runClosed drives one closed-loop run for s.Warmup+s.Duration. Latency counts
// from each request's own send (there is no schedule to fall behind); what a
// closed-loop run measures is its achieved rate.
func runClosed(ctx context.Context, t *target, s *loadSpec, prog *progress) *runStats {
	st := newRunStats()
	st.Duration = s.Duration
	start := time.Now()
	from, end := start.Add(s.Warmup), start.Add(s.Warmup+s.Duration)
	rec := &recorder{st: st, from: from, to: end}
	prog.begin(t.Name, s, start)
	var next atomic.Int64
	runWorkers(t, s, rec, prog, func(wk *worker) {
		for ctx.Err() == nil {
			now := time.Now()
			if !now.Before(end) {
				return
			}
			o := outcome{measured: !now.Before(from), ttft: -1}
			prog.sent()
			wk.do(next.Add(1)-1, now, &o)
			rec.record(&o)
			prog.done(o.errKind == "")
		}
	})
	prog.end()
	return st
}

// worker owns one request/response pair and one connection's worth of
// buffers for the whole run.
type worker struct {
	t    *target
	s    *loadSpec
	body []byte
	path string
	rec  *recorder
	prog *progress

	req  *fasthttp.Request
	resp *fasthttp.Response
	br   *bufio.Reader
	sse  sseReader
	uid  []byte
	gaps []time.Duration
}

func (w *worker) init() {
	w.req = fasthttp.AcquireRequest()
	w.resp = fasthttp.AcquireResponse()
	w.req.Header.SetMethod(fasthttp.MethodPost)
	w.req.Header.SetContentType("application/json")
	w.req.Header.SetHost(w.t.Addr)
	w.req.SetRequestURI(w.path)
	w.req.SetBodyRaw(w.body)
	setKindHeaders(&w.req.Header, w.s.Kind)
	if w.s.Kind == kindStream {
		w.br = bufio.NewReaderSize(nil, w.s.readBuf())
	}
}

func (w *worker) release() {
	fasthttp.ReleaseRequest(w.req)
	fasthttp.ReleaseResponse(w.resp)
}

func (w *worker) do(i int64, sched time.Time, o *outcome) {
	if w.s.Users > 0 {
		w.uid = append(w.uid[:0], 'u')
		w.uid = strconv.AppendInt(w.uid, (w.s.FirstUser+i)%int64(w.s.Users), 10)
		w.req.Header.SetBytesKV(headerUserID, w.uid)
	}
	err := w.t.client.DoTimeout(w.req, w.resp, w.s.Timeout)
	if err != nil {
		o.errKind = errKind(err)
		if o.errKind == "conn closed" && w.resp.Header.StatusCode() == fasthttp.StatusOK && w.resp.Header.ContentLength() != 0 {
			// The answer's header came (a length or chunked: the client resets
			// the response, whose defaults are 200 and no length, before each
			// call), its body was cut short: a failed answer, not a connection
			// the path refused or dropped.
			o.errKind = "bad body"
		}
		return
	}
	if w.s.CountHeader != "" {
		o.header = append([]byte(nil), w.resp.Header.Peek(w.s.CountHeader)...)
	}
	if code := w.resp.StatusCode(); code != fasthttp.StatusOK {
		o.errKind = statusKind(code)
		if w.s.Kind == kindStream {
			_ = w.resp.CloseBodyStream()
		}
		return
	}
	if w.s.Kind == kindStream {
		w.readStream(sched, o)
		return
	}
	// An answer is one JSON object of its kind's shape; a 200 that is anything
	// else, an event stream or a body cut short included, is not an answer the
	// client could use.
	if !isAnswer(w.s.Kind, w.resp.Body()) {
		o.errKind = "bad body"
		return
	}
	o.lat = time.Since(sched)
}

// maxTrailing bounds what readStream reads past [DONE] to reach the body's end.
const maxTrailing = 64 << 10

// readStream consumes an SSE body, timing each content chunk as it
// arrives at the client.
func (w *worker) readStream(sched time.Time, o *outcome) {
	done := false
	defer func() {
		if !done {
			// A stream that ended otherwise than at [DONE] leaves its connection
			// unusable: unread events, or a body cut at a chunk boundary, which
			// fasthttp reads as a clean end and would pool, so the next request
			// on it would fail as "conn closed" without reaching the path.
			w.resp.SetConnectionClose()
		}
		_ = w.resp.CloseBodyStream()
	}()
	w.br.Reset(w.resp.BodyStream())
	w.sse.r = w.br
	o.gaps = w.gaps[:0]
	counted := false
	defer func() {
		w.gaps = o.gaps
		if counted {
			w.s.Active.Add(-1)
		}
	}()
	var last time.Time
	for events := 0; ; events++ {
		data, err := w.sse.next()
		now := time.Now()
		if err != nil {
			if cutShort(err) {
				// Events and then no [DONE] is a cut stream; no event at
				// all is a 200 that was never an event stream.
				o.errKind = "stream cut"
				if events == 0 {
					o.errKind = "bad body"
				}
			} else if errors.Is(err, errLineTooLong) {
				o.errKind = "bad body"
			} else {
				o.errKind = errKind(err)
			}
			return
		}
		if bytes.Equal(data, doneData) {
			if last.IsZero() {
				o.errKind = "bad body"
				return
			}
			done = true
			o.lat = now.Sub(sched)
			// Read the body's end too (the chunked terminator behind [DONE]),
			// as the official SDKs do, so that the connection is kept for
			// the next request rather than closed with unread bytes.
			_, _ = io.Copy(io.Discard, io.LimitReader(w.br, maxTrailing))
			return
		}
		if isErrorEvent(data) {
			// The upstream failed mid-stream: whatever follows, [DONE] included,
			// the client got an error, not a completion.
			o.errKind = "stream error"
			return
		}
		if !hasContent(data) {
			continue
		}
		if last.IsZero() {
			o.ttft = now.Sub(sched)
			if w.s.Active != nil {
				w.s.Active.Add(1)
				counted = true
			}
		} else {
			o.gaps = append(o.gaps, now.Sub(last))
		}
		last = now
	}
}

// progress prints a live status line on stderr. Counters are atomics so the
// workers never wait for the printer.
type progress struct {
	quiet bool
	tty   bool

	mu      sync.Mutex
	label   string
	start   time.Time
	length  time.Duration
	stop    chan struct{}
	stopped chan struct{}

	nSent, nOK, nErr atomic.Int64
}

func newProgress(quiet bool) *progress {
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &progress{quiet: quiet, tty: tty}
}

func (p *progress) sent() { p.nSent.Add(1) }

func (p *progress) done(ok bool) {
	if ok {
		p.nOK.Add(1)
	} else {
		p.nErr.Add(1)
	}
}

func (p *progress) begin(name string, s *loadSpec, start time.Time) {
	p.nSent.Store(0)
	p.nOK.Store(0)
	p.nErr.Store(0)
	p.mu.Lock()
	p.label = name + " " + s.Kind.String() + " @ " + strconv.FormatFloat(s.Rate, 'f', 0, 64) + "/s"
	if s.Closed {
		p.label = name + " " + s.Kind.String() + " closed-loop × " + strconv.Itoa(s.Conns)
	}
	p.start = start
	p.length = s.Warmup + s.Duration
	p.mu.Unlock()
	if p.quiet || !p.tty {
		return
	}
	p.stop = make(chan struct{})
	p.stopped = make(chan struct{})
	go func() {
		defer close(p.stopped)
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tk.C:
				p.print('\r')
			}
		}
	}()
}

func (p *progress) end() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
	if !p.quiet {
		p.print('\n')
	}
}

func (p *progress) print(endc byte) {
	p.mu.Lock()
	label, start, length := p.label, p.start, p.length
	p.mu.Unlock()
	el := time.Since(start).Truncate(100 * time.Millisecond)
	if el < 0 {
		el = 0
	}
	if el > length || endc == '\n' {
		el = length
	}
	b := make([]byte, 0, 128)
	if endc == '\r' {
		b = append(b, '\r')
	}
	b = append(b, "  "...)
	b = append(b, label...)
	b = append(b, "  "...)
	b = append(b, el.String()...)
	b = append(b, '/')
	b = append(b, length.String()...)
	b = append(b, "  sent "...)
	b = strconv.AppendInt(b, p.nSent.Load(), 10)
	b = append(b, "  ok "...)
	b = strconv.AppendInt(b, p.nOK.Load(), 10)
	b = append(b, "  err "...)
	b = strconv.AppendInt(b, p.nErr.Load(), 10)
	b = append(b, "   "...)
	if endc == '\n' {
		b = append(b, '\n')
	}
	_, _ = os.Stderr.Write(b)
}
