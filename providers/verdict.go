package providers

// Judge says what an attempt that ended with err tells of its upstream. judged is true
// for an answer (any status) and for the upstream's own failures (unreachable, silent,
// cut, not its API), false where no upstream was asked or the gateway itself ended the
// attempt: a full queue or max_connections, a deadline spent before sending, a pool
// with no target in service, an answer over the gateway's buffered-answer limit, a
// stream aborted for a client that went away, a call whose client went away while it
// was queued (ErrClientGone). failed is true for the upstream's failures, 5xx answers
// included; a 4xx is the client's. It is the verdict the pool's health takes of an
// attempt that did not wait in the queue; Backend.Send gives its own verdict of each
// attempt in the Result (Judged, Failed), which a canary is judged by.
func Judge(err error) (judged, failed bool) {
	v := verdictOf(err)
	return v != neutral, v == failure
}
