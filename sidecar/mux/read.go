package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// recvLoop reads frames until the connection or the peer fails, and ends
// the session with the reason. It never waits for a stream's consumer.
func (s *Session) recvLoop() {
	var err error
	for err == nil {
		var h header
		if h, err = s.readHeader(); err == nil {
			s.recvFrames.Add(1)
			err = s.handle(h)
		}
	}
	s.flushDeferred()
	s.shutdown(err)
	s.endWaiters()
}

// ready writes the frames this reader left in other sessions' buffers
// (deferFlush) before a read of n bytes that may wait for the
// connection: they wait only while the reader has frames at hand.
func (s *Session) ready(n int) {
	if (len(s.deferred) > 0 || len(s.laterFns) > 0) && s.br.Buffered() < n {
		s.flushDeferred()
	}
}

// A reader that always finds data at hand never parks, and then Go may
// leave no thread polling the network: the thread that was polling took
// a P to run this reader when it was last readied, the other Ps' threads
// sleep, and other sockets' data waits for sysmon's poll, every 10 ms at
// best (golang/go#51651 describes the scheduler's side). A gateway that
// carried one bulk stream alone on a link connection, its reader writing
// the data on itself (Stream.pushBuffer), held back every other
// connection's bytes by tens of milliseconds (docs/benchmarks.md, "A
// reader that never parks"). A sender has no such run: it parks each
// time it runs out of credit, a window at most. So every nudgeEvery bytes
// of data the reader wakes an idle P's thread (wakeIdleP), which polls the
// network before it finds nothing else to do, and stays polling until it
// takes a goroutine to run. A polling thread also wakes for the bulk
// stream's own socket events: every 512 KiB cost one stream 13 % of its
// rate on a 2-core host; every 2 MiB bounds the wait at full speed to a
// few ms and costs about nothing (docs/benchmarks.md).
const nudgeEvery = 2 << 20

func (s *Session) nudgeAfter(n int) {
	if s.sinceNudge += n; s.sinceNudge >= nudgeEvery {
		s.sinceNudge = 0
		s.nudges.Add(1)
		wakeIdleP()
	}
}

// wakeIdleP has the scheduler start the thread of an idle P, if there is
// one and no thread is looking for work already: it does so for every
// goroutine started. The goroutine has nothing to do.
func wakeIdleP() { go func() {}() }

// readErr describes a failed read of the connection.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s: %w", what, err)
}

func (s *Session) readHeader() (header, error) {
	s.ready(headerLen)
	b, err := s.br.Peek(headerLen)
	if err != nil {
		if err == io.EOF && len(b) == 0 {
			return header{}, errPeerClosed
		}
		return header{}, readErr("frame header", err)
	}
	h := parseHeader(b)
	s.br.Discard(headerLen)
	switch {
	case h.version != protocolVersion:
		return h, protoErr("frame version %d, this end speaks version %d", h.version, protocolVersion)
	case h.typ >= numFrameTypes:
		return h, protoErr("unknown frame %v", h.typ)
	case h.flags != 0 || h.reserved != 0:
		return h, protoErr("%v frame with flags %#x, reserved %#x", h.typ, h.flags, h.reserved)
	case !s.settingsRecv && h.typ != frameSettings:
		return h, protoErr("first frame is %v, want SETTINGS", h.typ)
	}
	sessionFrame := h.typ >= framePing
	if sessionFrame != (h.id == 0) {
		return h, protoErr("%v frame on stream %d", h.typ, h.id)
	}
	return h, nil
}

