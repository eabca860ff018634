// Package connwrap finds what a wrapped connection is underneath.
package connwrap

import "net"

// maxDepth bounds the walk: the gateway's connections are at most a stream's wrapper
// over a TLS connection over its deadline.Conn over an arrivalConn.
const maxDepth = 8

// Under returns c, or the first connection under it that is a T, through the
// connections wrappers give (NetConn, as *tls.Conn and the gateway's own wrappers
// have it).
func Under[T any](c net.Conn) (T, bool) {
	for range maxDepth {
		if v, ok := c.(T); ok {
			return v, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	var zero T
	return zero, false
}
