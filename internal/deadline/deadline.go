// Package deadline wraps connections so that moving a deadline later costs nothing.
//
// HTTP servers and clients set a read or write deadline for every request, each
// from a fresh clock reading: fasthttp's server sets two per request (the idle wait,
// then the read), its client two more upstream. Every call moves a runtime timer.
// Almost all of these calls push a deadline further out, and almost no deadline
// ever fires. A Conn applies a deadline at once only when it comes sooner than the
// one in force; a later one is recorded, and only if the deadline in force fires
// does the Conn arm the recorded one and carry on with the read or write. Timeouts
// therefore fire exactly when the last deadline asked for says, and a steady
// stream of requests on a connection makes no deadline calls at all.
//
// A Listener can also have a new connection wait for its first byte under a bound of
// its own (an HTTP server's idle timeout), the read deadline asked for meanwhile
// (the server's read timeout) counting from that byte: a client that opens its
// connection ahead of its first request is not timed from the open. Its Pending set
// keeps such connections until their first byte, for a server that shuts down to end
// their wait rather than wait for them.
package deadline

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"
)

// Conn is a net.Conn whose deadlines are applied lazily when they move later.
type Conn struct {
	net.Conn
	// linger makes Close read and drop what the peer still sends before closing.
	linger atomic.Bool
	// waiting is set while the connection waits for its first byte (Listener's
	// FirstByte, which firstByte holds).
	waiting   atomic.Bool
	firstByte time.Duration
	// askedAt is when the read deadline was asked for during the wait, in Unix
	// nanoseconds; 0 is not during the wait.
	askedAt atomic.Int64
	mu      sync.Mutex
	// want is the deadline last asked for, set the one in force on the socket, each
	// for reading and writing, in Unix nanoseconds; 0 is none.
	wantR, setR int64
	wantW, setW int64
	// lines follows the line feeds read (Listener's Lines), heads the requests'
	// header blocks (Listener's Heads).
	lines lineFeeds
	heads heads
	// ended, under mu, is set once Pending.End ended the connection's wait for its
	// first byte: a wait begun after is bounded by endBound. inWait, under mu, is
	// set during a wait.
	ended, inWait bool
	// begun and shook, under mu, are when a connection under TLS read its
	// handshake's first byte and when its handshake was over (its wait for a
	// request began), in Unix nanoseconds; 0 is not yet.
	begun, shook int64
	// pending is the set the connection is in until a byte of its first request is
	// read (Listener's Pending); listed says whether it is in it still, prev and next
	// (under pending.mu) are its neighbours there.
	pending    *Pending
	listed     atomic.Bool
	prev, next *Conn
	// underTLS is set when c carries a TLS connection, whose wait for the first byte
	// of a request ends c's time in pending rather than c's own first byte (the
	// handshake's).
	underTLS bool
	// stall, when above zero, is how long a write may send nothing (SetWriteStall),
	// in nanoseconds, and writes counts the writes begun meanwhile. sent and seen,
	// under mu, are when a write was last seen to begin or to send bytes, and writes
	// then.
	stall  atomic.Int64
	writes atomic.Uint64
	sent   int64
	seen   uint64
	// readEnd is how c's reads ended, once one did: ReadEOF (the peer closed its
	// side), ReadTimedOut (the read deadline passed), or 0 while they go on.
	readEnd atomic.Uint32
}

// How a connection's reads ended (Conn.ReadEnd).
const (
	ReadEOF      = 1
	ReadTimedOut = 2
)

// Wrap returns c as a Conn.
func Wrap(c net.Conn) *Conn { return &Conn{Conn: c} }

// NetConn returns the connection c wraps, as tls.Conn's NetConn does: what reaches
// the socket under it (internal/hangup) looks for either.
func (c *Conn) NetConn() net.Conn { return c.Conn }

const (
	read = iota
	write
)

// unknown marks a deadline in force that a failed call left unknown.
const unknown = -1

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n > 0 {
		return n
	}
	return 1 // before 1970: already passed, and not "none"
}

func toTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// later reports whether deadline a is later than b (0, none, is the latest).
func later(a, b int64) bool {
	return a == 0 && b != 0 || a != 0 && b != 0 && a > b
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline records t, applying it now only if it comes sooner than the
// deadline in force.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.set(read, unixNano(t)) }

// SetWriteDeadline records t, applying it now only if it comes sooner than the
// deadline in force. Under SetWriteStall it does nothing.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.stall.Load() > 0 {
		return nil
	}
	return c.set(write, unixNano(t))
}

