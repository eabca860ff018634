package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that runs leave no goroutine behind: every worker and
// pacer must end with its run. fasthttp's idle-connection cleaners and the
// stand-in servers' workers end on their own timers, after the test; its
// dialer cache cleaner and server date ticker live as long as the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		// The admin scrape goes through fasthttp's default client, whose cleaner lives
		// as long as the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}
