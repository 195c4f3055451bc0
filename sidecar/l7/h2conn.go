package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// skiff's own HTTP/2 front end. net/http's HTTP/2 server costs a
// gateway about seven times haproxy's CPU per request under h2load
// (docs/benchmarks.md): a goroutine hand-off to its frame writer for
// every frame, one write per flush, a header map, a Request, a context
// and a ReverseProxy per request. This one reads frames on the
// connection's own goroutine with x/net's Framer (which also decodes
// HPACK and bounds headers and CONTINUATION floods), runs each request
// on a goroutine of its own, and queues the frames of every answer in
// one buffer that whichever goroutine finds it unflushed writes, so the
// answers of many streams leave in one write. A plain request whose
// candidate speaks HTTP/1.1 takes the fast path (exchange.go) and its
// answer goes back as frames; every other request (with a body, to an
// HTTP/2 endpoint, multicast) becomes an http.Request for the engine's
// handler, as net/http's server would have made it (h2slow.go).

const (
	// h2MaxStreams bounds a connection's streams at once; a stream
	// counts until its request's goroutine returns, so a client that
	// resets its streams at once cannot run more (RFC 9113's "rapid
	// reset").
	h2MaxStreams = 1000
	// h2StreamWindow is what a client may send of one request's body
	// before the handler reads it; h2ConnWindow of all of them.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	// h2QueueWait: an answer's frames wait while more than this is
	// queued for a client that reads slowly.
	h2QueueWait = 256 << 10
	// h2QueueMax: the reader's own frames (acknowledgements) queued
	// beyond this close the connection: its client sends and does not
	// read.
	h2QueueMax = 4 << 20
	// h2WriteTimeout closes a connection whose client took no byte of
	// a write for that long.
	h2WriteTimeout = time.Minute
	// maxWindow is the largest flow-control window (RFC 9113, 6.9.1).
	maxWindow = 1<<31 - 1
)

// h2Conn is a client's HTTP/2 connection.
type h2Conn struct {
	e    *Engine
	c    net.Conn
	info connInfo
	fr   *http2.Framer // reads, on serveH2's goroutine only
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // the streams' goroutines
	// active counts the streams whose goroutine runs; changed under mu,
	// read without it too (the write queue, the reader's idle check).
	active atomic.Int32
	// maxFrame is the client's SETTINGS_MAX_FRAME_SIZE.
	maxFrame atomic.Uint32
	// unflushed is the link whose buffer holds requests the reader wrote
	// (h2async.go), flushed before the reader waits for the client.
	unflushed interface{ Flush() }

	// The write queue (wmu).
	wmu     sync.Mutex
	wcond   sync.Cond // the queue shrank, or writing failed
	wbuf    []byte    // frames queued
	wspare  []byte
	writing bool // a goroutine is writing the queue
	// flushDue: tryFlush is to run (queueLater), tryFlushFn is it bound.
	flushDue   bool
	tryFlushFn func()
	werr       error // writing failed: the connection is done
	wfr        *http2.Framer
	enc        *hpack.Encoder
	hbuf       []byte // a header block being encoded

	// Streams and flow control (mu).
	mu       sync.Mutex
	fcond    sync.Cond // a window grew, a stream ended, or the connection
	streams  map[uint32]*h2Stream
	lastID   uint32 // the highest stream the client opened
	sendWin  int64  // what may still be sent on the connection
	initWin  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	recvWin  int64  // what the client may still send on the connection
	recvDone int64  // bytes read (or dropped) not yet given back
	away     bool   // GOAWAY sent: no new streams
	closed   bool
}

// h2QueueWriter is where the write Framer puts its frames: the queue.
type h2QueueWriter struct{ hc *h2Conn }

func (w h2QueueWriter) Write(p []byte) (int, error) {
	w.hc.wbuf = append(w.hc.wbuf, p...)
	return len(p), nil
}

// hpackWriter is where the encoder puts a header block.
type hpackWriter struct{ hc *h2Conn }

func (w hpackWriter) Write(p []byte) (int, error) {
	w.hc.hbuf = append(w.hc.hbuf, p...)
	return len(p), nil
}

// h2Error is a connection error: GOAWAY with its code, then close.
type h2Error struct {
	code   http2.ErrCode
	reason string
}

func (e *h2Error) Error() string { return fmt.Sprintf("http2: %v: %s", e.code, e.reason) }

func connErr(code http2.ErrCode, format string, args ...any) error {
	return &h2Error{code: code, reason: fmt.Sprintf(format, args...)}
}

