package l7

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/rawio"
)

// A link stream that holds its endpoint connection between requests.
//
// On the far site a link stream's goroutine serves another site's
// HTTP/1.1 requests one at a time. It used to wait in the stream's Read
// for the next request, woken by the link's reader, write it to a pooled
// endpoint connection, and read that connection at once, a read that
// finds nothing, before it waited for the poller: a wake-up and a system
// call per request more than skiff's TCP mode, where the link's reader
// writes into the server's socket itself and the copier waits on it
// (docs/benchmarks.md, "Alternating rounds"). Between requests the
// goroutine now holds the endpoint connection of its last request and
// waits on that connection, not on the stream, without a first read
// (rawio's ReadWhenReady). The link's reader, when the next request came
// whole and plain and its first target is that endpoint, writes it to
// the connection itself (onRequest); the goroutine wakes once, for the
// answer, and passes it on as before. Anything else (a request not whole,
// pipelined, for another endpoint or another pattern, the stream's end, a
// change of the service table) wakes it at once through the connection's
// read deadline: it gives the connection back to its pool and reads the
// stream as before, the bytes the link's reader took from it first.

// The states of a hold.
const (
	holdOff   int32 = iota // not holding
	holdArmed              // the goroutine waits on uc; the link's reader may send
	holdSent               // the link's reader sent a request on uc (sendErr: or failed to)
	holdPoked              // the link's reader woke the goroutine: it reads the stream
)

// holdMax bounds how long a stream holds an idle endpoint connection: as
// long as its pool keeps one (h1Pool's idleTimeout), or the engine's
// IdleTimeout if shorter.
var holdMax = 90 * time.Second

// aLongTimeAgo is a read deadline that wakes a waiting read at once.
var aLongTimeAgo = time.Unix(1, 0)

// hold is what a link stream's connection (fastConn, fromSite) keeps for
// the endpoint connection it holds between requests.
type hold struct {
	fc    *fastConn
	ac    asyncConn // the link stream
	state atomic.Int32
	// mu orders the link's reader's work on the request (onRequest) before
	// the goroutine's once it woke, and a poke (CloseIdle) beside them.
	mu     sync.Mutex
	uc     *h1Conn
	rc     *rawio.Conn // uc's
	gen    uint64      // the engine's idleGen when armed
	notify func(later func(func()))
	quiet  func() bool
	// early is what the link's reader read of the stream: the request it
	// sent, or bytes the goroutine reads again first.
	early []byte
	// What the link's reader did with the request it sent (holdSent).
	t       Target
	done    func() // Track's
	req     []byte // the request as written
	written int
	sendErr error
}

func newHold(fc *fastConn, ac asyncConn) *hold {
	h := &hold{fc: fc, ac: ac}
	h.notify = h.onRequest
	h.quiet = func() bool { return h.state.Load() == holdArmed }
	return h
}

// holdIdle waits for the next request on the endpoint connection of the
// last, when it can (arm); served, the request the link's reader sent on
// it was served, its verdict v. Not served, the stream is read as before.
func (fc *fastConn) holdIdle(ctx context.Context) (v fastVerdict, served bool) {
	h := fc.hold
	if h == nil || !fc.arm(h) {
		return fastKeep, false
	}
	buf := takeBuf()
	n, err := h.rc.ReadWhenReady(buf[:fastBuffer], h.quiet)
	h.mu.Lock()
	st := h.state.Load()
	h.state.Store(holdOff)
	h.mu.Unlock()
	if st != holdSent {
		dropBuf(buf)
		return fc.unhold(h, st, n, err)
	}
	uc, sendErr := h.uc, h.sendErr
	if sendErr == nil {
		sendErr = h.readFirst(buf[:n], err)
	}
	fc.head = takeBuf() // out: sendHeld's
	v = fc.serveTargets(ctx, func() (fastVerdict, error) {
		defer h.done()
		return fc.attempts(ctx, &fc.plan, h.t, uc, sendErr)
	})
	uc.pre = nil
	uc.pool.endHold(uc.addr)
	fc.out, fc.head, fc.raw = dropBuf(fc.out), dropBuf(fc.head), nil
	dropBuf(buf)
	if v == fastHandOff {
		fc.in.pre = h.early // net/http serves the request, its bytes first
	}
	h.uc, h.rc, h.done, h.req = nil, nil, nil, nil
	return v, true
}

