package providers

import (
	"errors"
	"time"
)

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

// SilenceNotifier is implemented by a stream that can tell when its upstream stays
// silent while Next waits for it (queued, prefilling): NotifySilence has fn called,
// from inside Next on its goroutine, every `every` of that silence, so that the caller
// can keep its own client's side alive; an error from fn fails that Next with it. The
// upstream's timeouts are not moved by it, only by the time fn itself takes, which is
// not the upstream's silence. It reports false, and never calls fn, when the stream
// cannot tell.
type SilenceNotifier interface {
	NotifySilence(every time.Duration, fn func() error) bool
}

// Aborter is implemented by a stream that can be cut from another goroutine while
// Next waits for its upstream: the client went away, and nothing else would notice
// before the upstream's next bytes, which a queued request, a long prefill or a
// reasoning pause may hold back for minutes. Next then fails with ErrAborted, which
// says nothing about the upstream's health. Abort must not be called once Close has
// begun.
type Aborter interface {
	Abort()
}

// ErrAborted is the error of a stream cut by Abort.
var ErrAborted = errors.New("stream aborted: the client went away")