func (s *Session) handle(h header) error {
	switch h.typ {
	case frameData:
		return s.handleData(h)
	case frameWindowUpdate:
		return s.handleWindowUpdate(h)
	case frameOpen:
		return s.handleOpen(h)
	case frameFin:
		return s.handleFin(h)
	case frameRst:
		return s.handleRst(h)
	case framePing, framePong:
		if h.length != 8 {
			return protoErr("%v frame of %d bytes, want 8", h.typ, h.length)
		}
		s.ready(8)
		p, err := s.br.Peek(8)
		if err != nil {
			return readErr(h.typ.String(), err)
		}
		if h.typ == framePing {
			s.queueCtl(framePong, 0, 8, p)
		} else if seq := binary.BigEndian.Uint64(p); seq != 0 && s.pingOutstanding.CompareAndSwap(seq, 0) {
			s.rtt.Store(int64(time.Since(s.start) - time.Duration(s.pingSentAt.Load())))
		}
		s.br.Discard(8)
		return nil
	case frameGoAway:
		if h.length != 0 {
			return protoErr("GOAWAY frame with length %d", h.length)
		}
		s.mu.Lock()
		s.goAwayRecv = true
		s.mu.Unlock()
		return nil
	case frameSettings:
		return s.handleSettings(h)
	}
	panic("unreachable: frame type checked in readHeader")
}

func (s *Session) handleSettings(h header) error {
	if s.settingsRecv {
		return protoErr("second SETTINGS frame")
	}
	if h.length != 8 {
		return protoErr("SETTINGS frame of %d bytes, want 8", h.length)
	}
	s.ready(8)
	p, err := s.br.Peek(8)
	if err != nil {
		return readErr("SETTINGS", err)
	}
	window, frame := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
	s.br.Discard(8)
	if window < minStreamWindow || window > maxStreamWindow {
		return protoErr("SETTINGS window %d outside [%d, %d]", window, minStreamWindow, maxStreamWindow)
	}
	if frame < minFrameSize || frame > maxFrameSize {
		return protoErr("SETTINGS max frame size %d outside [%d, %d]", frame, minFrameSize, maxFrameSize)
	}
	s.settingsRecv = true
	s.sendMaxFrame.Store(int32(min(s.cfg.MaxFrameSize, int(frame))))
	s.mu.Lock()
	defer s.mu.Unlock()
	// Streams opened so far assumed initialWindow; only this end's can
	// exist, since SETTINGS is the peer's first frame.
	delta := window - s.peerWindow
	s.peerWindow = window
	for _, st := range s.streams {
		st.mu.Lock()
		st.sendWindow += delta
		st.mu.Unlock()
		poke(st.writeCh)
	}
	return nil
}

// streamFor returns the stream a frame is for, nil if that stream existed
// and is gone (the frame is to be discarded), or a protocol error if it
// never existed.
func (s *Session) streamFor(h header) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[h.id]; st != nil {
		return st, nil
	}
	if s.isLocal(h.id) && uint64(h.id) < s.nextID || !s.isLocal(h.id) && h.id <= s.lastPeerID {
		return nil, nil
	}
	return nil, protoErr("%v frame for stream %d, which was never opened", h.typ, h.id)
}

func (s *Session) handleData(h header) error {
	if h.length > uint32(s.cfg.MaxFrameSize) {
		return protoErr("DATA frame of %d bytes on stream %d exceeds max frame size %d", h.length, h.id, s.cfg.MaxFrameSize)
	}
	n := int(h.length)
	s.dataBytes.Add(uint64(n))
	s.nudgeAfter(n)
	s.ready(n)
	if h.id != s.lastData {
		s.lastData, s.runLength = h.id, 0
	}
	if s.runLength < loneRun {
		s.runLength++
	}
	st, err := s.streamFor(h)
	if err != nil {
		return err
	}
	if st == nil {
		if _, err := s.br.Discard(n); err != nil {
			return readErr("DATA", err)
		}
		return nil
	}
	if n <= smallFrame {
		// Copy out of the read buffer, into the spare room of the
		// stream's last buffer where there is some.
		p, err := s.br.Peek(n)
		if err != nil {
			return readErr("DATA", err)
		}
		if err := st.pushSmall(p, s.br.Buffered()-n >= headerLen); err != nil {
			return err
		}
		s.br.Discard(n)
		return nil
	}
	// Read straight into a buffer of its own.
	keep, err := st.reserveRecv(n)
	if err != nil {
		return err
	}
	if !keep {
		if _, err := s.br.Discard(n); err != nil {
			return readErr("DATA", err)
		}
		return nil
	}
	buf := getBuffer(n)
	buf.b = buf.b[:n]
	if _, err := io.ReadFull(s.br, buf.b); err != nil {
		putBuffer(buf)
		return readErr("DATA", err)
	}
	st.pushBuffer(buf, s.runLength >= loneRun)
	return nil
}