// serveH2 serves a client that opened c with HTTP/2's preface, until the
// connection ends or ctx does.
func (e *Engine) serveH2(ctx context.Context, fc *fastConn) {
	hc := &h2Conn{e: e, c: fc.c, info: fc.info, streams: map[uint32]*h2Stream{},
		sendWin: 65535, initWin: 65535, recvWin: h2ConnWindow}
	hc.ctx, hc.stop = context.WithCancel(ctx)
	hc.wcond.L, hc.fcond.L = &hc.wmu, &hc.mu
	hc.maxFrame.Store(16 << 10)
	hc.tryFlushFn = hc.tryFlush
	hc.wfr = http2.NewFramer(h2QueueWriter{hc}, nil)
	hc.enc = hpack.NewEncoder(hpackWriter{hc})
	br := fc.br
	hc.fr = http2.NewFramer(nil, br)
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.fr.MaxHeaderListSize = uint32(e.o.MaxHeaderBytes)
	fc.h2.Store(hc) // for Shutdown
	defer hc.finish()
	err := hc.serve(br)
	hc.flushRequests()
	var he *h2Error
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, http2.ErrFrameTooLarge):
		he = &h2Error{code: http2.ErrCodeFrameSize, reason: "a frame over 16 KiB"}
	case errors.As(err, &ce):
		he = &h2Error{code: http2.ErrCode(ce), reason: "a malformed frame"}
		if d := hc.fr.ErrorDetail(); d != nil {
			he.reason = d.Error()
		}
	default:
		return // the connection closed, or the engine stops
	}
	e.log.V(1).Info("http2 connection error", "address", hc.info.address, "error", he.Error())
	hc.goAway(he.code, he.reason)
}

// serve reads the client's frames until the connection ends.
func (hc *h2Conn) serve(br *bufio.Reader) error {
	e := hc.e
	_ = hc.c.SetReadDeadline(time.Now().Add(readHeaderTimeout))
	pre := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(br, pre); err != nil || !bytes.Equal(pre, h2Preface) {
		return errors.New("no HTTP/2 preface")
	}
	hc.queue(false, func() {
		_ = hc.wfr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(e.o.MaxHeaderBytes)},
		)
		_ = hc.wfr.WriteWindowUpdate(0, h2ConnWindow-65535)
	})
	first := true
	idle := true
	for {
		if now := hc.idle(); now != idle || now {
			// A connection without a stream closes after IdleTimeout.
			idle = now
			var d time.Time
			if idle {
				d = time.Now().Add(e.o.IdleTimeout)
			}
			_ = hc.c.SetReadDeadline(d)
		}
		if hc.unflushed != nil && !frameBuffered(br) {
			hc.flushRequests()
		}
		f, err := hc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				hc.noteID(se.StreamID)
				hc.resetStream(se.StreamID, se.Code)
				continue
			}
			return err
		}
		if _, ok := f.(*http2.SettingsFrame); first && !ok {
			return connErr(http2.ErrCodeProtocol, "the client's first frame is not SETTINGS")
		}
		first = false
		if err := hc.onFrame(f); err != nil {
			return err
		}
	}
}

// frameBuffered reports whether br holds a whole frame: reading it does
// not wait.
func frameBuffered(br *bufio.Reader) bool {
	b, err := br.Peek(min(br.Buffered(), 9))
	if err != nil || len(b) < 9 {
		return false
	}
	return br.Buffered() >= 9+(int(b[0])<<16|int(b[1])<<8|int(b[2]))
}

// flushRequests writes the requests the reader left in a link's buffer.
func (hc *h2Conn) flushRequests() {
	if hc.unflushed != nil {
		hc.unflushed.Flush()
		hc.unflushed = nil
	}
}

// onFrame acts on one frame of the client's.
func (hc *h2Conn) onFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return hc.onSettings(f)
	case *http2.MetaHeadersFrame:
		return hc.onHeaders(f)
	case *http2.DataFrame:
		return hc.onData(f)
	case *http2.WindowUpdateFrame:
		return hc.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return hc.onReset(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			hc.queue(false, func() { _ = hc.wfr.WritePing(true, f.Data) })
		}
	case *http2.GoAwayFrame:
		// The client opens no more streams; those under way finish.
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	}
	// PRIORITY, PRIORITY_UPDATE and unknown frames are ignored.
	return nil
}

// onSettings applies the client's settings and acknowledges them.
func (hc *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			return hc.setInitialWindow(int64(s.Val))
		case http2.SettingMaxFrameSize:
			hc.maxFrame.Store(s.Val)
		case http2.SettingHeaderTableSize:
			hc.wmu.Lock()
			hc.enc.SetMaxDynamicTableSizeLimit(s.Val)
			hc.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		if ce, ok := errors.AsType[http2.ConnectionError](err); ok {
			return connErr(http2.ErrCode(ce), "a setting out of range")
		}
		return err
	}
	hc.queue(false, func() { _ = hc.wfr.WriteSettingsAck() })
	return nil
}

