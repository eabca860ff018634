package providers

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/proxy"
)

// validateProxy checks the proxy URL without quoting it: it may hold a password.
func (c *Config) validateProxy() []error {
	if c.Proxy == "" {
		return nil
	}
	if c.Provider == "mock" {
		return []error{fieldErr("proxy", "does not apply to provider mock, which answers in process")}
	}
	u, err := url.Parse(c.Proxy)
	switch {
	case err != nil:
		return []error{fieldErr("proxy", "is not a URL (percent-encode / ? # @ % in a password)")}
	case u.Scheme != "http" && u.Scheme != "socks5" && u.Scheme != "socks5h":
		return []error{fieldErr("proxy", "must start with http://, socks5:// or socks5h://")}
	case u.Host == "" || u.Port() == "":
		return []error{fieldErr("proxy", "must name a host and a port")}
	case URLPortProblem(u) != "":
		return []error{fieldErr("proxy", URLPortProblem(u))}
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return []error{fieldErr("proxy", "must have no path or query")}
	}
	return nil
}

// proxyDial is the dial through the backend's proxy, nil when it has none:
// dial(ctx, target, end) connects to the proxy with d and has it open a tunnel to
// target (host:port), the whole of it over by end (zero: no bound) or when ctx ends:
// the connection to the proxy, and its answer to CONNECT or its SOCKS5 handshake. end
// is the direct dial's own (connect_timeout, within what is left of the attempt): a
// proxy that accepts and never answers would otherwise hold the request for good.
func proxyDial(rawURL string, d net.Dialer) (func(ctx context.Context, target string, end time.Time) (net.Conn, error), error) {
	if rawURL == "" {
		return nil, nil
	}
	// The proxy's URL is never repeated in an error: it may hold a password.
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("proxy: cannot be used")
	}
	addr := u.Host
	switch u.Scheme {
	case "http":
		var auth string
		if u.User != nil {
			// The decoded credentials: User.String() would percent-encode them.
			cred := u.User.Username()
			if pw, ok := u.User.Password(); ok {
				cred += ":" + pw
			}
			auth = base64.StdEncoding.EncodeToString([]byte(cred))
		}
		return func(ctx context.Context, target string, end time.Time) (net.Conn, error) {
			return dialConnect(ctx, d, addr, auth, target, end)
		}, nil
	case "socks5", "socks5h":
		// x/net's SOCKS5 dialer bounds its handshake only by the context of
		// DialContext: Dial makes it under context.Background(), with no deadline.
		sd, err := proxy.FromURL(u, &d)
		cd, ok := sd.(proxy.ContextDialer)
		if err != nil || !ok {
			return nil, errors.New("proxy: cannot be used")
		}
		return func(ctx context.Context, target string, end time.Time) (net.Conn, error) {
			if !end.IsZero() {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, end)
				defer cancel()
			}
			c, err := cd.DialContext(ctx, "tcp", target)
			if err != nil {
				return nil, socksError(addr, err)
			}
			return c, nil
		}, nil
	}
	return nil, errors.New("proxy: cannot be used")
}

// maxConnectAnswer bounds the header of a proxy's answer to CONNECT: egress proxies
// add a few headers (Via, policy ones), well over the 1 KiB fasthttpproxy's reader
// held, but a peer that sends header lines without end is no proxy.
const maxConnectAnswer = 64 << 10

