package mux

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/rawio"
)

// Stream is one bidirectional stream of a Session. It implements net.Conn;
// its methods are safe for concurrent use, though concurrent Reads (or
// Writes) interleave unpredictably.
type Stream struct {
	sess    *Session
	id      uint32
	readCh  chan struct{} // poked when data, FIN, RST or a deadline change arrive
	writeCh chan struct{} // poked when credit, RST or a deadline change arrive
	rdl     deadline
	wdl     deadline

	mu         sync.Mutex
	chunks     []*buffer // received, unread
	recvAvail  uint32    // bytes the peer may still send
	unacked    uint32    // bytes read but not yet granted back
	sendWindow uint32    // bytes this end may still send
	finRecv    bool      // the peer sent FIN
	finSent    bool      // FIN queued
	stopped    bool      // the peer closed without reading to the end
	closed     bool      // Close called
	removed    bool      // gone from the session's map
	rstErr     error     // reset by either end

	// While WriteTo waits for data with nothing buffered, the session's
	// reader may hand small DATA payloads straight to WriteTo's
	// destination (one write that never waits: to a socket, or
	// TryWrite into another stream), saving the hand-off to the WriteTo
	// goroutine; see directLocked.
	direct     Direct
	sinkIdle   bool  // WriteTo is parked (or Sink idle) with chunks empty
	sinkDirect int64 // bytes the reader wrote to direct, not yet counted by WriteTo

	sk *sinkState // Sink's, nil unless Sink was called (sink.go)
	// notify is called once the stream has something to read (Notify).
	notify func(later func(func()))
}

var (
	_ net.Conn      = (*Stream)(nil)
	_ io.WriterTo   = (*Stream)(nil)
	_ io.ReaderFrom = (*Stream)(nil)
)

func newStream(s *Session, id, sendWindow uint32) *Stream {
	return &Stream{
		sess:       s,
		id:         id,
		readCh:     make(chan struct{}, 1),
		writeCh:    make(chan struct{}, 1),
		recvAvail:  s.cfg.StreamWindow,
		sendWindow: sendWindow,
	}
}

// ID returns the stream's ID: odd if the client opened it, even if the
// server did.
func (st *Stream) ID() uint32 { return st.id }

// LocalAddr returns the session's local address.
func (st *Stream) LocalAddr() net.Addr { return st.sess.LocalAddr() }

// RemoteAddr returns the session's remote address.
func (st *Stream) RemoteAddr() net.Addr { return st.sess.RemoteAddr() }

// Read reads data the peer sent. It returns io.EOF once the peer's FIN has
// arrived and everything before it has been read.
func (st *Stream) Read(p []byte) (int, error) {
	for {
		if st.rdl.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		st.mu.Lock()
		if err := st.recvErrLocked(); err != nil {
			st.mu.Unlock()
			return 0, err
		}
		if len(st.chunks) > 0 || len(p) == 0 {
			n := st.copyOutLocked(p)
			st.mu.Unlock()
			return n, nil
		}
		err := st.eofLocked()
		st.mu.Unlock()
		if err != nil {
			return 0, err
		}
		select {
		case <-st.readCh:
		case <-st.rdl.wait():
		case <-st.sess.done:
		}
	}
}

// copyOutLocked copies what the stream holds into p, as much as fits,
// frees the buffers emptied and counts the bytes as read.
func (st *Stream) copyOutLocked(p []byte) int {
	n := 0
	for n < len(p) && len(st.chunks) > 0 {
		c := st.chunks[0]
		k := copy(p[n:], c.b[c.off:])
		c.off += k
		n += k
		if c.off == len(c.b) {
			putBuffer(st.popChunkLocked())
		}
	}
	st.consumedLocked(n)
	return n
}