// stallSteps is how many times within a write stall's bound (SetWriteStall) the
// socket's write deadline comes, for the Conn to see whether the write under way sent
// bytes, or another write began, since it last looked.
const stallSteps = 8

// SetWriteStall makes d, when above zero, the bound of c's writes in place of a write
// deadline: a write fails once nothing of it has gone out for d, counted from its
// start and from each time bytes of it went (nginx's send_timeout), however long it
// takes in all. Through TLS, each record is a write of its own. A write's bytes are
// seen to go only when the socket's deadline interrupts it, so that deadline comes
// every d/stallSteps: a write fails between d and d plus d/stallSteps after its last
// byte went, never sooner, and a write that goes through costs nothing more. Zero
// ends it, leaving no write deadline.
func (c *Conn) SetWriteStall(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stall.Store(int64(d))
	if d <= 0 {
		return c.setLocked(write, 0)
	}
	now := time.Now().UnixNano()
	c.sent, c.seen = now, c.writes.Load()
	return c.apply(write, &c.setW, now+int64(d)/stallSteps)
}

// rearmStalled is rearm for a write under SetWriteStall that err ended after it sent
// sent bytes: while the write went on sending, or another began, within the stall's
// bound, it arms the next look and reports true, and the write goes on.
func (c *Conn) rearmStalled(stall int64, sent int, err error) bool {
	if !IsTimeout(err) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixNano()
	if w := c.writes.Load(); sent > 0 || w != c.seen {
		// Bytes went, or a write began, since the last look: now is no earlier.
		c.sent, c.seen = now, w
	}
	end := c.sent + stall
	if now >= end {
		return false
	}
	return c.apply(write, &c.setW, min(end, now+stall/stallSteps)) == nil
}

func (c *Conn) set(dir int, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dir == read && c.waiting.Load() {
		// Until the first byte, the wait's own bound is in force; this one counts
		// from that byte (waitFirst).
		c.wantR = n
		c.askedAt.Store(time.Now().UnixNano())
		return nil
	}
	return c.setLocked(dir, n)
}

func (c *Conn) setLocked(dir int, n int64) error {
	want, set := &c.wantR, &c.setR
	if dir == write {
		want, set = &c.wantW, &c.setW
	}
	*want = n
	if *set != unknown && (n == *set || later(n, *set)) {
		// The deadline in force comes first; if it fires, rearm arms n.
		return nil
	}
	return c.apply(dir, set, n)
}

func (c *Conn) apply(dir int, set *int64, n int64) error {
	var err error
	if dir == read {
		err = c.Conn.SetReadDeadline(toTime(n))
	} else {
		err = c.Conn.SetWriteDeadline(toTime(n))
	}
	if err != nil {
		// The socket's deadline is not known now: the next set applies what it is
		// given.
		*set = unknown
		return err
	}
	*set = n
	return nil
}

// rearm is called after err ended a read or write: when err is the deadline in
// force and a later one was asked for since, it arms that one and reports true,
// and the operation goes on.
func (c *Conn) rearm(dir int, err error) bool {
	if !IsTimeout(err) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	want, set := c.wantR, &c.setR
	if dir == write {
		want, set = c.wantW, &c.setW
	}
	if want == *set || want != 0 && want <= time.Now().UnixNano() {
		return false // the deadline asked for has passed: a real timeout
	}
	return c.apply(dir, set, want) == nil
}

// Read reads from the connection under the deadline last asked for. Under a Listener
// with Heads, a read that brings a request header or trailer line ended by a bare LF
// returns what came up to that LF, and the connection reads no more: ErrBareLF.
func (c *Conn) Read(b []byte) (n int, err error) {
	if c.heads.bare > 0 {
		return 0, ErrBareLF
	}
	if c.waiting.Load() && len(b) > 0 {
		n, err = c.waitFirstRead(b)
	} else {
		for {
			n, err = c.Conn.Read(b)
			if err == nil || n > 0 || !c.rearm(read, err) {
				break
			}
		}
	}
	if c.heads.on {
		n = c.heads.add(b[:n])
	}
	if c.lines.on {
		c.lines.add(b[:n])
	}
	if err != nil {
		c.noteReadEnd(err)
	} else if c.readEnd.Load() != 0 {
		// A read that times out does not always end the connection (a watch that
		// reads with a short deadline): one that reads again goes on.
		c.readEnd.Store(0)
	}
	return n, err
}

