package providers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// ErrStreamCut means the upstream's stream ended before its final event.
var ErrStreamCut = errors.New("upstream stream ended early")

// sseReader reads server-sent events from an upstream response body.
type sseReader struct {
	up     *fasthttp.Response
	t      *Target
	br     *bufio.Reader
	data   []byte
	name   []byte
	line   []byte
	done   bool
	forced bool
	// responses is set for a Responses API stream: its events are named, carry
	// their usage in the terminal event's response, and end with that event, no
	// [DONE]; final is set once that event was read, for the next read to end.
	responses, final bool
	// messages is set for a Messages API stream: its events are named, carry their
	// usage in message_start and message_delta (msgUsage gathers the two), and end
	// with message_stop, no [DONE].
	messages bool
	msgUsage anthropicUsage
	// audio is set for an audio API stream (inspectAudioEvent): vLLM's ends with
	// [DONE], OpenAI's with transcript.text.done (final).
	audio bool
	// end follows a chat or legacy completions stream toward its end, for one
	// whose body ends without [DONE] (chatEnd); off for other streams.
	end chatEnd
	// begun is set once the stream's first line is read; skipLF when the last line
	// ended with a CR that may be half of a CRLF; lfOnly once a line ended in LF.
	begun, skipLF, lfOnly bool
	// ping is set when the last event read was a keep-alive: comments and a blank
	// line, no field.
	ping bool
	// evented is set once an event was read; stray once a line was neither a
	// comment nor one of the fields events have (noteStray).
	evented, stray bool
	// max bounds one event's bytes; 0 is maxEventBytes.
	max int
	// conn is the upstream connection while NotifyWait's hook is on it.
	conn *upstreamConn
	// secrets are the backend's key and header values, masked in error events.
	secrets [][]byte
	// aborted is set by Abort, from another goroutine.
	aborted atomic.Bool
}

// bodyCloser is a streamed response body, fasthttp's or a watched call's
// upstreamBody: closing it with an error interrupts a Read in flight and drops the
// connection.
type bodyCloser interface{ CloseWithError(error) error }

// sseBufferSize is the line reader's buffer. It sits on top of the upstream
// connection's own 4 KiB read buffer and every open stream holds one, so it is small:
// an event line longer than it still reads whole, through readLine's slow path.
const sseBufferSize = 1 << 10

// maxEventBytes bounds one event (a line, and the data lines joined): chat chunks are
// at most a few KiB, and without a bound an upstream that sends a line and never its
// newline makes the reader buffer it until the backend's timeout.
const maxEventBytes = 16 << 20

// maxPooledBuffer is the largest line or data buffer a reader keeps when it goes back
// to the pool: one long event should not pin its memory to every later stream.
const maxPooledBuffer = 64 << 10

// errEventTooLarge is an event past the reader's bound: the upstream's fault, like
// bytes that are not its API.
var errEventTooLarge = errors.Join(ErrStreamCut, ErrBadResponse, errors.New("upstream stream event too large"))

// errEventNotJSON is a data event that is not a JSON object (an HTML error page, a
// proxy's message, a truncated line): the stream ends there as the upstream's fault,
// rather than the client's SDK failing on the bytes.
var errEventNotJSON = errors.Join(ErrStreamCut, ErrBadResponse, errors.New("upstream stream event is not a JSON object"))

var ssePool = sync.Pool{New: func() any {
	return &sseReader{br: bufio.NewReaderSize(nil, sseBufferSize), data: make([]byte, 0, 1024)}
}}

func acquireSSE() *sseReader { return ssePool.Get().(*sseReader) }

func (s *sseReader) reset(up *fasthttp.Response, t *Target, body io.Reader, forced bool) {
	s.up, s.t, s.done, s.forced, s.secrets = up, t, false, forced, nil
	s.responses, s.final = false, false
	s.messages, s.msgUsage, s.audio, s.end = false, anthropicUsage{}, false, chatEnd{}
	s.begun, s.skipLF, s.lfOnly = false, false, false
	s.evented, s.stray = false, false
	s.aborted.Store(false)
	s.max = maxEventBytes
	if t != nil && t.client != nil && t.client.MaxResponseBodySize > 0 {
		s.max = min(s.max, t.client.MaxResponseBodySize)
	}
	s.br.Reset(body)
	s.data = s.data[:0]
	s.name = s.name[:0]
}

