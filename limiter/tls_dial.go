package limiter

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"time"
)

// checkedTLS is a TLS connection to Redis whose socket go-redis can check when it
// takes the connection from its pool (SyscallConn). go-redis checks a plain socket
// before each use, dropping one that Redis closed, but not a TLS one: a connection
// Redis closed while the gateway sat idle (its idle timeout, CLIENT KILL, a restart,
// a Sentinel's failover) was found so only by the call that used it, which failed
// (EOF): a heartbeat that degraded the limiter, a script call whose true-ups were then
// dropped as possibly run, a router tick or a revocation poll lost.
//
// The check peeks at the socket: nothing there is healthy; the end of the stream, or
// bytes no reply was asked for (Redis's close_notify ahead of the close), drop the
// connection. RESP2 has no pushes, so bytes ahead of a call are never a reply.
type checkedTLS struct {
	*tls.Conn
	raw syscall.Conn
}

// SyscallConn is the TCP socket's, under the TLS layer.
func (c checkedTLS) SyscallConn() (syscall.RawConn, error) { return c.raw.SyscallConn() }

// dialTLS dials addr and shakes hands as go-redis's own dialer does (the keepalive
// of its default dialer), returning a checkedTLS.
func dialTLS(cfg *tls.Config, timeout time.Duration) func(context.Context, string, string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg
		if c.ServerName == "" {
			// As tls.Dial: the certificate is checked for the host dialed.
			c = cfg.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(raw, c)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		sc, ok := raw.(syscall.Conn)
		if !ok {
			return tc, nil
		}
		return checkedTLS{Conn: tc, raw: sc}, nil
	}
}
