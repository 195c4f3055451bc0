package mux

import (
	"fmt"
	"runtime"
)

// The write path. All frames go through one buffer, wbuf, guarded by wmu.
// Whoever holds wmu first appends the queued control frames, then its own
// frame; it writes the buffer to the connection when nobody else is waiting
// for wmu (the last of a burst flushes for all) and whenever the buffer is
// full. A lone frame therefore goes out at once, header and payload in one
// conn.Write, and concurrent writers share conn.Writes. Writers that are
// ready to run but not yet waiting (many streams' requests and answers at
// once, each on its own goroutine) would each make a write of their own:
// before it flushes a small frame of a stream other than the one whose
// frame it flushed last, a writer yields once (runtime.Gosched), and
// those add theirs first. A stream that writes alone, one request at a
// time, does not yield (docs/benchmarks.md, "HTTP per request").
//
// Control frames (SETTINGS, OPEN, FIN, RST, WINDOW_UPDATE, PING, PONG,
// GOAWAY) are queued without waiting for wmu, so the read loop and the
// keepalive never block on the connection; sendLoop writes them when no
// data writer comes by.

// queueCtl queues a control frame and wakes sendLoop.
func (s *Session) queueCtl(typ frameType, id, length uint32, payload []byte) {
	s.queueCtlPoke(typ, id, length, payload, true)
}

// queueCtlPoke queues a control frame; with wake false sendLoop is not
// woken and the frame leaves with the next write.
func (s *Session) queueCtlPoke(typ frameType, id, length uint32, payload []byte, wake bool) {
	if s.Err() != nil {
		return
	}
	s.ctlMu.Lock()
	s.ctl = appendHeader(s.ctl, typ, id, length)
	s.ctl = append(s.ctl, payload...)
	over := len(s.ctl) > maxCtlQueue
	s.ctlMu.Unlock()
	if over {
		// The caller may hold locks; shutdown may block closing the conn.
		go s.shutdown(fmt.Errorf("%d bytes of control frames queued: peer is not reading", maxCtlQueue))
	}
	if wake {
		poke(s.ctlSig)
	}
}

func (s *Session) sendLoop() {
	for {
		select {
		case <-s.ctlSig:
			s.flush()
		case <-s.done:
			return
		}
	}
}

// lockWriter takes wmu, counting the caller as waiting meanwhile.
func (s *Session) lockWriter() {
	s.waiting.Add(1)
	s.wmu.Lock()
	s.waiting.Add(-1)
}

// flush writes queued control frames and buffered data, unless another
// writer is waiting to do it.
func (s *Session) flush() {
	s.lockWriter()
	defer s.wmu.Unlock()
	if s.werr == nil {
		s.drainCtlLocked()
		s.flushIfLastLocked()
	}
}

// writeData writes one DATA frame for st carrying p. With flush false the
// caller promises to come back (another frame, or flush) before it waits
// for anything.
func (s *Session) writeData(st *Stream, p []byte, flush bool) error {
	var h [headerLen]byte
	return s.writeFrame(st, appendHeader(h[:0], frameData, st.id, uint32(len(p))), p, flush)
}

// writeFrame writes a frame of st made of head and p (either may hold part
// of the payload). A large frame that is whole in head goes to the
// connection directly when nothing else is buffered or waiting.
func (s *Session) writeFrame(st *Stream, head, p []byte, flush bool) error {
	s.lockWriter()
	defer s.wmu.Unlock()
	if s.werr != nil {
		return s.closedErr()
	}
	s.drainCtlLocked()
	// Checked under wmu: FIN and RST are queued after the flag is set, so
	// if it is clear here they can only go out after this frame.
	st.mu.Lock()
	err := st.sendErrLocked()
	st.mu.Unlock()
	if err == nil {
		if len(p) == 0 && len(s.wbuf) == 0 && len(head) >= smallFrame && flush && s.waiting.Load() == 0 {
			s.writeOutLocked(head)
			return s.closedErr()
		}
		s.bufWriteLocked(head)
		s.bufWriteLocked(p)
	}
	if flush && err == nil && len(head)+len(p) < smallFrame && s.waiting.Load() == 0 && s.lastFlusher.Swap(st.id) != st.id {
		// A small frame, and other streams wrote lately: those ready to
		// run may add theirs first, and all leave in one write. A stream
		// that writes alone (one request at a time) does not wait.
		s.wmu.Unlock()
		runtime.Gosched()
		s.lockWriter()
		s.drainCtlLocked()
	}
	if flush || err != nil {
		s.flushIfLastLocked()
	}
	if s.werr != nil {
		return s.closedErr()
	}
	return err
}

// closedErr is the error for writes after the connection failed, nil
// before.
func (s *Session) closedErr() error {
	if s.werr == nil {
		return nil
	}
	if err := s.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrSessionClosed, s.werr)
}

func (s *Session) drainCtlLocked() {
	s.ctlMu.Lock()
	ctl := s.ctl
	s.ctl = s.ctlSpare[:0]
	s.ctlMu.Unlock()
	s.bufWriteLocked(ctl)
	s.ctlSpare = ctl
}

// bufWriteLocked appends b to wbuf, writing out the buffer each time it is
// full.
func (s *Session) bufWriteLocked(b []byte) {
	for len(b) > 0 && s.werr == nil {
		if len(s.wbuf) == cap(s.wbuf) {
			s.writeOutLocked(s.wbuf)
			continue
		}
		n := min(len(b), cap(s.wbuf)-len(s.wbuf))
		s.wbuf = append(s.wbuf, b[:n]...)
		b = b[n:]
	}
}

func (s *Session) flushIfLastLocked() {
	if s.waiting.Load() == 0 && s.werr == nil && len(s.wbuf) > 0 {
		s.writeOutLocked(s.wbuf)
	}
}

func (s *Session) writeOutLocked(b []byte) {
	_, err := s.conn.Write(b)
	s.wbuf = s.wbuf[:0]
	if err != nil {
		s.werr = err
		s.shutdown(fmt.Errorf("write frames: %w", err))
	}
}