// readEvent reads one event's name and data (data lines joined by \n), per the
// server-sent events spec: comments and unknown fields are ignored (but for a line
// that opens an HTML page or a JSON object: noteStray), a blank line ends the event.
// It returns io.EOF only at a clean end between events, or, leniently, after
// a last "data: [DONE]" the upstream closed on without its blank line: [DONE] says the
// stream is whole.
func (s *sseReader) readEvent() error {
	s.data = s.data[:0]
	s.name = s.name[:0]
	s.ping = false
	seen := false
	for {
		line, err := s.readLine()
		if err != nil && err != io.EOF {
			return err
		}
		if err == io.EOF {
			if len(line) > 0 {
				ok, ferr := s.field(line)
				if ferr != nil {
					return ferr
				}
				seen = seen || ok
			}
			switch {
			case seen && (bytes.Equal(s.data, strDone) || s.responses && terminalEvent(s.data) || s.messages && messageStop(s.data) || s.audio && audioDone(s.data)):
				// A last event the upstream closed on without its blank line: it
				// says the stream is whole.
				s.evented = true
				return nil
			case !seen && len(line) == 0:
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		if len(line) == 0 {
			s.evented = s.evented || seen
			if seen || s.ping {
				return nil
			}
			continue
		}
		if line[0] == ':' && !seen {
			s.ping = true
			continue
		}
		ok, err := s.field(line)
		if err != nil {
			return err
		}
		seen = seen || ok
	}
}

// errNotEvents is a stream whose body is not events: an HTML page (a proxy's 502
// page sent with the 200 it had begun), a bare JSON object, or only lines that are
// neither comments nor the fields of events. The upstream's invalid answer, as an
// event that is not a JSON object is, not a cut stream.
var errNotEvents = errors.Join(ErrStreamCut, ErrBadResponse, errors.New("upstream stream is not server-sent events"))

// noteStray looks at line, a non-empty one that field did not take and no comment.
// id and retry are events' own lines. A line that opens an HTML page or a JSON object
// where a field belongs is a page or a bare error object sent in place of events:
// the stream fails there (a JSON error object's message goes with the error). Any
// other line is an unknown field, which the SSE spec has a reader skip; it is noted,
// and a stream that ends having had no event but such lines was not events either
// (streamErr).
func (s *sseReader) noteStray(line []byte) error {
	switch line[0] {
	case '<':
		return errNotEvents
	case '{':
		return bareObject(line, s.secrets)
	}
	if !isField(line, "id") && !isField(line, "retry") {
		s.stray = true
	}
	return nil
}

// isField reports whether line is a field named name: the name alone, or followed
// by a colon.
func isField(line []byte, name string) bool {
	return len(line) >= len(name) && string(line[:len(name)]) == name &&
		(len(line) == len(name) || line[len(name)] == ':')
}

// bareError is a stream answered with a JSON error object where its events belong
// (`{"error":{"message":"model overloaded",...}}`, no data: prefix): its message,
// masked, goes to the client's error.
type bareError struct{ msg string }

func (e *bareError) Error() string {
	return "upstream stream is a JSON error object, not events: " + e.msg
}

func (e *bareError) Unwrap() error { return errNotEvents }

// UpstreamDetail is the object's message, for the client's error.
func (e *bareError) UpstreamDetail() string { return e.msg }

// bareObject is the error of a stream whose line, where a field belongs, opens a
// JSON object: a bareError when the line is a whole object with an error message
// (error.message, error as a string, or a top-level message, as vLLM's older error
// answers have it), else errNotEvents.
func bareObject(line []byte, secrets [][]byte) error {
	if !jsonscan.Valid(line) {
		return errNotEvents
	}
	msg, ok := jsonscan.Field(line, "error")
	if ok && len(msg) > 0 && msg[0] == '{' {
		msg, ok = jsonscan.Field(msg, "message")
	}
	if !ok {
		msg, ok = jsonscan.Field(line, "message")
	}
	if !ok {
		return errNotEvents
	}
	m, ok := jsonscan.AppendUnquote(nil, msg)
	if !ok || len(m) == 0 {
		return errNotEvents
	}
	return &bareError{msg: string(maskAll(m, secrets))}
}

// field reads one non-empty line of an event into its data or name; it reports
// whether the line was a data or event field. Any other line but a comment goes to
// noteStray.
func (s *sseReader) field(line []byte) (bool, error) {
	if line[0] == ':' {
		return false, nil
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		if len(s.data)+len(value) > s.limit() {
			return false, errEventTooLarge
		}
		if len(s.data) > 0 {
			// The spec joins data lines with a newline. Every event passed on is a
			// JSON object, where a line break can only stand between tokens, so a
			// space joins them the same; a newline would end the data: line the
			// relay writes, and the client would read half an object.
			s.data = append(s.data, ' ')
		}
		at := len(s.data)
		s.data = append(s.data, value...)
		if s.lfOnly {
			// A CR inside the line (lines here end at LF) ends a line for the
			// client, as the spec has it: in a JSON object it can stand only
			// between tokens, where a space reads the same and keeps the
			// object on the data: line the relay writes.
			for d := s.data[at:]; ; {
				i := bytes.IndexByte(d, '\r')
				if i < 0 {
					break
				}
				d[i] = ' '
				d = d[i+1:]
			}
		}
		return true, nil
	case "event":
		s.name = append(s.name[:0], value...)
		if s.lfOnly {
			// As in data: passed on, a CR would end the client's line.
			for i, c := range s.name {
				if c == '\r' {
					s.name[i] = ' '
				}
			}
		}
		return true, nil
	}
	return false, s.noteStray(line)
}

func (s *sseReader) limit() int {
	if s.max > 0 {
		return s.max
	}
	return maxEventBytes
}

// strBOM is the byte order mark the SSE spec lets a stream begin with.
var strBOM = []byte("\ufeff")

// readLine returns one line without its ending; the slice is valid until the next call.
// A line ends, as the SSE spec has it, at CRLF, LF or a lone CR (though once a line
// has ended in LF, a CR is only taken as half of a CRLF: servers do not mix them, and
// one scan a line is cheaper than two); a stream's leading byte order mark is dropped.
func (s *sseReader) readLine() ([]byte, error) {
	line, err := s.nextLine()
	if !s.begun && (err == nil || len(line) > 0) {
		s.begun = true
		line = bytes.TrimPrefix(line, strBOM)
	}
	return line, err
}

// nextLine reads one line from the buffered reader: the ending is found in what is
// buffered (two vectorised scans, one for LF and one for a CR before it), and a line
// longer than the buffer is gathered in s.line.
func (s *sseReader) nextLine() ([]byte, error) {
	if s.lfOnly {
		return s.lfLine()
	}
	long := false
	for {
		n := s.br.Buffered()
		if n == 0 {
			if _, err := s.br.Peek(1); err != nil {
				switch {
				case err != io.EOF:
					return nil, err
				case long:
					return s.line, io.EOF
				}
				return nil, io.EOF
			}
			n = s.br.Buffered()
		}
		buf, _ := s.br.Peek(n)
		if s.skipLF {
			// The last line ended with a CR at the end of a read: an LF that
			// follows belongs to it.
			s.skipLF = false
			if buf[0] == '\n' {
				_, _ = s.br.Discard(1)
				continue
			}
		}
		end, used := lineEnd(buf)
		// A stream whose first line ends in LF or CRLF ends every line so: from
		// then on only LF is looked for (lfLine), one scan a line.
		s.lfOnly = end >= 0 && buf[used-1] == '\n'
		if end < 0 {
			if len(s.line)+n > s.limit() {
				return nil, errEventTooLarge
			}
			if !long {
				s.line, long = s.line[:0], true
			}
			s.line = append(s.line, buf...)
			_, _ = s.br.Discard(n)
			continue
		}
		line := buf[:end]
		if long {
			s.line = append(s.line, line...)
			line = s.line
		}
		if used == end+1 && buf[end] == '\r' && used == n {
			s.skipLF = true
		}
		// Discard only moves past buffered bytes, so line stays valid until the
		// next read.
		_, _ = s.br.Discard(used)
		return line, nil
	}
}

// lfLine reads a line that ends in LF or CRLF, for a stream whose lines do.
func (s *sseReader) lfLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.line = append(s.line[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(s.line) > s.limit() {
				return nil, errEventTooLarge
			}
			line, err = s.br.ReadSlice('\n')
			s.line = append(s.line, line...)
		}
		line = s.line
	}
	if err != nil && (err != io.EOF || len(line) == 0) {
		return nil, err
	}
	if err == io.EOF {
		return line, io.EOF
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// lineEnd finds the first line ending in buf: end is where the line stops and used how
// many bytes the line and its ending take; end is -1 when buf holds no ending.
func lineEnd(buf []byte) (end, used int) {
	lf := bytes.IndexByte(buf, '\n')
	scan := buf
	if lf >= 0 {
		scan = buf[:lf]
	}
	cr := bytes.IndexByte(scan, '\r')
	switch {
	case cr >= 0 && cr == lf-1:
		return cr, lf + 1
	case cr >= 0:
		return cr, cr + 1
	case lf >= 0:
		return lf, lf + 1
	}
	return -1, 0
}

var strDone = []byte("[DONE]")

// Next implements Events for OpenAI-format streams.
func (s *sseReader) Next(ev *Event) error {
	*ev = Event{}
	if s.done {
		return io.EOF
	}
	if s.final {
		s.done = true
		ev.Done, ev.Terminal = true, true
		return nil
	}
	for {
		if err := s.readEvent(); err != nil {
			if err == io.EOF && s.end.whole && !s.aborted.Load() {
				// A chat or completions stream whose body ended cleanly with
				// every choice finished and its usage come: whole, without [DONE].
				s.done = true
				ev.Done = true
				return nil
			}
			return s.streamErr(err)
		}
		if len(s.data) == 0 {
			if s.ping {
				ev.KeepAlive = true
				return nil
			}
			continue
		}
		if bytes.Equal(s.data, strDone) {
			if s.responses || s.messages {
				// A Responses stream ends with its terminal event (final): a [DONE]
				// before one ends a stream that never finished.
				return ErrStreamCut
			}
			s.done = true
			ev.Done = true
			return nil
		}
		ev.Data = s.data
		if s.messages {
			ev.Name = s.name
			var ok bool
			if ok, s.final = s.inspectMessageEvent(s.data, ev); !ok {
				return errEventNotJSON
			}
		} else if s.responses {
			ev.Name = s.name
			var ok bool
			if s.final, ok = inspectResponseEvent(s.data, ev); !ok {
				return errEventNotJSON
			}
		} else if s.audio {
			var ok bool
			if ok, s.final = inspectAudioEvent(s.data, ev); !ok {
				return errEventNotJSON
			}
		} else {
			choices, ok := readChunk(s.data, ev)
			if !ok {
				return errEventNotJSON
			}
			s.end.note(ev, choices)
		}
		if ev.Error && len(s.secrets) > 0 {
			// An error event goes to the client as it came: never with the key.
			ev.Data = maskAll(ev.Data, s.secrets)
		}
		return nil
	}
}

func classifyStream(err error) error {
	if we, ok := errors.AsType[*waitError](err); ok {
		return we.err
	}
	if err == errEventTooLarge {
		return err
	}
	if err == io.ErrUnexpectedEOF {
		return ErrStreamCut
	}
	return errors.Join(ErrStreamCut, classify(err))
}

// inspectChunk reads what the gateway needs of a chunk: usage, the service tier that
// serves the stream (in ev.Usage.Tier, with or without usage), and whether it carries
// generated content. It reports whether the chunk is one JSON object, as every chunk
// of an OpenAI-format stream is: reading it validates it as it goes.
func inspectChunk(data []byte, ev *Event) bool {
	_, ok := readChunk(data, ev)
	return ok
}

// readChunk is inspectChunk, returning also the chunk's choices array, raw (nil when
// it has none, or an empty one), for chatEnd.
func readChunk(data []byte, ev *Event) (choices []byte, ok bool) {
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return nil, false
	}
	// A chunk with usage and no choice (choices empty, null or missing: not every
	// OpenAI-compatible server writes []) is the usage chunk.
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "choices":
			choices = nil
			if !isEmptyArray(v) && !jsonscan.IsNull(v) {
				choices = v
				ev.Content, ev.OutputBytes = generated(v)
			}
		case "usage":
			if !jsonscan.IsNull(v) && parseUsage(v, &ev.Usage) {
				ev.HasUsage = true
			}
		case "service_tier":
			ev.Usage.Tier.read(v)
		case "error":
			ev.Error = true
		}
	}
	if it.Err() != nil || jsonscan.SkipSpace(data, it.End()) != len(data) {
		return nil, false
	}
	ev.UsageOnly = ev.HasUsage && choices == nil
	return choices, true
}

