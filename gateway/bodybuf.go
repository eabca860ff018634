package gateway

// bodyBufs holds request body buffers that streams gave back when they hijacked
// their connection: a stream's request lives as long as the stream, and keeping its
// body buffer (8 KiB at least, the prompt's size for a long one) would add that to
// every open stream's memory. A channel rather than a sync.Pool: a slice goes in and
// out of it without an allocation. Bounded: past 512 buffers (4 MiB of small ones) a
// buffer is left to the garbage collector.
var bodyBufs = make(chan []byte, 512)

// putBodyBuf gives b, a body buffer a stream no longer needs, to the next request
// that has none; one over maxPooledBuffer is dropped, as release drops it.
func putBodyBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuffer {
		return
	}
	select {
	case bodyBufs <- b[:0]:
	default:
	}
}

// getBodyBuf returns a buffer a stream gave back, or nil when there is none.
func getBodyBuf() []byte {
	select {
	case b := <-bodyBufs:
		return b
	default:
		return nil
	}
}