// noteReadEnd records how a read that failed with err ended c's reads, if it did.
func (c *Conn) noteReadEnd(err error) {
	switch {
	case err == io.EOF:
		c.readEnd.Store(ReadEOF)
	case IsTimeout(err):
		c.readEnd.Store(ReadTimedOut)
	}
}

// ReadEnd reports how c's reads ended: ReadEOF once a read found the peer's side
// closed, ReadTimedOut once one ran past the read deadline (until a read succeeds
// again), 0 while neither. A
// parser that wraps what the connection returned (fasthttp's chunked body reader
// reports a cut or a stall inside a chunk as a broken chunk, and a cut where the next
// chunk's size belongs as a plain end) loses which it was; the connection keeps it.
func (c *Conn) ReadEnd() int { return int(c.readEnd.Load()) }

// waitFirstRead is waitFirst on c's own socket, a plain connection's wait for the
// first byte of its first request (or a TLS connection's for its handshake's).
func (c *Conn) waitFirstRead(b []byte) (int, error) {
	n, err := c.waitFirst(c.Conn, b, &c.askedAt)
	if n > 0 && !c.underTLS {
		c.requestBegun()
	}
	return n, err
}

// requestBegun takes c out of its Listener's Pending: a byte of a request came.
func (c *Conn) requestBegun() {
	if c.pending != nil {
		c.pending.remove(c)
	}
}

// LineFeedIn reports whether a line feed came in the last n bytes read from c, past
// the first skip of them. known is false when c cannot tell: it was not accepted by
// a Listener with Lines, or the latest read that brought a line feed ran past those
// skip bytes, its first line feed coming before (lineFeeds).
func (c *Conn) LineFeedIn(n, skip int) (found, known bool) {
	if !c.lines.on {
		return false, false
	}
	return c.lines.in(n, skip)
}

// BareLF reports whether a line of the header, or of the chunked body's trailer, of
// the request number r (from 1, in the order c carries them) ended in a bare LF
// (heads): that request is to be refused and c closed. known is false when c did not
// follow that request: c was not accepted by a Listener with Heads, or stopped
// following its requests before it.
func (c *Conn) BareLF(r int) (bare, known bool) { return c.heads.bareIn(r) }

// Write writes to the connection under the deadline last asked for, or under
// SetWriteStall.
func (c *Conn) Write(b []byte) (int, error) {
	stall := c.stall.Load()
	if stall > 0 {
		c.writes.Add(1)
	}
	done := 0
	for {
		n, err := c.Conn.Write(b[done:])
		done += n
		if err == nil {
			return done, nil
		}
		if stall > 0 && !c.rearmStalled(stall, n, err) || stall <= 0 && !c.rearm(write, err) {
			return done, err
		}
	}
}

// waitFirst reads b from r (the socket, or a TLS connection over c) while c waits for
// the first byte of its peer's first request: under the wait's bound alone, then
// with the read deadline asked for before it (at askedAt, or just before this read)
// moved to count from the byte, at which askedAt then puts it. A wait that runs out
// reads as the end of the connection (io.EOF), and so does one that fails (a reset:
// load balancers' TCP checks and port scanners close so), but for a connection
// closed on this side: a client that has sent nothing has made no request, and a
// server closes the connection without an answer, as it closes a kept-alive one
// idle too long.
func (c *Conn) waitFirst(r io.Reader, b []byte, askedAt *atomic.Int64) (int, error) {
	start := time.Now()
	c.mu.Lock()
	asked := c.wantR
	if c.begun != 0 {
		// The wait for a request, after the TLS handshake.
		c.shook = start.UnixNano()
	}
	c.wantR = unixNano(start.Add(c.firstByte))
	if c.ended {
		c.wantR = min(c.wantR, c.endBound(start.UnixNano()))
	}
	err := c.apply(read, &c.setR, c.wantR)
	c.inWait = err == nil
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := r.Read(b)
	c.mu.Lock()
	c.inWait = false
	if n == 0 {
		// Still waiting, if the connection is still good for anything: the next
		// wait counts the deadline asked for from its first byte as this one would.
		c.wantR = asked
		c.mu.Unlock()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return 0, io.EOF
		}
		return 0, err
	}
	c.waiting.Store(false)
	now := time.Now().UnixNano()
	if c.underTLS && c.begun == 0 {
		c.begun = now
	}
	if asked != 0 {
		at := askedAt.Load()
		if at == 0 {
			at = start.UnixNano()
		}
		asked += now - at
	}
	// The deadline now counts as asked for at this byte: a wait for a later first
	// byte (a request's, after the TLS handshake this one began) moves it from here,
	// not again from when it was asked for.
	askedAt.Store(now)
	// Lazily when later than the wait's bound, as any other.
	_ = c.setLocked(read, asked)
	c.mu.Unlock()
	return n, err
}

