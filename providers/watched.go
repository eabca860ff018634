package providers

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
)

// A non-streamed request can spend seconds with its upstream (a long generation, a
// queue inside vLLM) while the gateway's handler waits for the answer and reads
// nothing of its client. A client that hangs up meanwhile would leave the upstream
// generating for nobody until the end, holding its slot, its connection and the
// accelerator. The read of the answer wakes every clientCheckEvery the upstream
// stays silent (as for a stream's silence hook, upstreamConn.read) and asks the call's
// ClientWatch, started at the first wake-up: an answer that comes sooner costs
// nothing more than its read, and a client that hung up ends the read, which closes
// the upstream connection: vLLM, like an HTTP server generally, stops working on a
// request whose connection closes. The attempt then fails with ErrClientLeftUpstream.
//
// fasthttp's transport hands the caller no connection before the answer is read, so
// an attempt of a watched call goes through watchedRoundTrip, fasthttp's own round
// trip for a buffered answer written with the public HostClient API, which sets the
// call on the connection it takes and clears it before the connection goes back to
// the pool. A stream's request keeps fasthttp's transport: its answer's header comes
// at once from vLLM and OpenAI alike, and from there the stream's own watch
// (gateway/stream.go) sees its client leave.

// clientCheckEvery is how often the read of a watched call's answer asks whether its
// client is still there while the upstream is silent.
var clientCheckEvery = 200 * time.Millisecond

// watchedKey is the request user value under which roundTrip hands the transport the
// call to watch. It is boxed once: setting it allocates nothing.
var watchedKey any = watchedKeyType{}

type watchedKeyType struct{}

// watchedCall returns the call req's answer is awaited for, nil when it is not watched.
func watchedCall(req *fasthttp.Request) *Call {
	c, _ := req.UserValue(watchedKey).(*Call)
	return c
}

// watchClient marks req as sent for call, whose client is then watched while the
// answer is awaited (non-streamed calls with a ClientWatch only).
func watchClient(req *fasthttp.Request, call *Call) {
	if call.Client == nil || call.Stream {
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

// watchedRoundTrip is fasthttp's transport for a buffered answer (transport.RoundTrip
// in fasthttp 1.77, its streaming branch left out), with the call set on the
// connection while the answer is read, for its silent ticks to ask after. Its retry
// result is fasthttp's: the caller (upstreamTransport) narrows it.
func watchedRoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, call *Call) (bool, error) {
	timeout := req.GetTimeOut()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	cc, err := hc.AcquireConn(timeout, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)
	if err := conn.SetWriteDeadline(nearerSet(deadline, hc.WriteTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	reset := false
	if hc.MaxConnDuration > 0 && time.Since(cc.CreatedTime()) > hc.MaxConnDuration && !req.ConnectionClose() {
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
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	if err := conn.SetReadDeadline(nearerSet(deadline, hc.ReadTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	u := upstreamOf(conn.LocalAddr())
	if u != nil {
		u.watched, u.every = call, clientCheckEvery
	}
	br := hc.AcquireReader(conn)
	err = resp.ReadLimitBody(br, hc.MaxResponseBodySize)
	hc.ReleaseReader(br)
	if u != nil {
		u.watched = nil
		if we, ok := u.readErr.(*waitError); ok && err != nil {
			// fasthttp reports any failed read of an answer's first byte as an
			// end of file, which a retry would take for the upstream's close.
			err = we
		}
	}
	if err != nil {
		hc.CloseConn(cc)
		return !errors.Is(err, fasthttp.ErrBodyTooLarge), err
	}
	if reset || req.ConnectionClose() || resp.ConnectionClose() {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// nearerSet is deadline, or now plus d when d is set and that comes sooner.
func nearerSet(deadline time.Time, d time.Duration) time.Time {
	if d > 0 {
		return nearer(deadline, time.Now().Add(d))
	}
	return deadline
}
