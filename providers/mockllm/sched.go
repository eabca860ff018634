package mockllm

import "time"

// acquireSeq takes one of the MaxNumSeqs slots for st. While none is free the request
// waits in a FIFO, counted in vllm:num_requests_waiting, as in vLLM's scheduler; a
// release hands its slot to the oldest waiter. It returns errShutdown when the server
// shuts down meanwhile, and errGone when the client disconnects: vLLM aborts a queued
// request whose client left (@with_cancellation, Starlette's disconnect listener), so
// it leaves the queue at once and never takes a slot.
func (s *Server) acquireSeq(st *state) error {
	s.schedMu.Lock()
	if s.free > 0 && s.qHead == nil {
		s.free--
		s.schedMu.Unlock()
		s.running.Add(1)
		return nil
	}
	// A watched connection tells a disconnect by a Read that fails; its deadline,
	// moved to the past by the release that grants the slot, wakes the waiter. The
	// deadline is cleared before the state is queued, where a release may move it.
	c := st.conn
	st.watching = c != nil && !c.hasPeek && c.Conn.SetReadDeadline(time.Time{}) == nil
	// Shutdown closes done before it moves every deadline to the past, so a reset
	// that lands after that move sees done here.
	if s.isDone() {
		s.schedMu.Unlock()
		return errShutdown
	}
	if !st.watching && st.wake == nil {
		st.wake = make(chan struct{}, 1) // once per pooled state
	}
	st.granted = false
	s.enqueue(st)
	s.waiting.Add(1)
	s.schedMu.Unlock()
	queued := s.opts.Now()
	var err error
	if st.watching {
		err = s.awaitWatching(st)
	} else {
		err = s.awaitWake(st)
	}
	if err == nil {
		st.queueD = s.opts.Now().Sub(queued)
	}
	return err
}

// awaitWatching waits for the slot by reading the client's connection: a timeout is
// the grant's wake-up (or Shutdown's), an error or EOF the client gone.
func (s *Server) awaitWatching(st *state) error {
	c := st.conn
	for {
		n, err := c.Conn.Read(c.peeked[:])
		s.schedMu.Lock()
		if n == 1 {
			c.hasPeek = true
		}
		if st.granted {
			s.schedMu.Unlock()
			_ = c.Conn.SetReadDeadline(time.Time{})
			return nil
		}
		switch {
		case n == 1:
			// A pipelined request arrived: the connection can no longer tell a
			// disconnect, so the grant comes by channel instead.
			st.watching = false
			if st.wake == nil {
				st.wake = make(chan struct{}, 1)
			}
			s.schedMu.Unlock()
			_ = c.Conn.SetReadDeadline(time.Time{})
			return s.awaitWake(st)
		case err != nil && !isTimeout(err):
			s.leaveQueue(st)
			s.schedMu.Unlock()
			return errGone
		}
		// Shutdown closes done before it moves every deadline to the past, so a reset
		// that lands after that move sees done here.
		_ = c.Conn.SetReadDeadline(time.Time{})
		if s.isDone() {
			s.leaveQueue(st)
			s.schedMu.Unlock()
			return errShutdown
		}
		s.schedMu.Unlock()
	}
}

// awaitWake waits for the slot on st.wake, for a request whose connection cannot be
// watched (Handler mounted on another server, or a pipelined request behind it).
func (s *Server) awaitWake(st *state) error {
	select {
	case <-st.wake:
		return nil
	case <-s.done:
	}
	s.schedMu.Lock()
	defer s.schedMu.Unlock()
	if st.granted {
		<-st.wake // sent under the lock, with the grant
		return nil
	}
	s.leaveQueue(st)
	return errShutdown
}

// releaseSeq gives the slot to the oldest waiter, or frees it.
func (s *Server) releaseSeq() {
	s.schedMu.Lock()
	w := s.qHead
	if w == nil {
		s.free++
		s.schedMu.Unlock()
		s.running.Add(-1)
		return
	}
	s.leaveQueue(w)
	w.granted = true
	if w.watching {
		_ = w.conn.Conn.SetReadDeadline(time.Unix(1, 0))
	} else {
		w.wake <- struct{}{}
	}
	s.schedMu.Unlock()
}

// enqueue appends st to the waiting list; the caller holds schedMu.
func (s *Server) enqueue(st *state) {
	st.qPrev, st.qNext = s.qTail, nil
	if s.qTail != nil {
		s.qTail.qNext = st
	} else {
		s.qHead = st
	}
	s.qTail = st
}

// leaveQueue unlinks st from the waiting list; the caller holds schedMu.
func (s *Server) leaveQueue(st *state) {
	if st.qPrev != nil {
		st.qPrev.qNext = st.qNext
	} else {
		s.qHead = st.qNext
	}
	if st.qNext != nil {
		st.qNext.qPrev = st.qPrev
	} else {
		s.qTail = st.qPrev
	}
	st.qPrev, st.qNext = nil, nil
	s.waiting.Add(-1)
}