func (s *Session) handleWindowUpdate(h header) error {
	if h.length == 0 {
		return protoErr("WINDOW_UPDATE of 0 on stream %d", h.id)
	}
	st, err := s.streamFor(h)
	if st == nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if uint64(st.sendWindow)+uint64(h.length) > uint64(s.peerWindow) {
		return protoErr("WINDOW_UPDATE of %d on stream %d takes its credit above the window %d", h.length, h.id, s.peerWindow)
	}
	st.sendWindow += h.length
	poke(st.writeCh)
	return nil
}

func (s *Session) handleOpen(h header) error {
	if h.length != 0 {
		return protoErr("OPEN frame with length %d", h.length)
	}
	if s.isLocal(h.id) {
		return protoErr("OPEN frame for stream %d, an ID of this end's parity", h.id)
	}
	s.mu.Lock()
	if h.id <= s.lastPeerID {
		last := s.lastPeerID
		s.mu.Unlock()
		return protoErr("OPEN frame for stream %d after stream %d: IDs must grow", h.id, last)
	}
	s.lastPeerID = h.id
	refused, reason := s.acceptLocked(h.id)
	s.mu.Unlock()
	if !refused {
		return nil
	}
	// Counted before the peer can hear of it.
	if s.cfg.OnRefuse != nil {
		s.cfg.OnRefuse(reason)
	}
	code := uint32(rstRefused)
	if reason == RefusedGoingAway {
		code = rstGoingAway
	}
	s.queueCtl(frameRst, h.id, code, nil)
	return nil
}

// acceptLocked hands the stream the peer opened to Accept, or says why it
// is refused.
func (s *Session) acceptLocked(id uint32) (refused bool, reason RefuseReason) {
	switch {
	case s.goAwaySent:
		return true, RefusedGoingAway
	case s.peerOpen >= s.cfg.MaxIncomingStreams:
		return true, RefusedStreamLimit
	}
	st := newStream(s, id, s.peerWindow)
	select {
	case s.acceptCh <- st:
		// Under s.mu, so the stream is in the map before anything the
		// acceptor does to it can remove it.
		s.streams[id] = st
		s.peerOpen++
		return false, 0
	default:
		return true, RefusedBacklog
	}
}

func (s *Session) handleFin(h header) error {
	if h.length != 0 {
		return protoErr("FIN frame with length %d", h.length)
	}
	st, err := s.streamFor(h)
	if st == nil {
		return err
	}
	return st.finReceived()
}

func (s *Session) handleRst(h header) error {
	var reason error
	switch h.length {
	case rstCancel:
		reason = fmt.Errorf("stream %d reset by peer: %w", h.id, ErrStreamReset)
	case rstStop:
		reason = nil // see Stream.resetReceived
	case rstRefused:
		reason = fmt.Errorf("stream %d refused by peer (too many streams open, or its accept backlog full): %w", h.id, ErrStreamReset)
	case rstGoingAway:
		reason = fmt.Errorf("stream %d refused: %w (%w)", h.id, ErrGoAway, ErrStreamReset)
	default:
		return protoErr("RST on stream %d with unknown reason %d", h.id, h.length)
	}
	st, err := s.streamFor(h)
	if st == nil {
		return err
	}
	st.resetReceived(reason)
	return nil
}