// WriteTo writes the stream's data to w until EOF or an error, handing w
// the received buffers themselves. It honours the read deadline while it
// waits for data.
func (st *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var direct Direct
	if sc, ok := w.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			direct = SocketWriter(rc)
		}
	}
	for {
		if st.rdl.expired() {
			return total, os.ErrDeadlineExceeded
		}
		st.mu.Lock()
		if err := st.recvErrLocked(); err != nil {
			st.mu.Unlock()
			return total, err
		}
		if len(st.chunks) == 0 {
			err := st.eofLocked()
			st.mu.Unlock()
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			st.mu.Lock()
			st.direct, st.sinkIdle = direct, direct != nil
			st.mu.Unlock()
			select {
			case <-st.readCh:
			case <-st.rdl.wait():
			case <-st.sess.done:
			}
			st.mu.Lock()
			st.sinkIdle = false
			total += st.sinkDirect
			st.sinkDirect = 0
			st.mu.Unlock()
			continue
		}
		n, err := st.writeChunkLocked(w)
		st.mu.Unlock()
		total += n
		if err != nil {
			return total, err
		}
	}
}

// writeChunkLocked writes the first received chunk to w, outside st.mu
// (held on entry and on return), frees it and counts it as read.
func (st *Stream) writeChunkLocked(w io.Writer) (int64, error) {
	c := st.popChunkLocked()
	st.mu.Unlock()
	p := c.b[c.off:]
	n, err := w.Write(p)
	putBuffer(c)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	st.mu.Lock()
	st.consumedLocked(len(p)) // even on error: those bytes are gone
	return int64(n), err
}

// recvErrLocked is the error for reads before looking at data.
func (st *Stream) recvErrLocked() error {
	if st.rstErr != nil {
		return st.rstErr
	}
	if st.closed {
		return fmt.Errorf("read stream %d: %w", st.id, net.ErrClosed)
	}
	return nil
}

// eofLocked is the error for reads when no data is buffered; nil means
// wait.
func (st *Stream) eofLocked() error {
	if st.finRecv {
		return io.EOF
	}
	return st.sess.Err()
}

func (st *Stream) popChunkLocked() *buffer {
	c := st.chunks[0]
	copy(st.chunks, st.chunks[1:])
	st.chunks[len(st.chunks)-1] = nil
	st.chunks = st.chunks[:len(st.chunks)-1]
	return c
}

// consumedLocked accounts for n bytes read and grants the peer more credit
// once half a window has been read.
func (st *Stream) consumedLocked(n int) {
	if inc := st.creditLocked(n); inc > 0 {
		st.sess.queueCtl(frameWindowUpdate, st.id, inc, nil)
	}
}

// creditLocked accounts for n bytes read and returns the credit to grant
// the peer, 0 until half a window has been read.
func (st *Stream) creditLocked(n int) uint32 {
	if st.finRecv || st.closed || st.rstErr != nil {
		return 0
	}
	st.unacked += uint32(n)
	if st.unacked < st.sess.cfg.StreamWindow/2 {
		return 0
	}
	inc := st.unacked
	st.unacked = 0
	st.recvAvail += inc
	return inc
}

// Write writes p, in frames of at most the max frame size, waiting for the
// peer to grant credit as needed. A write deadline bounds the wait for
// credit; a write already handed to the connection cannot be abandoned.
func (st *Stream) Write(p []byte) (int, error) { return st.write(p, true) }

// WriteUnflushed writes p as Write does, except that its last frame may
// stay in the session's buffer, to leave in one write with the frames
// written after it: the caller calls f.Flush() before it waits for
// anything (f is the stream's session, the same for all its streams). A
// reader of many clients' requests at once writes them all so.
func (st *Stream) WriteUnflushed(p []byte) (f interface{ Flush() }, n int, err error) {
	n, err = st.write(p, false)
	return st.sess, n, err
}

// write is Write; with flushEnd false, WriteUnflushed.
func (st *Stream) write(p []byte, flushEnd bool) (int, error) {
	written := 0
	pending := false // a frame of ours is buffered unflushed
	for {
		n, more, err := st.reserveSend(len(p), !pending)
		if err == errWouldBlock {
			st.sess.flush()
			pending = false
			continue
		}
		if err != nil {
			if pending {
				st.sess.flush()
			}
			return written, err
		}
		if len(p) == 0 {
			return 0, nil
		}
		last := n == len(p) || !more
		flush := last && (flushEnd || n < len(p))
		if err := st.sess.writeData(st, p[:n], flush); err != nil {
			return written, err
		}
		pending = !flush
		written += n
		p = p[n:]
		if len(p) == 0 {
			return written, nil
		}
	}
}