// arm takes an idle connection to the endpoint of the stream's last
// request and arms the stream's notification for the next: false, with
// nothing done, if it cannot.
func (fc *fastConn) arm(h *hold) bool {
	e := fc.e
	// Only where the address has one endpoint here, as its last request
	// found: with more, the next request may be drawn for another, and
	// the wake-up that hands it back would cost what holding saves.
	if fc.kept == nil || len(fc.plan.targets) != 1 || fc.br.Buffered() > 0 || len(fc.in.pre) > 0 || e.fastStop.Load() {
		return false
	}
	fc.in.pre = nil
	gen := e.idleGen.Load()
	uc := fc.kept.holdConn(fc.keptHost)
	if uc == nil {
		return false
	}
	rc, ok := uc.conn.(*rawio.Conn)
	if !ok || uc.br.Buffered() > 0 || len(uc.pre) > 0 {
		uc.pool.put(uc)
		uc.pool.endHold(uc.addr)
		return false
	}
	now, most := time.Now(), min(holdMax, e.o.IdleTimeout)
	if uc.deadline.IsZero() || uc.deadline.Sub(now) < most-time.Second {
		// Moved at most once a second: setting it is a timer's work.
		uc.deadline = now.Add(most)
		_ = rc.SetReadDeadline(uc.deadline)
	}
	fc.cur.Store(uc) // the engine's stop closes it
	fc.state.Store(fastIdle)
	h.mu.Lock()
	h.uc, h.rc, h.gen = uc, rc, gen
	h.early = h.early[:0] // the last request's, read by now
	h.state.Store(holdArmed)
	h.mu.Unlock()
	if e.fastStop.Load() || h.ac.Notify(h.notify) {
		// The stream has something already, or the engine stops.
		h.mu.Lock()
		if h.state.CompareAndSwap(holdArmed, holdOff) {
			h.mu.Unlock()
			fc.giveBack(h, true)
			return false
		}
		h.mu.Unlock()
	}
	return true
}

// unhold ends a hold that served no request: st is how it ended, n and
// err what the wait on uc read.
func (fc *fastConn) unhold(h *hold, st int32, n int, err error) (fastVerdict, bool) {
	fc.in.pre = h.early
	// Kept only if it said nothing: the endpoint's end, bytes nobody
	// asked for, or the hold's time out close it.
	fc.giveBack(h, st == holdPoked && n == 0 && errors.Is(err, os.ErrDeadlineExceeded))
	h.ac.Notify(nil)
	if fc.state.Load() == fastClosed {
		return fastClose, true // closed while idle (StopKeepAlives, Shutdown)
	}
	return fastKeep, false
}

// giveBack ends the hold of uc: back to its pool if keep and nothing
// changed since it was taken, else closed.
func (fc *fastConn) giveBack(h *hold, keep bool) {
	uc := h.uc
	h.uc, h.rc = nil, nil
	defer uc.pool.endHold(uc.addr)
	if !fc.cur.CompareAndSwap(uc, nil) {
		return // the engine's stop closed it
	}
	if keep && fc.e.idleGen.Load() == h.gen && !fc.e.fastStop.Load() {
		uc.pool.put(uc)
		return
	}
	uc.conn.Close()
}

