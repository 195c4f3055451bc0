package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes of the connection buffers. The write buffer is a multiple of the
// 16 KiB TLS record size so that only the last write of a burst makes a
// partial record.
const (
	readBufSize  = 8 << 10
	writeBufSize = 64 << 10
	smallFrame   = 4 << 10 // DATA up to this size is copied out of the read buffer
	loneRun      = 64      // DATA frames in a row for one stream before its large frames go direct
	maxCtlQueue  = 4 << 20 // queued control frames beyond this end the session
)

// Session multiplexes streams over one connection. Its methods are safe for
// concurrent use.
type Session struct {
	conn   net.Conn
	cfg    Config
	client bool
	start  time.Time // for monotonic ping timestamps

	// Read side, owned by the recvLoop goroutine.
	br           *bufio.Reader
	settingsRecv bool
	deferred     []*Session // sessions whose buffers hold frames it wrote (deferFlush)
	// laterFns is work notifications left for the reader's burst's end
	// (Notify); toLater is s.later, bound once.
	laterFns []func()
	toLater  func(func())
	// lastData is the stream of the last DATA frame read, and runLength
	// how many DATA frames in a row were for it (up to loneRun): the
	// reader writes a large frame itself only for a stream that has had
	// the link to itself for loneRun frames (Stream.pushBuffer).
	lastData   uint32
	runLength  int
	sinceNudge int           // data bytes read since the last nudgeAfter
	nudges     atomic.Uint64 // times nudgeAfter woke an idle P, for tests
	recvFrames atomic.Uint64 // frames received, for keepalive
	// dataBytes counts DATA payload bytes received and sent (DataBytes).
	dataBytes atomic.Uint64

	// Write side: one buffered writer, see write.go.
	wmu      sync.Mutex
	wbuf     []byte
	werr     error
	ctlSpare []byte
	waiting  atomic.Int32 // goroutines waiting for or holding wmu
	// lastFlusher is the stream whose small frame was flushed last.
	lastFlusher atomic.Uint32
	ctlMu       sync.Mutex
	ctl         []byte // encoded control frames waiting for the writer
	ctlSig      chan struct{}
	held        bool          // conn holds bytes of a TryWrite for sendLoop to flush
	loopWakes   atomic.Uint64 // times sendLoop was woken, for tests

	sendMaxFrame atomic.Int32 // min(ours, peer's max frame size)

	mu         sync.Mutex
	streams    map[uint32]*Stream
	nextID     uint64 // next ID this end opens
	lastPeerID uint32 // highest ID the peer opened
	peerOpen   int    // streams the peer opened that are in streams
	peerWindow uint32 // the peer's per-stream receive window
	goAwaySent bool
	goAwayRecv bool

	acceptCh chan *Stream

	pingOutstanding atomic.Uint64 // sequence of the unanswered PING, 0 if none
	pingSentAt      atomic.Int64  // since start
	rtt             atomic.Int64

	done      chan struct{}
	closeOnce sync.Once
	err       error // set before done closes
}

// Client starts a session on the dialing side of conn; it opens odd stream
// IDs. The session owns conn from now on. It panics if cfg fails
// Validate: check a configuration where it is read.
func Client(conn net.Conn, cfg Config) *Session { return newSession(conn, cfg, true) }

// Server starts a session on the accepting side of conn; it opens even
// stream IDs. The session owns conn from now on. It panics if cfg fails
// Validate.
func Server(conn net.Conn, cfg Config) *Session { return newSession(conn, cfg, false) }

func newSession(conn net.Conn, cfg Config, client bool) *Session {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &Session{
		conn:       conn,
		cfg:        cfg,
		client:     client,
		start:      time.Now(),
		br:         bufio.NewReaderSize(conn, readBufSize),
		wbuf:       make([]byte, 0, writeBufSize),
		ctlSig:     make(chan struct{}, 1),
		streams:    make(map[uint32]*Stream),
		nextID:     2,
		peerWindow: initialWindow,
		acceptCh:   make(chan *Stream, cfg.AcceptBacklog),
		done:       make(chan struct{}),
	}
	if client {
		s.nextID = 1
	}
	s.toLater = s.later
	s.sendMaxFrame.Store(int32(min(cfg.MaxFrameSize, initialFrameSize)))
	var settings [8]byte
	binary.BigEndian.PutUint32(settings[0:], cfg.StreamWindow)
	binary.BigEndian.PutUint32(settings[4:], uint32(cfg.MaxFrameSize))
	s.queueCtl(frameSettings, 0, uint32(len(settings)), settings[:])
	go s.recvLoop()
	go s.sendLoop()
	go s.keepalive()
	return s
}

// Open opens a stream. It does not wait for the peer: the OPEN frame goes
// out ahead of the stream's first data. It fails with ErrGoAway once the
// peer has sent GOAWAY and with ErrSessionClosed once the session is done.
func (s *Session) Open(ctx context.Context) (*Stream, error) {
	return s.open(ctx, true)
}