// setInitialWindow moves every stream's send window by the change of
// the client's initial window (RFC 9113, 6.9.2).
func (hc *h2Conn) setInitialWindow(v int64) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	delta := v - hc.initWin
	hc.initWin = v
	for _, s := range hc.streams {
		s.sendWin += delta
		if s.sendWin > maxWindow {
			return connErr(http2.ErrCodeFlowControl, "a stream's window over 2^31-1")
		}
	}
	hc.fcond.Broadcast()
	return nil
}

// onWindowUpdate grows a send window.
func (hc *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	n := int64(f.Increment)
	if f.StreamID == 0 {
		if hc.sendWin+n > maxWindow {
			return connErr(http2.ErrCodeFlowControl, "the connection's window over 2^31-1")
		}
		hc.sendWin += n
		hc.fcond.Broadcast()
		return nil
	}
	if f.StreamID > hc.lastID {
		return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
	}
	s := hc.streams[f.StreamID]
	if s == nil {
		return nil // a stream that ended
	}
	if s.sendWin+n > maxWindow {
		hc.resetLocked(s, http2.ErrCodeFlowControl)
		return nil
	}
	s.sendWin += n
	hc.fcond.Broadcast()
	return nil
}

// onReset ends a stream the client reset.
func (hc *h2Conn) onReset(f *http2.RSTStreamFrame) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if f.StreamID > hc.lastID {
		return connErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
	}
	if s := hc.streams[f.StreamID]; s != nil {
		s.endLocked(errClientReset)
		hc.fcond.Broadcast()
	}
	return nil
}

var errClientReset = errors.New("the client reset the stream")

// noteID records a stream the client opened whose headers were refused.
func (hc *h2Conn) noteID(id uint32) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if id > hc.lastID {
		hc.lastID = id
	}
}

// idle reports a connection without a stream.
func (hc *h2Conn) idle() bool { return hc.active.Load() == 0 }

// resetStream sends RST_STREAM and ends the stream, if it runs.
func (hc *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if s := hc.streams[id]; s != nil {
		hc.resetLocked(s, code)
		return
	}
	hc.queue(false, func() { _ = hc.wfr.WriteRSTStream(id, code) })
}

// resetLocked sends RST_STREAM for s and ends it (hc.mu held).
func (hc *h2Conn) resetLocked(s *h2Stream, code http2.ErrCode) {
	s.gone.Store(true) // before RST_STREAM is queued: nothing of s after it
	if !s.reset {
		id := s.id
		hc.queue(false, func() { _ = hc.wfr.WriteRSTStream(id, code) })
	}
	s.endLocked(fmt.Errorf("stream reset: %v", code))
	hc.fcond.Broadcast()
}

// queue runs write, which appends frames to the queue, and has the
// queue written: by this goroutine if none is writing it (then wait:
// the caller may block on the client), else by the one that is. A
// caller that must not block (the reader: wait false) starts a writer
// instead. With wait, it first waits while the queue is long.
func (hc *h2Conn) queue(wait bool, write func()) error {
	hc.wmu.Lock()
	for wait && len(hc.wbuf) > h2QueueWait && hc.werr == nil {
		hc.wcond.Wait()
	}
	if hc.werr != nil {
		err := hc.werr
		hc.wmu.Unlock()
		return err
	}
	write()
	switch {
	case hc.writing:
		if !wait {
			hc.overflowLocked()
		}
		hc.wmu.Unlock()
	case wait:
		hc.writing = true
		if hc.active.Load() > 1 {
			// Other streams may be about to answer: they run first, and
			// their frames leave in the same write.
			hc.wmu.Unlock()
			runtime.Gosched()
			hc.wmu.Lock()
		}
		hc.flushLocked()
		hc.wmu.Unlock()
	default:
		hc.startWriterLocked()
		hc.wmu.Unlock()
	}
	return nil
}

// startWriterLocked has a goroutine write the queue (wmu held: counted
// in wg before finish sets werr and waits).
func (hc *h2Conn) startWriterLocked() {
	hc.writing = true
	hc.wg.Add(1)
	hc.e.o.Go(func() {
		defer hc.wg.Done()
		hc.wmu.Lock()
		hc.flushLocked()
		hc.wmu.Unlock()
	})
}