func isEmptyArray(v []byte) bool {
	if len(v) < 2 || v[0] != '[' {
		return false
	}
	for _, c := range v[1 : len(v)-1] {
		if c != ' ' && c != '\n' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

var (
	strContentKey   = []byte(`"content"`)
	strTextKey      = []byte(`"text"`)
	strToolCalls    = []byte(`"tool_calls"`)
	strReasoningKey = []byte(`"reasoning_content"`)
	strReasoningAlt = []byte(`"reasoning"`)
	strRefusalKey   = []byte(`"refusal"`)
	strArgumentsKey = []byte(`"arguments"`)
)

// generated reads what a choices array carries of generated tokens: content reports
// any (text, a tool call, a refusal, or a reasoning model's thinking:
// delta.reasoning_content, as vLLM's reasoning parsers and DeepSeek stream it, or
// delta.reasoning, as OpenRouter and newer vLLM do), n the size of their text (tool
// calls' arguments included), that of the first kind of text found: a chunk carries
// one (a server sending reasoning under both names counts once), and one that
// carries two is no matter for what n is for, an estimate of four bytes a token.
// Thinking tokens are generated and billed like any other, so they mark the first
// token for TTFT, and count in what a stream cut before its usage is charged. Each
// key is looked for only while none before it had text: a chunk of content, most of
// a stream, is read once, as a first-token check alone would read it.
func generated(v []byte) (content bool, n int) {
	for _, key := range textKeys {
		if n = textBytes(v, key); n > 0 {
			return true, n
		}
	}
	return bytes.Contains(v, strToolCalls), 0
}

// textKeys are the members generated reads the text of, the commonest first: a
// chat stream's content, then a tool call's arguments, a reasoning model's thinking,
// a legacy completion's text, a refusal.
var textKeys = [...][]byte{strContentKey, strArgumentsKey, strReasoningKey, strReasoningAlt, strTextKey, strRefusalKey}

// textBytes is the size of the string values member key (a quoted name) has in v,
// each the inside of the string as written (escapes as they are); 0 for none.
// Whitespace may stand around the colon: Python's json.dumps writes
// `"content": "Hi"`, and so do the servers built on it. A quoted name never matches
// inside a string, where its quotes would be escaped.
func textBytes(v, key []byte) int { return valueBytes(v, key, '"') }

// valueBytes is textBytes for the values of member key that open begins: strings
// ('"'), their insides, or objects ('{'), whole as written (a tool_use block's input).
// A value found is skipped whole: a member of the same name inside it is not counted
// again.
func valueBytes(v, key []byte, open byte) int {
	n := 0
	for {
		i := bytes.Index(v, key)
		if i < 0 {
			return n
		}
		v = v[i+len(key):]
		j := jsonscan.SkipSpace(v, 0)
		if j >= len(v) || v[j] != ':' {
			continue
		}
		j = jsonscan.SkipSpace(v, j+1)
		if j >= len(v) || v[j] != open {
			continue
		}
		end, err := jsonscan.Skip(v, j)
		if err != nil {
			return n
		}
		n += end - j
		if open == '"' {
			n -= 2
		}
		v = v[end:]
	}
}

// maxDrain and drainWait bound what Close reads after a stream's clean end to reach the
// end of the body: normally only the chunked terminator, a few bytes already on their
// way.
const (
	maxDrain  = 4 << 10
	drainWait = 50 * time.Millisecond
)

var errDrainTimeout = errors.New("upstream body did not end after its last event")

// drain reads to the end of the body after the stream's last event, so that fasthttp
// sees the body fully read and puts the connection back in the pool: a body closed
// before its terminator costs the next request a new connection. The caller waits for
// Close to settle the stream (and the gateway to serve the client's next request on
// that connection), so an upstream that holds its body open after the last event is
// cut by drains and its connection dropped.
func (s *sseReader) drain() {
	c, ok := s.up.BodyStream().(bodyCloser)
	if !ok {
		return
	}
	drains.add(s, c)
	_, _ = s.br.Discard(maxDrain)
	drains.remove(s)
}

// drainWatch bounds drains without a timer per stream (arming one wakes the runtime's
// poller, several µs a stream): a drain registers itself, and one process-wide timer
// cuts those older than drainWait every drainWait/2. The timer is armed by a drain
// that finds it idle and stops when a tick finds no drain left, so under load it is
// armed about once per tick and an idle gateway has no wake-ups for it.
type drainWatch struct {
	mu     sync.Mutex
	active map[*sseReader]drainEntry
	timer  *time.Timer
	armed  bool
}

type drainEntry struct {
	body  bodyCloser
	start time.Time
}

var drains drainWatch

func (w *drainWatch) add(s *sseReader, c bodyCloser) {
	w.mu.Lock()
	if w.active == nil {
		w.active = make(map[*sseReader]drainEntry)
		w.timer = time.AfterFunc(time.Hour, w.tick)
		w.timer.Stop()
	}
	w.active[s] = drainEntry{body: c, start: time.Now()}
	if !w.armed {
		w.armed = true
		w.timer.Reset(drainWait / 2)
	}
	w.mu.Unlock()
}

func (w *drainWatch) remove(s *sseReader) {
	w.mu.Lock()
	delete(w.active, s)
	w.mu.Unlock()
}

func (w *drainWatch) tick() {
	var cut []bodyCloser
	now := time.Now()
	w.mu.Lock()
	for s, e := range w.active {
		if now.Sub(e.start) >= drainWait {
			delete(w.active, s)
			cut = append(cut, e.body)
		}
	}
	if len(w.active) > 0 {
		w.timer.Reset(drainWait / 2)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for _, c := range cut {
		_ = c.CloseWithError(errDrainTimeout)
	}
}

// readErr returns the connection's own read error for a read that failed inside a
// chunk's size line (the upstream's packet ended there): fasthttp wraps it in an
// ErrBrokenChunk, which has no Unwrap, and the timeout, the client's hang-up or the
// attempt's deadline it carries decide how the failure counts. A malformed chunk,
// with no read error behind it, stays as it is.
func (s *sseReader) readErr(err error) error {
	if _, ok := errors.AsType[fasthttp.ErrBrokenChunk](err); ok {
		if c := upstreamOf(s.up.LocalAddr()); c != nil && c.readErr != nil {
			return c.readErr
		}
	}
	return err
}

// streamErr is how a stream ends whose event could not be read for err.
func (s *sseReader) streamErr(err error) error {
	switch {
	case s.aborted.Load():
		return ErrAborted
	case errors.Is(err, errNotEvents):
		// errNotEvents, or a bareError that carries the object's message.
		return err
	case s.stray && !s.evented && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return errNotEvents
	case err == io.EOF:
		return ErrStreamCut
	}
	return classifyStream(s.readErr(err))
}

// endEarly implements ender: the stream counts as read to its [DONE], and Close
// drains what is left of the body.
func (s *sseReader) endEarly() bool {
	s.done = true
	return true
}

// Abort implements Aborter: closing the body stream fails the read in flight and drops
// the upstream connection, which aborts the upstream request.
func (s *sseReader) Abort() {
	s.aborted.Store(true)
	if c, ok := s.up.BodyStream().(bodyCloser); ok {
		_ = c.CloseWithError(ErrAborted)
	}
}

// NotifyWait implements Waiter.
func (s *sseReader) NotifyWait(fn func() error) bool {
	c := upstreamOf(s.up.LocalAddr())
	if c == nil {
		return false
	}
	s.conn, c.wait = c, fn
	return true
}

// NotifySilence implements SilenceNotifier.
func (s *sseReader) NotifySilence(every time.Duration, fn func() error) bool {
	c := upstreamOf(s.up.LocalAddr())
	if c == nil || every <= 0 {
		return false
	}
	s.conn, c.silent, c.every = c, fn, every
	return true
}

// Close implements Events.
func (s *sseReader) Close() error {
	if c := s.conn; c != nil {
		c.wait, c.silent, s.conn = nil, nil, nil
	}
	if s.done {
		s.drain()
	}
	err := s.up.CloseBodyStream()
	fasthttp.ReleaseResponse(s.up)
	s.t.inFlight.Add(-1)
	s.up, s.t = nil, nil
	s.br.Reset(nil)
	if cap(s.line) > maxPooledBuffer {
		s.line = nil
	}
	if cap(s.name) > maxPooledBuffer {
		s.name = nil
	}
	if cap(s.data) > maxPooledBuffer {
		s.data = make([]byte, 0, 1024)
	}
	ssePool.Put(s)
	return err
}
