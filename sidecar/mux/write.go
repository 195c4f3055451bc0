package mux

import (
	"fmt"
	"runtime"
	"slices"
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

// queueCtlFromReader queues a control frame the session's own reader
// makes (a WINDOW_UPDATE for data it wrote to a stream's destination
// itself). Over a HeldWriter the frame leaves with the reader's deferred
// writes, once it has no frame at hand (flushDeferred), in one write that
// never waits, so sendLoop is not woken for it; otherwise sendLoop writes
// it.
func (s *Session) queueCtlFromReader(typ frameType, id, length uint32) {
	if _, ok := s.conn.(HeldWriter); !ok {
		s.queueCtl(typ, id, length, nil)
		return
	}
	s.queueCtlPoke(typ, id, length, nil, false)
	s.deferFlush(s)
}

func (s *Session) sendLoop() {
	for {
		select {
		case <-s.ctlSig:
			s.loopWakes.Add(1)
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

// flush writes what the connection holds from a TryWrite, then queued
// control frames and buffered data, unless another writer is waiting to
// do it.
func (s *Session) flush() {
	s.lockWriter()
	defer s.wmu.Unlock()
	if s.held && s.werr == nil {
		s.held = false
		if err := s.conn.(HeldWriter).FlushHeld(); err != nil {
			s.failWriteLocked(err)
		}
	}
	if s.werr == nil {
		s.drainCtlLocked()
		s.flushIfLastLocked()
	}
}

// Flush writes what the session's buffer holds, unless another writer
// is about to: for frames WriteUnflushed left there.
func (s *Session) Flush() { s.flush() }

// A HeldWriter is a connection that can take a write without waiting for
// its socket: what the socket does not take at once it holds, and writes
// ahead of anything written after. A Session over one can write into a
// stream from another session's reader (Stream.TryWrite).
type HeldWriter interface {
	// WriteHeld takes all of p, or none of it when it cannot without
	// waiting (another write of the connection under way). held says
	// that part of p waits in the connection for FlushHeld or the next
	// Write.
	WriteHeld(p []byte) (taken, held bool, err error)
	// FlushHeld writes what the connection holds, waiting as Write does.
	FlushHeld() error
}

// TryWrite writes p as one DATA frame of st only if that needs no wait:
// the session's connection is a HeldWriter that takes it at once, no
// other writer holds or waits for the connection, and st has credit for
// all of p. It reports whether it took p; it never blocks, so a session's
// reader may call it, even holding a lock of another stream's, to carry a
// stream in transit to the next link without a hand-off (StreamWriter).
func (st *Stream) TryWrite(p []byte) bool { return st.tryWrite(p, nil) }

// tryWrite is TryWrite; with from set (the session whose reader calls,
// with more frames at hand) the frame may stay in the buffer, for from's
// reader to write with the frames after it (flushDeferred).
func (st *Stream) tryWrite(p []byte, from *Session) bool {
	s := st.sess
	if _, ok := s.conn.(HeldWriter); !ok || len(p) == 0 || len(p) > int(s.sendMaxFrame.Load()) || s.waiting.Load() != 0 || !s.wmu.TryLock() {
		return false
	}
	defer s.wmu.Unlock()
	if s.werr != nil || s.held || !s.drainCtlWithinLocked(headerLen+len(p)) {
		return false
	}
	if !st.mu.TryLock() {
		poke(s.ctlSig) // for control frames now in wbuf
		return false
	}
	ok := st.sendErrLocked() == nil && int(st.sendWindow) >= len(p)
	if ok {
		st.sendWindow -= uint32(len(p))
	}
	st.mu.Unlock()
	if !ok {
		poke(s.ctlSig)
		return false
	}
	s.dataBytes.Add(uint64(len(p)))
	s.wbuf = appendHeader(s.wbuf, frameData, st.id, uint32(len(p)))
	s.wbuf = append(s.wbuf, p...)
	s.lastFlusher.Store(st.id)
	if from != nil && from != s && cap(s.wbuf)-len(s.wbuf) >= smallFrame+headerLen {
		from.deferFlush(s)
		return true
	}
	s.writeHeldLocked()
	return true
}

// writeHeldLocked writes wbuf with the HeldWriter's write that never
// waits; what it cannot write goes with sendLoop.
func (s *Session) writeHeldLocked() {
	taken, held, err := s.conn.(HeldWriter).WriteHeld(s.wbuf)
	if !taken {
		// The frames stay in wbuf, their credit spent: sendLoop writes them.
		poke(s.ctlSig)
		return
	}
	s.wbuf = s.wbuf[:0]
	switch {
	case err != nil:
		// Apart: the caller may hold another stream's lock, and
		// closing the connection may wait.
		s.werr = err
		go s.shutdown(fmt.Errorf("write frames: %w", err))
	case held:
		s.held = true
		poke(s.ctlSig)
	}
}

// deferFlush notes that d's buffer (or, for the session itself, its
// control queue) holds frames this session's reader wrote, to write once
// the reader has no frame at hand. Only the reader calls it.
func (s *Session) deferFlush(d *Session) {
	if !slices.Contains(s.deferred, d) {
		s.deferred = append(s.deferred, d)
	}
}

// flushDeferred runs the work notifications left for the burst's end
// (Session.later), then writes the buffers deferFlush noted, each without
// waiting: a session whose writer is busy has its sendLoop do it (the
// writer under way may write them first).
func (s *Session) flushDeferred() {
	for i, f := range s.laterFns {
		s.laterFns[i] = nil
		f()
	}
	s.laterFns = s.laterFns[:0]
	for i, d := range s.deferred {
		s.deferred[i] = nil
		if d.waiting.Load() != 0 || !d.wmu.TryLock() {
			poke(d.ctlSig)
			continue
		}
		if d == s && d.werr == nil && !d.drainCtlWithinLocked(0) {
			poke(d.ctlSig) // more control frames than wbuf holds
		} else if d.werr == nil && len(d.wbuf) > 0 {
			d.writeHeldLocked() // behind anything held, or to sendLoop
		}
		d.wmu.Unlock()
	}
	s.deferred = s.deferred[:0]
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

func (s *Session) drainCtlLocked() { s.drainCtlWithinLocked(-1) }

// drainCtlWithinLocked moves the queued control frames into wbuf, unless
// room is not negative and they would leave less than room bytes free
// there; it reports whether it moved them. With room, nothing is written
// to the connection.
func (s *Session) drainCtlWithinLocked(room int) bool {
	s.ctlMu.Lock()
	ctl := s.ctl
	if room >= 0 && len(s.wbuf)+len(ctl)+room > cap(s.wbuf) {
		s.ctlMu.Unlock()
		return false
	}
	s.ctl = s.ctlSpare[:0]
	s.ctlMu.Unlock()
	s.bufWriteLocked(ctl)
	s.ctlSpare = ctl
	return true
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
		s.failWriteLocked(err)
	}
}

// failWriteLocked ends the session after a failed write.
func (s *Session) failWriteLocked(err error) {
	s.werr = err
	s.shutdown(fmt.Errorf("write frames: %w", err))
}