// readFirst takes what the wait for the answer read (b, or err) as the
// answer's first bytes, and finishes writing the request if the link's
// reader could not write it all: an error is the request's send error.
func (h *hold) readFirst(b []byte, err error) error {
	uc := h.uc
	switch {
	case len(b) > 0:
		uc.pre, uc.read = b, int64(len(b))
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The link's reader could not write all of the request, or the
		// hold's time ran out while the answer comes: read it as usual.
	default: // the endpoint's end (io.EOF) or a failed read
		return fmt.Errorf("read answer: %w: %w", errStale, err)
	}
	if h.written < len(h.req) {
		if _, err := uc.conn.Write(h.req[h.written:]); err != nil {
			return fmt.Errorf("write request: %w: %w", errStale, err)
		}
	}
	return nil
}

// onRequest is the stream's notification while armed, on the link's
// reader: it reads what came and sends it on the held connection when it
// is one request the stream's goroutine would send there, else wakes the
// goroutine. It never waits.
func (h *hold) onRequest(func(func())) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Load() != holdArmed {
		return
	}
	if h.early == nil {
		h.early = takeBuf()
	}
	b := h.early[:0]
	var rerr error
	for len(b) < fastBuffer {
		n, err := h.ac.TryRead(b[len(b):fastBuffer])
		b = b[:len(b)+n]
		if err != nil || n == 0 {
			rerr = err
			break
		}
	}
	h.early = b
	if rerr != nil || len(b) == 0 || !h.fc.sendHeld(h) {
		h.pokeLocked()
		return
	}
	h.state.Store(holdSent)
	if h.written < len(h.req) && h.sendErr == nil {
		// The rest is the goroutine's to write.
		h.wakeLocked()
	}
}

// sendHeld sends the request read into h.early on the held connection
// when the stream's goroutine would have sent it there: whole, alone,
// one the fast path takes, and for that endpoint first. It runs on the
// link's reader while the goroutine waits, and writes only what the
// socket takes at once; false, with the request untouched, if it is not
// one to send so.
func (fc *fastConn) sendHeld(h *hold) bool {
	e, b, addr := fc.e, h.early, fc.info.address
	if parseRequestHead(b, &fc.req) != headTake || fc.req.multicast ||
		int64(fc.req.size)+fc.req.length != int64(len(b)) ||
		e.fastStop.Load() || e.idleGen.Load() != h.gen {
		return false
	}
	targets, err := e.up.LocalTargets(addr)
	if err != nil || len(targets) == 0 || targets[0].Protocol != model.HTTP {
		return false
	}
	t := targets[0]
	if pool, host := e.h1For(addr, t); pool != h.uc.pool || host != h.uc.addr {
		return false
	}
	if !fc.state.CompareAndSwap(fastIdle, fastActive) {
		return false // closed while idle
	}
	fc.raw = b
	fc.plan = plan{address: addr, fromSite: true, origin: originOf(fc.info), start: time.Now(), targets: targets, pattern: model.Balanced}
	fc.sent = 0
	fc.out = takeBuf()
	h.t, h.done = t, e.up.Track(t.Key)
	h.req = fc.requestBytes()
	h.uc.read = 0
	h.written, err = h.rc.TryWrite(h.req)
	h.sendErr = nil
	if err != nil {
		h.sendErr = fmt.Errorf("write request: %w: %w", errStale, err)
	}
	e.heldRequests.Add(1)
	return true
}

// pokeLocked wakes the goroutine to read the stream itself.
func (h *hold) pokeLocked() {
	h.state.Store(holdPoked)
	h.wakeLocked()
}

// wakeLocked ends the goroutine's wait on the held connection.
func (h *hold) wakeLocked() {
	h.uc.deadline = aLongTimeAgo
	_ = h.rc.SetReadDeadline(aLongTimeAgo)
}

// poke wakes the goroutine of an armed hold: the service table changed
// (CloseIdle), and the connection goes back, or is closed.
func (h *hold) poke() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Load() == holdArmed {
		h.pokeLocked()
	}
}