// endGrace is how long a wait for a first byte lasts once Pending.End ended it, for
// a connection that has sent nothing: a byte the peer sent just before (in the
// socket's buffer, the reader not scheduled yet) is still read, and its request served.
const endGrace = 10 * time.Millisecond

// shookGraceMin is the least a client whose TLS handshake was under way when
// Pending.End came is given, from the handshake's end, to send its request: in TLS
// 1.2 that request leaves the client one round trip after the server's Finished.
const shookGraceMin = time.Second

// endBound returns, in Unix nanoseconds, when a wait for the first byte ends once
// Pending.End ended it, at now; under mu. A connection that has sent nothing gets
// endGrace. One under TLS whose handshake had begun gets, from the handshake's end
// (now if it is under way still), twice the handshake's time, shookGraceMin at least
// and its wait's own bound at most: its client is sending a request, which a
// draining server still answers (the gateway serves it, closing the connection after). One whose handshake ended longer
// ago (a pool warmed ahead) is idle, and gets endGrace too.
func (c *Conn) endBound(now int64) int64 {
	end := now + int64(endGrace)
	if c.begun == 0 {
		return end
	}
	shook := c.shook
	if shook == 0 {
		shook = now
	}
	grace := min(max(2*time.Duration(shook-c.begun), shookGraceMin), c.firstByte)
	return max(end, shook+int64(grace))
}

// endWait ends c's wait for its first byte as if its bound ran out (endBound), and
// bounds every later one so: the connection reads as ended (io.EOF) unless a byte
// comes. A connection whose request has begun is not waiting and reads on.
func (c *Conn) endWait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.inWait {
		// wantR too: under TLS the wait reads through Read, whose rearm would
		// otherwise move on to the wait's own bound.
		c.wantR = min(c.wantR, c.endBound(time.Now().UnixNano()))
		_ = c.apply(read, &c.setR, c.wantR)
	}
}

// Bounds of a lingering close: what is read and dropped, and for how long.
const (
	lingerBytes = 64 << 20
	lingerWait  = 2 * time.Second
)

// Linger makes the next Close a lingering one: the connection's sending side is shut
// and what the peer still sends is read and dropped, up to lingerBytes for up to
// lingerWait, before the socket is closed. Closing over unread bytes sends a reset,
// which also discards the answer the peer has not read yet: a client still sending a
// body refused for its size would lose its 413 to the reset.
func (c *Conn) Linger() { c.linger.Store(true) }

// Close closes the connection, after a lingering wait when Linger was called.
func (c *Conn) Close() error {
	c.requestBegun()
	if !c.linger.Load() {
		return c.Conn.Close()
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerWait))
		_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
		_ = c.Conn.Close()
	}()
	return nil
}

