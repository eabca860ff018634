// Package freeport finds unused loopback ports for processes a test or the bench
// harness starts and tells which port to listen on.
package freeport

import (
	"net"
	"sync"
)

// given holds the ports handed out by this process: the kernel can give a port it
// has just freed to the next Listen again, and two processes told the same port leave
// the second one unable to start.
var given sync.Map

// Get is a loopback port that was unused a moment ago, that no earlier call in this
// process returned, and that no other process calling Get holds (see reserve). A
// process that does not call Get, or an outgoing connection's local port, can still
// take it before the caller's process binds it; callers that must not fail retry the
// start on a new port.
func Get() (int, error) {
	for {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if _, taken := given.LoadOrStore(port, struct{}{}); !taken && reserve(port) {
			return port, nil
		}
	}
}