// ReadFrom copies r to the stream until r's EOF (it does not send FIN),
// reading straight into frame buffers: each read asks for as much as fills
// a frame of MaxFrameSize bytes, header included, so that full reads make
// whole TLS records and nothing is copied again. io.Copy(stream, conn) uses
// it.
func (st *Stream) ReadFrom(r io.Reader) (int64, error) {
	buf := getBuffer(st.sess.cfg.MaxFrameSize)
	defer putBuffer(buf)
	b := buf.b[:cap(buf.b)]
	var total int64
	for {
		want := int(st.sess.sendMaxFrame.Load()) - headerLen
		n, _, err := st.reserveSend(want, true)
		if err != nil {
			return total, err
		}
		m, rerr := r.Read(b[headerLen : headerLen+n])
		if m < n { // give back the credit not used
			st.mu.Lock()
			st.sendWindow += uint32(n - m)
			st.mu.Unlock()
			poke(st.writeCh)
		}
		if m > 0 {
			appendHeader(b[:0], frameData, st.id, uint32(m))
			if err := st.sess.writeFrame(st, b[:headerLen+m], nil, true); err != nil {
				return total, err
			}
			total += int64(m)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

type wouldBlock struct{}

func (wouldBlock) Error() string { return "would block" }

var errWouldBlock error = wouldBlock{}

// reserveSend takes up to want bytes of send credit, waiting for some if
// block is set (errWouldBlock if not). more reports credit left over.
func (st *Stream) reserveSend(want int, block bool) (n int, more bool, err error) {
	for {
		if st.wdl.expired() {
			return 0, false, os.ErrDeadlineExceeded
		}
		st.mu.Lock()
		if err := st.sendErrLocked(); err != nil {
			st.mu.Unlock()
			return 0, false, err
		}
		if want == 0 {
			st.mu.Unlock()
			return 0, false, nil
		}
		if st.sendWindow > 0 {
			n = min(want, int(st.sendWindow), int(st.sess.sendMaxFrame.Load()))
			st.sendWindow -= uint32(n)
			more = st.sendWindow > 0
			st.mu.Unlock()
			st.sess.dataBytes.Add(uint64(n))
			return n, more, nil
		}
		st.mu.Unlock()
		if !block {
			return 0, false, errWouldBlock
		}
		select {
		case <-st.writeCh:
		case <-st.wdl.wait():
		case <-st.sess.done:
		}
	}
}

// sendErrLocked is the error for writes, nil if the stream can send.
func (st *Stream) sendErrLocked() error {
	switch {
	case st.rstErr != nil:
		return st.rstErr
	case st.closed:
		return fmt.Errorf("write stream %d: %w", st.id, net.ErrClosed)
	case st.finSent:
		return fmt.Errorf("write stream %d after CloseWrite: %w", st.id, net.ErrClosed)
	case st.stopped:
		return fmt.Errorf("write stream %d: peer closed it without reading to the end: %w", st.id, ErrStreamReset)
	}
	return st.sess.Err()
}

// CloseWrite sends FIN: the peer reads EOF once it has read what was
// written before. This end can still read.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	if err := st.rstErr; err != nil {
		st.mu.Unlock()
		return err
	}
	if st.closed {
		st.mu.Unlock()
		return fmt.Errorf("close stream %d for writing: %w", st.id, net.ErrClosed)
	}
	if !st.finSent {
		st.finSent = true
		st.sess.queueCtl(frameFin, st.id, 0, nil)
	}
	st.finishLocked(nil)
	return nil
}

// Close closes both directions and frees the stream. It sends FIN unless
// CloseWrite did; if the peer has not sent FIN yet, it first sends RST
// STOP, so the peer's writes fail with ErrStreamReset while it can still
// read what this end wrote. Data received and not read is discarded.
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	if st.rstErr == nil && !st.removed {
		// STOP first: by the time the peer reads EOF its writes fail.
		if !st.finRecv {
			st.sess.queueCtl(frameRst, st.id, rstStop, nil)
		}
		if !st.finSent {
			st.finSent = true
			st.sess.queueCtl(frameFin, st.id, 0, nil)
		}
	}
	st.closed = true
	st.finishLocked(nil)
	return nil
}