// Listener wraps every connection it accepts in a Conn.
type Listener struct {
	net.Listener
	// FirstByte, when set, bounds a new connection's wait for its first byte, and a
	// read deadline asked for before that byte counts from it. A connection that
	// sends nothing within it reads as ended (io.EOF).
	FirstByte time.Duration
	// Lines, when set, has each connection follow the line feeds in what it reads,
	// for LineFeedIn: an HTTP server whose read buffer filled before a request's
	// header block ended tells by it a request line over the buffer (414) from header
	// fields over it (431). It costs each read a search for its first line feed,
	// which a request's header block answers within its request line.
	Lines bool
	// Heads, when set, has each connection follow the header blocks and trailers
	// of the HTTP/1 requests it reads (heads) and, once a line of one ends in a
	// bare LF, read nothing past it (ErrBareLF; BareLF tells it too). A request's
	// header costs a search for each of its line feeds; its body, counted, none.
	Heads bool
	// Pending, when set with FirstByte, keeps each connection until it reads a byte
	// of its first request (or closes), for a server that shuts down to end their
	// wait (Pending.End).
	Pending *Pending
	// PlainHTTP, when set, is written to a client of NewTLSListener's whose first
	// bytes are a plain HTTP request rather than a TLS handshake (a client given
	// http:// for an https:// server), before the connection closes, as Go's
	// net/http answers it: such a client otherwise reads an empty reply.
	PlainHTTP []byte
}

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := Wrap(c)
	w.lines.on = l.Lines
	if l.Heads {
		w.heads.on = true
		w.heads.begin()
	}
	if l.FirstByte > 0 {
		w.firstByte = l.FirstByte
		w.waiting.Store(true)
		if l.Pending != nil {
			l.Pending.add(w)
		}
	}
	return w, nil
}

// Pending is the set of a Listener's connections that have not read a byte of a
// request yet: opened ahead of their first request (a client's pool warming up, a
// preconnect) or by a TCP health check, they carry none. An HTTP server that shuts
// down would otherwise wait for them as for a request (fasthttp counts a connection
// as busy for its first 5 s, net/http as well). The set is a list through the
// connections themselves: adding and removing one allocates nothing, and costs a
// connection two uncontended locks, none for its requests.
type Pending struct {
	mu    sync.Mutex
	head  *Conn
	ended bool
}

func (p *Pending) add(c *Conn) {
	c.pending = p
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		c.endWait()
		return
	}
	c.next = p.head
	if p.head != nil {
		p.head.prev = c
	}
	p.head = c
	c.listed.Store(true)
	p.mu.Unlock()
}

func (p *Pending) remove(c *Conn) {
	if !c.listed.Load() {
		return
	}
	p.mu.Lock()
	if c.listed.Load() {
		if c.prev != nil {
			c.prev.next = c.next
		} else {
			p.head = c.next
		}
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.prev, c.next = nil, nil
		c.listed.Store(false)
	}
	p.mu.Unlock()
}

// End ends the wait for its first byte of every connection in p, and of every one
// added later, as if the wait ran out: each reads as ended (io.EOF), unless a byte
// comes within endGrace, or, under TLS with its handshake begun, within the time its
// client takes to send its request (endBound). A connection whose request has begun
// reads on.
func (p *Pending) End() {
	p.mu.Lock()
	p.ended = true
	var conns []*Conn
	for c := p.head; c != nil; {
		next := c.next
		c.prev, c.next = nil, nil
		c.listed.Store(false)
		conns = append(conns, c)
		c = next
	}
	p.head = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.endWait()
	}
}

// IsTimeout reports whether err is a deadline's timeout: os.ErrDeadlineExceeded from
// a socket, or fasthttputil's from its in-memory pipes (which the in-process mock
// backend dials). Other errors that call themselves timeouts are not: a connection
// the kernel gave up on (ETIMEDOUT) is dead, not past a deadline.
func IsTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttputil.ErrTimeout)
}

// lineFeeds follows where line feeds came in what a connection read: the first one
// of the latest read that brought any, and where that read ended. The last line feed
// of each read would tell about any span of what was read, but finding it costs a
// scan of the whole read, body included; the first costs a search that stops at the
// end of a request line. A span that begins at a read's start, as a request's header
// block does unless it was pipelined behind another request in one read, is told
// exactly.
type lineFeeds struct {
	on bool
	// read counts the bytes read; lf is the offset just past the first line feed of
	// the latest read that had one (0: none yet), end that read's end.
	read, lf, end int64
}

func (l *lineFeeds) add(b []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		l.lf, l.end = l.read+int64(i)+1, l.read+int64(len(b))
	}
	l.read += int64(len(b))
}

// in reports whether a line feed came in the last n bytes read, past the first skip
// of them; known is false when the latest read with one ran past those skip, its
// first line feed coming before.
func (l *lineFeeds) in(n, skip int) (found, known bool) {
	from := max(l.read-int64(n), 0) + int64(skip)
	switch {
	case l.lf > from:
		return true, true
	case l.end <= from:
		return false, true
	}
	return false, false
}