// dialConnect connects to the HTTP proxy at addr with d and opens a tunnel to target
// with CONNECT (RFC 9110, section 9.3.6), all by end or until ctx ends; auth is the
// Basic Proxy-Authorization token, "" for none.
func dialConnect(ctx context.Context, d net.Dialer, addr, auth, target string, end time.Time) (net.Conn, error) {
	d.Deadline = end
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &proxyError{addr, "unreachable", err}
	}
	_ = c.SetDeadline(end)
	// ctx ending closes the connection, which ends the exchange under way.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	// An IPv6 zone names the interface this host dials from, nothing the proxy could
	// use: it is not sent (RFC 6874), as in every request's Host.
	target = withoutZone(target)
	req := make([]byte, 0, 64+2*len(target)+len(auth))
	req = append(req, "CONNECT "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, target...)
	req = append(req, "\r\n"...)
	if auth != "" {
		req = append(req, "Proxy-Authorization: Basic "...)
		req = append(req, auth...)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	if _, err := c.Write(req); err != nil {
		_ = c.Close()
		return nil, connectError(addr, err)
	}
	lr := &io.LimitedReader{R: c, N: maxConnectAnswer}
	br := bufio.NewReaderSize(lr, 8<<10)
	resp, err := http.ReadResponse(br, nil)
	switch {
	case err != nil && lr.N == 0:
		_ = c.Close()
		return nil, &proxyError{addr, "answered CONNECT with a header over 64 KiB", nil}
	case err != nil:
		_ = c.Close()
		return nil, connectError(addr, err)
	case resp.StatusCode/100 != 2:
		// Any 2xx opens the tunnel (RFC 9110); 407 tells wrong credentials, 403 a
		// target the proxy's policy refuses.
		_ = c.Close()
		return nil, &proxyError{addr, "answered CONNECT with status " + strconv.Itoa(resp.StatusCode), nil}
	}
	if !stop() {
		// ctx ended as the answer came: the connection is closed, or being closed.
		_ = c.Close()
		return nil, &proxyError{addr, "CONNECT given up", ctx.Err()}
	}
	_ = c.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 {
		// What the target sent first, read along with the proxy's answer.
		rest := make([]byte, n)
		_, _ = br.Read(rest)
		return &tunnelConn{Conn: c, rest: rest}, nil
	}
	return c, nil
}

// tunnelConn is a tunnel whose first bytes were read with the proxy's answer: they are
// read first, then the connection.
type tunnelConn struct {
	net.Conn
	rest []byte
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// proxyError is a dial through the proxy at addr (host:port) that failed: what went
// wrong, and the cause kept for classify (a timeout, a refusal), if any.
type proxyError struct {
	addr, what string
	err        error
}

func (e *proxyError) Error() string {
	s := "proxy " + e.addr + ": " + e.what
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *proxyError) Unwrap() error { return e.err }

// connectError is err, from the CONNECT exchange with the proxy at addr, without
// anything the proxy sent: net/http's errors for an answer that does not parse quote
// the bytes read, and a proxy that echoes (a debugging one, or no HTTP proxy at all)
// sends back the request, Proxy-Authorization with the password in base64 included.
// Only *net.OpError is kept as the cause: it names addresses and the system's reason
// (what classify reads: ErrTimeout for a timeout, ErrConnect otherwise).
func connectError(addr string, err error) error {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Timeout():
		return &proxyError{addr, "no answer to CONNECT", op}
	case errors.As(err, &op):
		return &proxyError{addr, "CONNECT failed", op}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &proxyError{addr, "closed the connection before answering CONNECT", nil}
	}
	return &proxyError{addr, "did not answer CONNECT as an HTTP proxy", nil}
}

// socksError is err, from x/net's SOCKS5 dial through the proxy at addr, as a
// proxyError. x/net wraps every failure in a *net.OpError naming the proxy and the
// target; what it wraps is the dial to the proxy's error, a read's or write's, the
// context's, or one of x/net's own fixed messages (a reply's status, a version
// number), none of which quotes a credential.
func socksError(addr string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return &proxyError{addr, "unreachable", op}
	case errors.As(err, &ne) && ne.Timeout():
		return &proxyError{addr, "no answer to the SOCKS5 handshake", err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &proxyError{addr, "closed the connection during the SOCKS5 handshake", nil}
	}
	return &proxyError{addr, "SOCKS5 handshake failed", err}
}
