package providers

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"
	"golang.org/x/net/http/httpproxy"
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
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return []error{fieldErr("proxy", "must have no path or query")}
	}
	return nil
}

// proxyDial is the dial through the backend's proxy, nil when it has none. connect
// bounds both the connection to the proxy and its answer to CONNECT.
func proxyDial(proxy string, isTLS bool, connect time.Duration) (fasthttp.DialFunc, error) {
	if proxy == "" {
		return nil, nil
	}
	d := &fasthttpproxy.Dialer{
		Config: httpproxy.Config{HTTPProxy: proxy, HTTPSProxy: proxy},
		// Without it the dial to the proxy is IPv4 only: a proxy at an IPv6
		// address, or named with only AAAA records, would be unreachable.
		DialDualStack:  true,
		Timeout:        connect,
		ConnectTimeout: connect,
	}
	dial, err := d.GetDialFuncForTLS(false, isTLS)
	u, perr := url.Parse(proxy)
	if err != nil || perr != nil {
		// The proxy's URL is not repeated: it may hold a password.
		return nil, errors.New("proxy: cannot be used")
	}
	addr := u.Host
	return func(target string) (net.Conn, error) {
		c, err := dial(target)
		if err != nil {
			return nil, proxyDialError(addr, err)
		}
		return c, nil
	}, nil
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

// proxyDialError is err, from fasthttpproxy's dial, without anything the proxy sent:
// its errors for an answer to CONNECT that does not parse quote the bytes read, and
// a proxy that echoes (a debugging one, or no HTTP proxy at all) sends back the
// request, Proxy-Authorization with the password in base64 included. Only causes
// that quote nothing are kept: fasthttp's timeout sentinels, and *net.OpError, which
// names addresses and the system's reason (what classify reads: ErrTimeout for a
// timeout, ErrConnect for a refusal).
func proxyDialError(addr string, err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return &proxyError{addr, "unreachable", fasthttp.ErrDialTimeout}
	case errors.Is(err, fasthttp.ErrTimeout):
		return &proxyError{addr, "no answer to CONNECT", fasthttp.ErrTimeout}
	case errors.As(err, &op):
		// The innermost error a read or dial returned, not what wraps it: fasthttp
		// wraps a read that failed part way through the answer with the bytes read.
		if op.Op == "dial" {
			return &proxyError{addr, "unreachable", op}
		}
		return &proxyError{addr, "CONNECT failed", op}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &proxyError{addr, "closed the connection before answering CONNECT", nil}
	}
	if status, ok := connectStatus(err); ok {
		return &proxyError{addr, "answered CONNECT with status " + strconv.Itoa(status), nil}
	}
	return &proxyError{addr, "did not answer CONNECT as an HTTP proxy", nil}
}

// connectStatus reads the status out of fasthttpproxy's error for a CONNECT answered
// with other than 200 ("could not connect to proxy addr: ... status code: 407"),
// which tells wrong credentials (407) from a refused target (403).
func connectStatus(err error) (int, bool) {
	msg := err.Error()
	const prefix, sep = "could not connect to proxy addr: ", " status code: "
	i := strings.LastIndex(msg, sep)
	if !strings.HasPrefix(msg, prefix) || i < 0 {
		return 0, false
	}
	n, cerr := strconv.Atoi(msg[i+len(sep):])
	return n, cerr == nil && n >= 100 && n <= 999
}
