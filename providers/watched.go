package providers

import (
	"bufio"
	"errors"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// A non-streamed request can spend seconds with its upstream (a long generation, a
// queue inside vLLM) while the gateway's handler waits for the answer and reads
// nothing of its client; a stream can wait as long for its answer's header, which an
// upstream may hold until the first token (Ollama loading a model, a proxy in front
// of vLLM that buffers headers, a long prefill behind one). A client that hangs up
// meanwhile would leave the upstream generating for nobody, holding its slot, its
// connection and the accelerator. The read of the answer wakes every
// clientCheckEvery the upstream stays silent (as for a stream's silence hook,
// upstreamConn.read) and asks the call's ClientWatch, started at the first wake-up:
// an answer that comes sooner costs nothing more than its read, and a client that
// hung up ends the read, which closes the upstream connection: vLLM, like an HTTP
// server generally, stops working on a request whose connection closes. The attempt
// then fails with ErrClientLeftUpstream.
//
// fasthttp's transport hands the caller no connection before the answer is read, so
// every attempt goes through connRoundTrip, fasthttp's own round trip written with
// the public HostClient API, which sets a watched call on the connection it takes and
// clears it once the answer (a stream's: its header) is read; it also sees what the
// upstream sent past the answer. A stream's body is then read through an
// upstreamBody, fasthttp's own stream body rebuilt, and the call's watch has ended
// (roundTrip) before the stream is handed on: from there the stream's own watch
// (gateway/stream.go) sees its client leave.

// clientCheckEvery is how often the read of a watched call's answer asks whether its
// client is still there while the upstream is silent.
var clientCheckEvery = 200 * time.Millisecond

// watchedKey is the request user value under which roundTrip hands the transport the
// call to watch. It is boxed once: setting it allocates nothing.
var watchedKey any = watchedKeyType{}

type watchedKeyType struct{}

// watchedCall returns the call req's answer is awaited for, nil when it is neither
// watched nor held (watchClient).
func watchedCall(req *fasthttp.Request) *Call {
	c, _ := req.UserValue(watchedKey).(*Call)
	return c
}

// watchClient marks req as sent for call, whose client is then watched while the
// answer is awaited (calls with a ClientWatch only): a buffered answer until it is
// read, a stream until its header came; and whose Hold, when set, bounds a buffered
// answer's buffer.
func watchClient(req *fasthttp.Request, call *Call) {
	if call.Client == nil && call.Hold == nil {
		return
	}
	req.SetUserValue(watchedKey, call)
}

// clientGone is asked at each silent tick of a watched call's answer: the first time
// it starts the client's watch, then it reports ErrClientLeftUpstream once the watch
// has fired.
func (c *Call) clientGone() error {
	if !c.watching {
		c.watching = true
		c.gone = c.Client.Watch()
	}
	select {
	case <-c.gone: // a nil channel (a client that cannot be watched) never receives
		return ErrClientLeftUpstream
	default:
		return nil
	}
}

// unwatchClient ends the watch clientGone started, if it did.
func (c *Call) unwatchClient() {
	if c.watching {
		c.Client.Unwatch()
		c.watching, c.gone = false, nil
	}
}

// writeWatchMin is the request body above which a watched call's write asks after its
// client while it stalls (watchWrite): a smaller one goes into the sockets' buffers
// at once, and its call pays no tick deadline and clock reading for it.
const writeWatchMin = 64 << 10

// connRoundTrip is fasthttp's transport (transport.RoundTrip in fasthttp 1.79), with
// call, when set, set on the connection while the answer is awaited, for its silent
// ticks to ask after (a call with a ClientWatch), and its Hold bounding the buffer of
// a buffered answer. A buffered answer is read whole (under the watch); a streamed
// one only to the end of its header, after which the stream's own watch takes over
// (gateway/stream.go): its body goes to the caller as an upstreamBody. A pooled
// connection found stale, idle for idleLook or more, is closed before a byte is
// written to it (errStaleConn, on which upstreamTransport takes another). An answer
// whose header names both Content-Length and Transfer-Encoding fails with
// errBothFramings, one whose header does not end in CRLF CRLF with errBareHeaderEnd,
// and one followed by bytes the upstream was not asked for leaves
// its connection closed rather than pooled. Its retry result is fasthttp's: the
// caller (upstreamTransport) narrows it.
func connRoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, call *Call) (bool, error) {
	var hold AnswerHold
	if call != nil {
		hold = call.Hold
		if call.Client == nil {
			// Held, not watched: call is the watched call from here on.
			call = nil
		}
	}
	timeout := req.GetTimeOut()
	now := time.Now()
	var deadline time.Time
	if timeout > 0 {
		deadline = now.Add(timeout)
	}
	cc, err := hc.AcquireConn(timeout, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)
	u := upstreamOf(conn.LocalAddr())
	fresh := false
	if u != nil {
		fresh = !u.served
		// A connection released after now has been idle for no time at all.
		if u.served && u.stale(now.Sub(cc.LastUseTime()) >= idleLook) {
			hc.CloseConn(cc)
			return true, errStaleConn
		}
		if call != nil && len(req.Body()) > writeWatchMin {
			u.watchWrite(call)
		}
		err = u.setWriteDeadline(nearerSet(deadline, hc.WriteTimeout))
	} else {
		err = conn.SetWriteDeadline(nearerSet(deadline, hc.WriteTimeout))
	}
	if err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	reset := false
	if hc.MaxConnDuration > 0 && now.Sub(cc.CreatedTime()) > hc.MaxConnDuration && !req.ConnectionClose() {
		req.SetConnectionClose()
		reset = true
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if reset {
		req.Header.ResetConnectionClose()
	}
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if u != nil && u.writing != nil {
		u.unwatchWrite()
	}
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if _, ok := errors.AsType[*waitError](err); ok {
		// The client left while the request was written (watchWrite).
		hc.CloseConn(cc)
		return false, err
	}
	// An upstream may answer before it has read the whole request (a 413 for a body
	// over its limit, a 400 from the header alone) and close the connection on the
	// rest of it, which fails the write with a reset or a broken pipe while its
	// answer waits in the socket (RFC 9112 section 9.5: a client that sends a body
	// should watch for an answer while it sends). That answer is the request's, as
	// Go's net/http takes it, on a connection that served nothing before: one taken
	// from the pool may hold bytes the upstream sent while it sat idle (a 408 before
	// it closed), which no request asked for. The upstream has closed the connection,
	// so its answer has all come: refusalWait bounds the read.
	var writeErr error
	if err != nil && u != nil && fresh && closedByUpstream(err) {
		writeErr, err = err, nil
	}
	if err != nil {
		if u != nil && fresh && err != fasthttp.ErrTimeout {
			err = u.writeRefusal(err)
		}
		hc.CloseConn(cc)
		return true, err
	}
	readBy := nearerSet(deadline, hc.ReadTimeout)
	if writeErr != nil {
		readBy = nearer(readBy, time.Now().Add(refusalWait))
	}
	if err := conn.SetReadDeadline(readBy); err != nil {
		hc.CloseConn(cc)
		if writeErr != nil {
			return true, u.writeRefusal(writeErr)
		}
		return true, err
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	// fasthttp reads the answer's header: resp keeps fasthttp's header parsing
	// (and the client's SecureErrorLogMessage, which only fasthttp can set on a
	// response). The body is framed apart: a stream's by streamBody, a buffered
	// one's by readBody, which fasthttp's own read would size by the header's word.
	stream, skip := resp.StreamBody, resp.SkipBody
	resp.SkipBody = true
	if u != nil && call != nil {
		u.watch(call, now)
	}
	br := hc.AcquireReader(conn)
	// The header must fit in br's buffer, of the backend's max_response_header_bytes.
	err = headerFit(resp.ReadLimitBody(br, 0), hc.ReadBufferSize, false)
	resp.SkipBody = skip
	bodied := !skip && !noBody(resp.StatusCode())
	switch {
	case u != nil && u.head.bare:
		// Whatever fasthttp made of it: it reads a header so ended only when a
		// CRLF CRLF came in the same reads, behind it.
		err = errBareHeaderEnd
	case err == nil && u != nil && u.head.bothFramings():
		err = errBothFramings
	}
	if err == nil && bodied && !stream {
		err = headerFit(readBody(resp, br, hc.MaxResponseBodySize, hold), hc.ReadBufferSize, true)
	}
	if u != nil {
		if call != nil {
			u.unwatch()
		}
		if we, ok := u.readErr.(*waitError); ok && err != nil {
			// fasthttp reports any failed read of an answer's first byte as an
			// end of file, which a retry would take for the upstream's close.
			err = we
		} else if err != nil {
			err = u.refusal(err, fresh)
		}
	}
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		err = withoutContents(err)
		if writeErr != nil {
			// No answer came before the close: the write's failure is the attempt's.
			return true, u.writeRefusal(writeErr)
		}
		return !errors.Is(err, fasthttp.ErrBodyTooLarge) && !errors.Is(err, errBothFramings) && !errors.Is(err, errBareHeaderEnd) &&
			!errors.Is(err, ErrAnswerNoRoom) && !errors.Is(err, ErrHeaderTooLarge), err
	}
	// The bytes after a 101 belong to another protocol: its connection is never
	// reused (as fasthttp 1.79's transport has it).
	closeConn := reset || writeErr != nil || req.ConnectionClose() || resp.ConnectionClose() ||
		resp.StatusCode() == fasthttp.StatusSwitchingProtocols
	if stream && bodied {
		streamBody(resp, hc, cc, conn, br, u, closeConn)
		return false, nil
	}
	// Bytes read past the answer's end are an answer nobody asked for (a
	// Content-Length shorter than the body: response splitting); the next request
	// on this connection would read what follows them as its own answer. Through
	// TLS they may be left in the TLS client rather than in br (heldBack).
	closeConn = closeConn || br.Buffered() > 0 || u != nil && u.heldBack()
	hc.ReleaseReader(br)
	if closeConn {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// noBody reports whether an answer with status has no body whatever its header
// says (RFC 9112 section 6.3), as fasthttp's Response.mustSkipBody has it.
func noBody(status int) bool {
	return status >= 100 && status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
}

// readBody reads the body of resp, a buffered answer whose header was read from br,
// into resp's body buffer, as fasthttp's Response.ReadLimitBody would with max (0:
// none): a Content-Length over max, or more bytes than max, fail with
// ErrBodyTooLarge; a body that ends before its Content-Length or its last chunk with
// io.ErrUnexpectedEOF; a chunked body's trailer is read into resp's header, and a body
// up to the connection's close read whole sets resp's Content-Length (one that failed
// leaves it -2, an answer whose header came, for roundTrip). Unlike fasthttp's, which
// allocates the whole of a Content-Length or a chunk's size before a byte of it came,
// the buffer grows with the bytes that came (growBody): an upstream that announces
// 48 MiB and stalls (a stalled proxy, a server that died after its header) holds the
// gateway's memory for what it sent, not for what it said until the backend's timeout,
// on every request it stalls. Read errors are kept as they came: a timeout inside a
// chunk's framing stays a timeout, where fasthttp's ErrBrokenChunk hides it. hold,
// when set, counts the buffer once it grows past maxPooledBuffer: an answer it has no
// room for fails with ErrAnswerNoRoom, the rest of it left unread (its connection is
// not used again).
func readBody(resp *fasthttp.Response, br *bufio.Reader, max int, hold AnswerHold) error {
	b := resp.SwapBody(nil)[:0]
	if cap(b) > maxPooledBuffer {
		// A large buffer fasthttp's pool kept (a translated answer's read, given
		// back whole): the body starts in a small one, so that what it holds, and
		// hold counts, grows with what came.
		b = nil
	}
	var err error
	switch n := resp.Header.ContentLength(); {
	case n >= 0:
		if max > 0 && n > max {
			err = fasthttp.ErrBodyTooLarge
		} else {
			b, err = readSized(br, b, n, len(b)+n, hold)
		}
	case n == -1:
		if b, err = readChunked(br, b, max, hold); err == nil {
			err = cutShort(resp.Header.ReadTrailer(br))
		}
	default:
		if b, err = readToClose(br, b, max, hold); err == nil {
			resp.Header.SetContentLength(len(b))
		}
	}
	resp.SwapBody(b)
	return err
}

// readSized appends the next n bytes of br to b, whose buffer grows to at most limit
// bytes (at least len(b)+n).
func readSized(br *bufio.Reader, b []byte, n, limit int, hold AnswerHold) ([]byte, error) {
	end := len(b) + n
	for len(b) < end {
		if len(b) == cap(b) {
			var err error
			if b, err = growBody(b, limit, hold); err != nil {
				return b, err
			}
		}
		m, err := br.Read(b[len(b):min(cap(b), end)])
		b = b[:len(b)+m]
		if err != nil {
			return b, cutShort(err)
		}
	}
	return b, nil
}

// readToClose appends what br has up to its end to b, at most max bytes (0: no
// bound).
func readToClose(br io.Reader, b []byte, max int, hold AnswerHold) ([]byte, error) {
	limit := math.MaxInt
	if max > 0 {
		limit = max + 1
	}
	for {
		if len(b) == cap(b) {
			var err error
			if b, err = growBody(b, limit, hold); err != nil {
				return b, err
			}
		}
		m, err := br.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if max > 0 && len(b) > max {
			return b, fasthttp.ErrBodyTooLarge
		}
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// readChunked appends the data of a chunked body read from br to b, up to its last
// chunk, at most max bytes (0: no bound): a chunk that would take the body past max
// fails before a byte of it is read. The buffer doubles as the body's bytes fill it,
// whatever the chunks' sizes: grown to the end of each chunk, a body of many small
// chunks would be copied at every one.
func readChunked(br *bufio.Reader, b []byte, max int, hold AnswerHold) ([]byte, error) {
	limit := math.MaxInt
	if max > 0 {
		limit = max
	}
	for {
		n, err := chunkSize(br)
		if err != nil || n == 0 {
			return b, err
		}
		if max > 0 && len(b)+n > max {
			return b, fasthttp.ErrBodyTooLarge
		}
		if b, err = readSized(br, b, n, limit, hold); err != nil {
			return b, err
		}
		if err := chunkEnd(br); err != nil {
			return b, err
		}
	}
}

// maxChunkDigits is the longest chunk size read, in hex digits, as fasthttp's
// (maxHexIntChars): 15 on a 64-bit machine keeps a size within an int.
const maxChunkDigits = strconv.IntSize/4 - 1

// Faults of a chunked body's framing. They are cut answers to classifyBody, as
// fasthttp's ErrBrokenChunk is.
var (
	errChunkSize  = errors.New("upstream answer's chunked body: chunk size missing or too long")
	errChunkAfter = errors.New("upstream answer's chunked body: invalid character after a chunk size")
	errChunkCRLF  = errors.New("upstream answer's chunked body: chunk not followed by CRLF")
)

// chunkSize reads a chunk's size line from br, as fasthttp's parseChunkSize: hex
// digits, then blanks or an extension (after a ';' that follows the size directly),
// no LF before the line's CRLF. It returns the size.
func chunkSize(br *bufio.Reader) (int, error) {
	n, digits := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, cutShort(err)
		}
		d := jsonscan.HexDigit(c)
		if d < 0 {
			if digits == 0 {
				return 0, errChunkSize
			}
			_ = br.UnreadByte()
			break
		}
		if digits == maxChunkDigits {
			return 0, errChunkSize
		}
		n = n<<4 | d
		digits++
	}
	inExt, blank := false, false
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, cutShort(err)
		}
		switch {
		case c == '\r':
			_ = br.UnreadByte()
			return n, chunkEnd(br)
		case c == '\n':
			// A bare LF in an extension is how request smuggling through proxies
			// that read lines differently begins (fasthttp refuses it too).
			return 0, errChunkAfter
		case inExt:
		case c == ' ' || c == '\t':
			blank = true
		case c == ';' && !blank:
			inExt = true
		default:
			return 0, errChunkAfter
		}
	}
}

// chunkEnd reads the CRLF that ends a chunk's size line or its data.
func chunkEnd(br *bufio.Reader) error {
	for _, want := range [2]byte{'\r', '\n'} {
		c, err := br.ReadByte()
		if err != nil {
			return cutShort(err)
		}
		if c != want {
			return errChunkCRLF
		}
	}
	return nil
}

// cutShort is err from a read inside a body, where the end of the connection is a
// body cut short: io.EOF becomes io.ErrUnexpectedEOF.
func cutShort(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// minBodyRoom is the least room a body's buffer grows to.
const minBodyRoom = 4 << 10

// growBody gives b, which is full, room for more: to twice its capacity (minBodyRoom
// at least), at most limit bytes in all. Doubling copies each byte of a body about
// once, and keeps what a body holds under twice what came of it. A buffer past
// maxPooledBuffer is first counted against hold, when set, in place of the one it
// replaces: one hold has no room for is ErrAnswerNoRoom, b returned as it was.
func growBody(b []byte, limit int, hold AnswerHold) ([]byte, error) {
	n := min(max(2*cap(b), minBodyRoom), limit)
	if hold != nil && n > maxPooledBuffer && !hold.HoldAnswer(n) {
		return b, ErrAnswerNoRoom
	}
	// Made to measure: its capacity is what hold counted, where append's growth
	// would round it up.
	nb := make([]byte, len(b), n)
	copy(nb, b)
	return nb, nil
}

// streamBody gives resp, whose header was read from br, its body as a stream: the
// body's framing (chunked, Content-Length, or up to the connection's close) is
// fasthttp's own, set up on a carrier response from a copy of resp's header, and
// read through an upstreamBody, which gives the connection back when it is closed.
// cc is the connection (conn) br reads, u that connection when it is an
// upstreamConn, closeConn whether it must close after the answer. A chunked body's
// trailer is read into the carrier's header, whose parse errors, unlike resp's, may
// quote it: fasthttp alone can make a header keep its client's
// SecureErrorLogMessage.
func streamBody(resp *fasthttp.Response, hc *fasthttp.HostClient, cc any, conn net.Conn, br *bufio.Reader, u *upstreamConn, closeConn bool) {
	carrier := fasthttp.AcquireResponse()
	resp.Header.CopyTo(&carrier.Header)
	carrier.StreamBody = true
	// With StreamBody, ReadBody reads nothing and cannot fail: it sets the body
	// stream up on br, and MaxResponseBodySize is the stream reader's to apply.
	_ = carrier.ReadBody(br, 0)
	b := &upstreamBody{
		r:         carrier.BodyStream(),
		carrier:   carrier,
		hc:        hc,
		cc:        cc,
		conn:      conn,
		u:         u,
		br:        br,
		closeConn: closeConn,
		fullyRead: resp.Header.ContentLength() == 0,
	}
	// SetBodyStream sets the Content-Length it is given: the header's own, which
	// leaves it as it was, except that a body up to the connection's close (-2)
	// sets Connection: close, as fasthttp's parser does unless the answer upgrades.
	keepAlive := !resp.ConnectionClose()
	resp.SetBodyStream(b, resp.Header.ContentLength())
	if keepAlive {
		resp.Header.ResetConnectionClose()
	}
}

// upstreamBody is a streamed answer's body read through connRoundTrip: fasthttp's
// clientStreamBody (fasthttp 1.79, client.go), which fasthttp's transport alone can
// make. Reads are serialised; CloseWithError, which may come from another goroutine
// while a Read waits for the upstream (Abort, the drain's timer), closes the
// connection to end that Read unless the body was read to its end, then gives the
// connection back, to the pool when the body was read whole and nothing asks for
// its close. It is closed through resp's CloseBodyStream (or the response's
// release), and may be closed before that: the first close does the work.
//
// It is not pooled: a close may come after its response's own (the drain's timer
// fires as the body ends), and a pooled body would by then be another stream's.
// One allocation stands for fasthttp's four (its body and three closures).
type upstreamBody struct {
	r       io.Reader
	carrier *fasthttp.Response
	hc      *fasthttp.HostClient
	// cc is the connection, a *fasthttp.clientConn (connOp), conn its net.Conn,
	// and u that one when it is an upstreamConn (nil otherwise).
	cc   any
	conn net.Conn
	u    *upstreamConn
	br   *bufio.Reader
	// closeConn is whether the request or the answer's header asked for the
	// connection's close: streamBody leaves the header's say as it found it.
	closeConn bool
	fullyRead bool
	closed    atomic.Bool
	readLock  sync.Mutex
	closeOnce sync.Once
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	b.readLock.Lock()
	defer b.readLock.Unlock()
	if b.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.fullyRead = true
	} else if err != nil {
		// A trailer over br's buffer is named by headerFit, without fasthttp's
		// error, which may quote it.
		err = withoutContents(headerFit(err, b.hc.ReadBufferSize, true))
	}
	return n, err
}

// withoutContents is err without the upstream's bytes that fasthttp quotes in a
// header or trailer parse error: the buffer's contents ("…: buffer size=N, contents:
// …"), there because a chunked body's trailer is parsed into the carrier's header,
// which fasthttp alone can make keep its client's SecureErrorLogMessage, and a
// field's value ("invalid header value %q", "invalid trailer value %q"), which
// fasthttp quotes whatever that setting says. Either may carry a credential: an
// upstream that echoes the request's Authorization header back (a debugging echo).
func withoutContents(err error) error {
	msg := err.Error()
	cut := msg
	if i := strings.Index(cut, ", contents: "); i >= 0 {
		cut = cut[:i]
	}
	if strings.HasPrefix(cut, "error when reading response ") {
		if i := strings.IndexByte(cut, '"'); i >= 0 {
			j := strings.LastIndexByte(cut, '"')
			if j == i {
				j = len(cut) - 1
			}
			cut = cut[:i] + "(left out)" + cut[j+1:]
		}
	}
	if cut == msg {
		return err
	}
	return errors.Join(ErrBadResponse, errors.New(cut))
}

// CloseWithError implements fasthttp.ReadCloserWithError; err, when set, is why the
// reader stopped, and the connection then closes.
func (b *upstreamBody) CloseWithError(err error) error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		locked := b.readLock.TryLock()
		// Bytes buffered past the body's end, in br or in the TLS client, are more
		// than the upstream said it would send: the connection is not used again
		// (connRoundTrip).
		discard := err != nil || !locked || !b.fullyRead || b.br.Buffered() > 0 ||
			!b.closeConn && b.u != nil && b.u.heldBack()
		if discard {
			// Ends a Read under way, which then lets go of readLock.
			_ = b.conn.Close()
		}
		if !locked {
			b.readLock.Lock()
		}
		defer b.readLock.Unlock()
		_ = b.carrier.CloseBodyStream()
		fasthttp.ReleaseResponse(b.carrier)
		b.hc.ReleaseReader(b.br)
		if discard || b.closeConn {
			connOp(dropConn, b.hc, b.cc)
		} else {
			connOp(poolConn, b.hc, b.cc)
		}
		b.carrier, b.br, b.r, b.conn, b.u, b.cc = nil, nil, nil, nil, nil, nil
	})
	return nil
}

// fasthttp hands out its connections as *fasthttp.clientConn, which code outside it
// cannot name: an upstreamBody keeps one as any, and connOp gives it back through
// poolConn or dropConn, whose parameter type is the one it asserts.
var (
	poolConn = (*fasthttp.HostClient).ReleaseConn
	dropConn = (*fasthttp.HostClient).CloseConn
)

func connOp[C any](op func(*fasthttp.HostClient, C), hc *fasthttp.HostClient, cc any) {
	op(hc, cc.(C))
}

// nearerSet is deadline, or now plus d when d is set and that comes sooner.
func nearerSet(deadline time.Time, d time.Duration) time.Time {
	if d > 0 {
		return nearer(deadline, time.Now().Add(d))
	}
	return deadline
}
