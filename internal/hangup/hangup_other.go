//go:build !linux

package hangup

import "net"

// Start watches c for its peer hanging up. Without epoll nothing is watched: the
// channel is nil and never receives.
func (w *Watch) Start(c net.Conn) <-chan struct{} { return nil }

// Stop ends the watch.
func (w *Watch) Stop() {}
