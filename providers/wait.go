package providers

// Waiter is implemented by a stream that can say when it is about to wait for its
// upstream: every byte received so far has been read, and the next read goes to the
// socket. A relay holds the events it has and passes them on in one write at that
// moment, as nginx writes once per upstream read, instead of once per event.
type Waiter interface {
	// NotifyWait has fn called at each such moment until the stream is closed, on
	// the goroutine calling Next and from inside Next; an error from fn fails that
	// Next with it (and the stream's connection is not reused). It reports false,
	// and never calls fn, when the stream cannot tell.
	NotifyWait(fn func() error) bool
}
