package mux

// Notify and TryRead let a caller wait for a stream's data without a
// goroutine of its own: an HTTP request sent over a link stream whose
// answer, small and whole, the session's reader passes on to the client
// itself (package l7), where a goroutine blocked in Read would be woken
// for it, a hand-off per request.

// Notify has fn called once, when the stream has something for a read:
// data, the peer's FIN or RST, its closing, or the session's end. It
// returns true without arming fn when the stream has something already:
// the caller reads it (TryRead) itself. A later Notify replaces an fn
// not yet called.
//
// fn runs on the session's reader when the peer's frames bring it, with
// later set: later(f) has the reader run f once it has no more frames at
// hand, before it waits for the connection, so that the work of many
// answers that arrived together (one write to a client for all) is done
// once. When the stream is closed or reset by this end, fn runs on a
// goroutine of its own, and at the session's end on the reader after its
// last frame; later then runs f at once. fn must not block: the whole
// link waits for it.
func (st *Stream) Notify(fn func(later func(func()))) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readableLocked() {
		st.notify = nil
		return true
	}
	st.notify = fn
	return false
}

// readableLocked reports whether a read would not wait.
func (st *Stream) readableLocked() bool {
	return len(st.chunks) > 0 || st.finRecv || st.closed || st.rstErr != nil || st.sess.Err() != nil
}

// TryRead reads what the stream holds without waiting: 0 bytes and no
// error when it holds nothing yet, io.EOF once the peer's FIN came and
// everything before it was read, or the error Read would return.
func (st *Stream) TryRead(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.recvErrLocked(); err != nil {
		return 0, err
	}
	if len(st.chunks) == 0 {
		if err := st.eofLocked(); err != nil {
			return 0, err
		}
		return 0, nil
	}
	return st.copyOutLocked(p), nil
}

// takeNotifyLocked returns the armed notification if the stream has
// something for it, disarming it; nil otherwise.
func (st *Stream) takeNotifyLocked() func(later func(func())) {
	fn := st.notify
	if fn == nil || !st.readableLocked() {
		return nil
	}
	st.notify = nil
	return fn
}

// later is what a notification called from the session's reader gets:
// f runs once the reader has no frame at hand (flushDeferred).
func (s *Session) later(f func()) { s.laterFns = append(s.laterFns, f) }

// now runs f at once: the later of a notification called elsewhere.
func now(f func()) { f() }
