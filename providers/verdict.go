package providers

// Judged reports whether an attempt that ended with err says anything about its
// upstream: true for an answer (any status) and for the upstream's own failures
// (unreachable, silent, cut, not its API); false where no upstream was asked or the
// gateway itself ended the attempt: a full queue or max_connections, a deadline spent
// before sending, a pool with no target in service, a stream aborted for a client
// that went away. A canary is judged by the attempts its upstream saw.
func Judged(err error) bool { return verdictOf(err) != neutral }