// Reset aborts both directions: pending and later Reads and Writes fail
// with ErrStreamReset here and at the peer, and unread data is discarded.
func (st *Stream) Reset() error {
	st.mu.Lock()
	if st.closed || st.rstErr != nil {
		st.mu.Unlock()
		return nil
	}
	st.rstErr = fmt.Errorf("stream %d reset by this end: %w", st.id, ErrStreamReset)
	if !st.removed {
		st.sess.queueCtl(frameRst, st.id, rstCancel, nil)
	}
	st.finishLocked(nil)
	return nil
}

// finReceived handles the peer's FIN.
func (st *Stream) finReceived() error {
	st.mu.Lock()
	if st.finRecv {
		st.mu.Unlock()
		return protoErr("second FIN on stream %d", st.id)
	}
	st.finRecv = true
	st.finishLocked(st.sess.toLater)
	return nil
}

// resetReceived handles the peer's RST; a nil reason is STOP.
func (st *Stream) resetReceived(reason error) {
	st.mu.Lock()
	if st.closed || st.rstErr != nil {
		st.mu.Unlock()
		return
	}
	if reason == nil {
		st.stopped = true
	} else {
		st.rstErr = reason
	}
	st.finishLocked(st.sess.toLater)
}

// finishLocked wakes waiters, frees buffers nobody will read and removes
// the stream from the session once it is done with. It unlocks st.mu.
// later is the session's when its reader calls (unlockKick).
func (st *Stream) finishLocked(later func(func())) {
	if st.closed || st.rstErr != nil {
		for _, c := range st.chunks {
			putBuffer(c)
		}
		st.chunks = nil
	}
	remove := !st.removed && (st.closed || st.rstErr != nil || st.finRecv && (st.finSent || st.stopped))
	if remove {
		st.removed = true
	}
	st.unlockKick(later)
	poke(st.readCh)
	poke(st.writeCh)
	if remove {
		st.sess.removeStream(st.id)
	}
}

// reserveRecvLocked accounts for n bytes of DATA arriving; keep is false if
// they are to be discarded.
func (st *Stream) reserveRecvLocked(n int) (keep bool, err error) {
	if st.finRecv {
		return false, protoErr("DATA on stream %d after FIN", st.id)
	}
	if st.closed || st.rstErr != nil {
		return false, nil
	}
	if uint32(n) > st.recvAvail {
		return false, protoErr("DATA of %d bytes on stream %d exceeds its remaining window %d", n, st.id, st.recvAvail)
	}
	st.recvAvail -= uint32(n)
	return true, nil
}

func (st *Stream) reserveRecv(n int) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.reserveRecvLocked(n)
}

// pushSmall appends a copy of p to the received data; more says that
// the reader has more frames at hand.
func (st *Stream) pushSmall(p []byte, more bool) error {
	st.mu.Lock()
	err := st.pushSmallLocked(p, more)
	st.unlockKick(st.sess.toLater)
	return err
}

func (st *Stream) pushSmallLocked(p []byte, more bool) error {
	keep, err := st.reserveRecvLocked(len(p))
	if !keep || len(p) == 0 {
		return err
	}
	if p = st.directLocked(p, more); len(p) == 0 {
		return nil
	}
	if k := len(st.chunks); k > 0 {
		if last := st.chunks[k-1]; cap(last.b)-len(last.b) >= len(p) {
			last.b = append(last.b, p...)
			poke(st.readCh)
			return nil
		}
	}
	buf := getBuffer(len(p))
	buf.b = append(buf.b, p...)
	st.chunks = append(st.chunks, buf)
	poke(st.readCh)
	return nil
}

