package mux

import "io"

// sinkState is what Sink adds to a stream; guarded by the stream's mu.
type sinkState struct {
	w        io.Writer
	start    func(func()) // starts a flusher goroutine
	done     func(int64, error)
	flushing bool  // a flusher runs
	ended    bool  // done was called, or is being called
	total    int64 // bytes flushers wrote
}

// Sink hands the stream's data to w as it arrives, until the peer's FIN
// (done(n, nil), n the bytes written) or a failure (done(n, err)), with no
// goroutine of the caller's waiting meanwhile: WriteTo parks one for the
// stream's whole life, so a thousand idle connections spliced with WriteTo
// hold a thousand goroutine stacks more.
//
// While nothing is buffered, the session's reader hands each payload to
// direct (nil: never), as for a parked WriteTo (directLocked): a write to
// w that never waits, SocketWriter for w's socket (small frames, and
// large ones while the stream is alone on the link: pushBuffer) or
// StreamWriter when w is another session's stream (small frames only).
// What direct does not take and the stream's end go to a flusher: a
// goroutine started with start that writes what is buffered to w,
// blocking as WriteTo does, and ends when nothing is left. A flusher calls
// done, once. The stream's read deadline is not watched; Read and WriteTo
// must not be called once Sink has been.
func (st *Stream) Sink(w io.Writer, direct Direct, start func(func()), done func(int64, error)) {
	st.mu.Lock()
	st.sk = &sinkState{w: w, start: start, done: done, flushing: true}
	st.direct = direct
	st.mu.Unlock()
	start(st.flush) // for what arrived before, and to go idle
}

// unlockKick unlocks st.mu, first marking a flusher to be started if the
// stream is a Sink's with something for one to do and none running, and
// starts it after; likewise it calls an armed notification (Notify) that
// has something to read: with later when the session's reader calls
// (Session.later; now at the session's end), else on a goroutine of its
// own.
func (st *Stream) unlockKick(later func(func())) {
	sk := st.sk
	kick := sk != nil && !sk.flushing && !sk.ended && st.readableLocked()
	if kick {
		sk.flushing, st.sinkIdle = true, false
	}
	fn := st.takeNotifyLocked()
	st.mu.Unlock()
	if kick {
		sk.start(st.flush)
	}
	switch {
	case fn == nil:
	case later != nil:
		fn(later)
	default:
		go fn(now)
	}
}

// flush writes the buffered data to the Sink's writer until none is left
// (then the stream goes idle: the reader writes directly again) or the
// stream ended (then it calls done).
func (st *Stream) flush() {
	sk := st.sk
	for {
		st.mu.Lock()
		err := st.recvErrLocked()
		if err == nil && len(st.chunks) == 0 {
			if err = st.eofLocked(); err == nil {
				sk.flushing = false
				st.sinkIdle = st.direct != nil
				st.mu.Unlock()
				return
			}
		}
		if err != nil {
			st.endSinkLocked(err)
			return
		}
		n, err := st.writeChunkLocked(sk.w)
		sk.total += n
		if err != nil {
			st.endSinkLocked(err)
			return
		}
		st.mu.Unlock()
	}
}

// endSinkLocked ends the Sink with err (io.EOF: the peer's FIN), unlocks
// st.mu and calls done.
func (st *Stream) endSinkLocked(err error) {
	sk := st.sk
	if err == io.EOF {
		err = nil
	}
	n := sk.total + st.sinkDirect
	sk.ended, sk.flushing, st.sinkIdle = true, false, false
	st.mu.Unlock()
	sk.done(n, err)
}

// endWaiters, once the session is over, starts a flusher for every Sink
// stream without one, to tell its done, and calls every armed
// notification (Notify), on the reader: its later runs f at once.
func (s *Session) endWaiters() {
	s.mu.Lock()
	var waiting []*Stream
	for _, st := range s.streams {
		st.mu.Lock()
		if st.sk != nil || st.notify != nil {
			waiting = append(waiting, st)
		}
		st.mu.Unlock()
	}
	s.mu.Unlock()
	for _, st := range waiting {
		st.mu.Lock()
		st.unlockKick(now)
	}
}
