//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package providers

// idlePeek is the look at a pooled connection's socket, which needs recv(2)'s
// MSG_DONTWAIT (conn_idle_unix.go).
type idlePeek struct{}

// idleReadable reports whether the upstream has sent anything on c since its last
// answer. Without the look it is never found so: a stale connection fails its
// request as fasthttp's own pool would have it.
func (c *upstreamConn) idleReadable() bool { return false }