// directLocked hands p to the parked WriteTo's (or idle Sink's)
// destination with one write that never waits, when nothing is buffered
// ahead of it, and returns what is left to buffer. The session's reader
// never blocks here: a full socket, or a stream that cannot take p at once
// (TryWrite), takes nothing and the bytes are buffered as usual.
func (st *Stream) directLocked(p []byte, more bool) []byte {
	if !st.sinkIdle || len(st.chunks) > 0 {
		return p
	}
	n := st.direct.write(p, st.sess, more)
	if n <= 0 {
		return p
	}
	st.sinkDirect += int64(n)
	if inc := st.creditLocked(n); inc > 0 {
		st.sess.queueCtlFromReader(frameWindowUpdate, st.id, inc)
	}
	return p[n:]
}

// A Direct is how a session's reader writes a stream's data to its
// WriteTo's or Sink's destination without waiting: SocketWriter or
// StreamWriter.
type Direct interface {
	// write writes what of p it can at once and returns how much; the
	// reader of session from calls it, with more frames at hand if more.
	write(p []byte, from *Session, more bool) int
}

// SocketWriter is the Direct of a socket: one non-blocking write of p,
// which takes what the socket takes at once.
func SocketWriter(rc syscall.RawConn) Direct { return socketWriter{rc} }

type socketWriter struct{ rc syscall.RawConn }

func (w socketWriter) write(p []byte, _ *Session, _ bool) int {
	var n int
	err := w.rc.Write(func(fd uintptr) bool {
		n, _ = rawio.Write(fd, p)
		return true // one attempt, never wait
	})
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// StreamWriter is the Direct of another session's stream dst: all of p
// when dst can take it without waiting (TryWrite), nothing otherwise;
// wrote (if not nil) gets the bytes of each write it made. While the
// calling reader has more frames at hand, the frame waits in dst's
// session's buffer for the reader's last frame, so that a burst of
// messages in transit leaves in one write.
func StreamWriter(dst *Stream, wrote func(int)) Direct { return streamWriter{dst, wrote} }

type streamWriter struct {
	dst   *Stream
	wrote func(int)
}

func (w streamWriter) write(p []byte, from *Session, more bool) int {
	if !more {
		from = nil
	}
	if !w.dst.tryWrite(p, from) {
		return 0
	}
	if w.wrote != nil {
		w.wrote(len(p))
	}
	return len(p)
}

// pushBuffer appends buf, already reserved, to the received data. Like a
// small payload (directLocked), a large one reaching an idle WriteTo or
// Sink is written to its destination at once, as much as that takes
// without waiting, when the stream is alone on the link (lone: the
// reader's last loneRun frames were all its own): a lone bulk stream's
// copier is not woken for every frame. Beside other streams the copier
// writes it, and the reader goes on to their frames: a small request
// behind a bulk stream's frame waits for a copy, not for a write to the
// bulk stream's socket.
func (st *Stream) pushBuffer(buf *buffer, lone bool) {
	st.mu.Lock()
	if st.closed || st.rstErr != nil {
		st.mu.Unlock()
		putBuffer(buf)
		return
	}
	if lone {
		rest := st.directLocked(buf.b, false)
		if len(rest) == 0 {
			st.mu.Unlock()
			putBuffer(buf)
			return
		}
		buf.off = len(buf.b) - len(rest)
	}
	st.chunks = append(st.chunks, buf)
	poke(st.readCh)
	st.unlockKick(st.sess.toLater)
}

// SetDeadline sets the read and write deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline makes Read and WriteTo fail with os.ErrDeadlineExceeded
// from t on; the zero time means no deadline.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.rdl.set(t)
	poke(st.readCh)
	return nil
}

// SetWriteDeadline makes Write fail with os.ErrDeadlineExceeded from t on
// while it waits for credit; the zero time means no deadline.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.wdl.set(t)
	poke(st.writeCh)
	return nil
}