// queueLater runs write, which appends frames to the queue, and has the
// queue written without waiting: by the goroutine writing it, if one is,
// else by tryFlush, which the caller runs later (once its burst of work
// is done: the link's reader, for answers it passes on). It never
// blocks.
func (hc *h2Conn) queueLater(write func(), later func(func())) error {
	hc.wmu.Lock()
	if hc.werr != nil {
		err := hc.werr
		hc.wmu.Unlock()
		return err
	}
	write()
	if hc.writing || hc.flushDue {
		hc.overflowLocked()
		hc.wmu.Unlock()
		return nil
	}
	hc.flushDue = true
	hc.wmu.Unlock()
	later(hc.tryFlushFn)
	return nil
}

// overflowLocked closes the connection of a client that lets more than
// h2QueueMax wait in its queue: frames queued by a goroutine that must
// not wait (wmu held).
func (hc *h2Conn) overflowLocked() {
	if len(hc.wbuf) > h2QueueMax {
		hc.werr = errors.New("http2: the client does not read")
		hc.c.Close()
	}
}

// tryWriter is a connection with a write that never waits (rawio.Conn).
type tryWriter interface {
	TryWrite(p []byte) (int, error)
}

// tryFlush writes the queue with one write that never waits, unless a
// writer took it meanwhile; what the client did not take goes to a writer
// goroutine.
func (hc *h2Conn) tryFlush() {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	hc.flushDue = false
	if hc.writing || len(hc.wbuf) == 0 || hc.werr != nil {
		return
	}
	if tw, ok := hc.c.(tryWriter); ok {
		n, err := tw.TryWrite(hc.wbuf)
		if err != nil {
			hc.werr = fmt.Errorf("http2: write: %w", err)
			hc.c.Close()
			hc.wcond.Broadcast()
			return
		}
		hc.wbuf = hc.wbuf[:copy(hc.wbuf, hc.wbuf[n:])]
		if len(hc.wbuf) == 0 {
			hc.wcond.Broadcast()
			return
		}
	}
	hc.startWriterLocked()
}

// flushLocked writes the queue until it is empty (wmu held, writing
// set; wmu is let go while writing).
func (hc *h2Conn) flushLocked() {
	for len(hc.wbuf) > 0 && hc.werr == nil {
		out := hc.wbuf
		hc.wbuf = hc.wspare[:0]
		hc.wmu.Unlock()
		_ = hc.c.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
		_, err := hc.c.Write(out)
		hc.wmu.Lock()
		hc.wspare = nil
		if cap(out) <= 64<<10 {
			hc.wspare = out[:0]
		}
		if err != nil {
			if hc.werr == nil { // else the write failed because of it (the connection closed)
				hc.werr = fmt.Errorf("http2: write: %w", err)
			}
			hc.c.Close()
		}
		hc.wcond.Broadcast()
	}
	hc.writing = false
	hc.wcond.Broadcast()
}

// goAway tells the client the connection ends with code, once what is
// queued is written, and closes it.
func (hc *h2Conn) goAway(code http2.ErrCode, reason string) {
	hc.mu.Lock()
	last := hc.lastID
	hc.away = true
	hc.mu.Unlock()
	hc.queue(false, func() { _ = hc.wfr.WriteGoAway(last, code, []byte(reason)) })
	hc.drainWrites()
	hc.c.Close()
}

// drainWrites waits until the queue is written or writing failed.
func (hc *h2Conn) drainWrites() {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	for (hc.writing || len(hc.wbuf) > 0) && hc.werr == nil {
		hc.wcond.Wait()
	}
}

// shutdown stops taking streams: GOAWAY, and the connection closes once
// the streams under way are done (Engine.Shutdown, StopKeepAlives).
func (hc *h2Conn) shutdown() {
	hc.mu.Lock()
	if hc.away || hc.closed {
		hc.mu.Unlock()
		return
	}
	hc.away = true
	last := hc.lastID
	hc.queue(false, func() { _ = hc.wfr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	if hc.active.Load() == 0 {
		hc.closeWhenWrittenLocked()
	}
	hc.mu.Unlock()
}

// closeWhenWrittenLocked closes the connection once its queue is
// written, on a goroutine of the connection's (hc.mu held, the
// connection not closed: finish waits for it).
func (hc *h2Conn) closeWhenWrittenLocked() {
	hc.wg.Add(1)
	go func() {
		defer hc.wg.Done()
		hc.drainWrites()
		hc.c.Close()
	}()
}

// finish ends every stream and waits for their goroutines.
func (hc *h2Conn) finish() {
	hc.mu.Lock()
	hc.closed = true
	for _, s := range hc.streams {
		s.endLocked(net.ErrClosed)
	}
	hc.fcond.Broadcast()
	hc.mu.Unlock()
	hc.stop()
	hc.c.Close()
	hc.wmu.Lock()
	if hc.werr == nil {
		hc.werr = net.ErrClosed
	}
	hc.wcond.Broadcast()
	hc.wmu.Unlock()
	hc.wg.Wait()
}