// open creates a stream and queues its OPEN frame; with poke false the
// frame waits for the caller's first write.
func (s *Session) open(ctx context.Context, poke bool) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Err(); err != nil {
		return nil, err
	}
	if s.goAwayRecv {
		return nil, fmt.Errorf("open stream: %w", ErrGoAway)
	}
	if s.nextID > math.MaxUint32 {
		return nil, fmt.Errorf("open stream: stream IDs exhausted: %w", ErrGoAway)
	}
	st := newStream(s, uint32(s.nextID), s.peerWindow)
	s.nextID += 2
	s.streams[st.id] = st
	// Queued under s.mu so that OPEN frames leave in ID order.
	s.queueCtlPoke(frameOpen, st.id, 0, nil, poke)
	return st, nil
}

// OpenWrite opens a stream and writes p as its first data. The OPEN frame
// and p leave in one write to the connection (one TLS record for a short
// p), which saves a record and a wake-up at the peer for every stream that
// starts with a request or header, as skiff's link streams do.
func (s *Session) OpenWrite(ctx context.Context, p []byte) (*Stream, error) {
	st, err := s.open(ctx, false)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write(p); err != nil {
		st.Reset()
		return nil, err
	}
	return st, nil
}

// Accept waits for a stream opened by the peer. Once the session is done it
// returns an error wrapping ErrSessionClosed and the cause.
func (s *Session) Accept() (*Stream, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	select {
	case st := <-s.acceptCh:
		return st, nil
	case <-s.done:
		return nil, s.err
	}
}

// GoAway tells the peer that this end accepts no new streams from it;
// streams already open carry on. Streams the peer opens before it hears of
// this are refused, and fail there with ErrGoAway.
func (s *Session) GoAway() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Err(); err != nil {
		return err
	}
	if !s.goAwaySent {
		s.goAwaySent = true
		s.queueCtl(frameGoAway, 0, 0, nil)
	}
	return nil
}

// Close closes the connection. Frames already queued (such as the FIN of a
// stream just closed) are sent first if the connection is free to take
// them within closeFlushTimeout. Every stream's pending and later
// operations fail with ErrSessionClosed, except that data already received
// can still be read.
func (s *Session) Close() error {
	if s.Err() == nil && s.wmu.TryLock() {
		if s.werr == nil {
			s.conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			s.drainCtlLocked()
			if len(s.wbuf) > 0 {
				s.writeOutLocked(s.wbuf)
			}
		}
		s.wmu.Unlock()
	}
	s.shutdown(ErrSessionClosed)
	return nil
}

// closeFlushTimeout bounds how long Close waits to send queued frames.
const closeFlushTimeout = time.Second

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended: an error wrapping ErrSessionClosed and
// the cause (ErrKeepAliveTimeout, ErrProtocol, a connection error, or the
// peer closing). It is nil while the session is alive.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// NumStreams returns how many streams are open: opened by either end and
// not yet closed or reset on this end, nor finished in both directions.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err() != nil {
		return 0
	}
	return len(s.streams)
}

// DataBytes returns how many bytes of stream data the session has carried
// so far, received and sent together (DATA payloads, counted as they are
// read and as their credit is taken). A caller that samples it over time
// sees how busy the connection is: package router opens new streams on
// the quietest connection of a link's pool.
func (s *Session) DataBytes() uint64 { return s.dataBytes.Load() }

// RTT returns the round trip time of the last answered PING, 0 before the
// first.
func (s *Session) RTT() time.Duration { return time.Duration(s.rtt.Load()) }

// LocalAddr returns the connection's local address.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr returns the connection's remote address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// shutdown ends the session with cause; the first cause wins. It takes
// none of the session's locks, but closing a tls.Conn may take a moment
// (close_notify), so callers holding s.mu or a stream's lock must not call
// it.
func (s *Session) shutdown(cause error) {
	s.closeOnce.Do(func() {
		if cause == ErrSessionClosed {
			s.err = cause
		} else {
			s.err = fmt.Errorf("%w: %w", ErrSessionClosed, cause)
		}
		close(s.done)
		s.conn.Close()
	})
}

// isLocal reports whether id has this end's parity.
func (s *Session) isLocal(id uint32) bool { return id&1 == 1 == s.client }

// removeStream forgets a stream; frames for it are discarded from now on.
// It is called once per stream that handleOpen or open added.
func (s *Session) removeStream(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	if !s.isLocal(id) {
		s.peerOpen--
	}
	s.mu.Unlock()
}

// keepalive pings the peer and ends the session when nothing arrives for
// KeepAliveTimeout. It never writes to the connection itself, so a stalled
// write cannot delay the verdict.
func (s *Session) keepalive() {
	period := min(s.cfg.KeepAliveInterval, s.cfg.KeepAliveTimeout/8)
	t := time.NewTicker(max(period, time.Millisecond))
	defer t.Stop()
	last := time.Now()
	var lastPing time.Time
	seen := s.recvFrames.Load()
	var seq uint64
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			if n := s.recvFrames.Load(); n != seen {
				seen, last = n, now
			}
			if idle := now.Sub(last); idle >= s.cfg.KeepAliveTimeout {
				s.shutdown(fmt.Errorf("%w: nothing received for %v", ErrKeepAliveTimeout, idle))
				return
			}
			if s.pingOutstanding.Load() == 0 && now.Sub(lastPing) >= s.cfg.KeepAliveInterval {
				seq++
				lastPing = now
				s.pingSentAt.Store(int64(now.Sub(s.start)))
				s.pingOutstanding.Store(seq)
				var p [8]byte
				binary.BigEndian.PutUint64(p[:], seq)
				s.queueCtl(framePing, 0, 8, p[:])
			}
		}
	}
}
