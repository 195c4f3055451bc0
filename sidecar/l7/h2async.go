package l7

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"golang.org/x/net/http2"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// An HTTP/2 request to another site, without a goroutine of its own.
//
// A request on the fast path used to cross two goroutine hand-offs: the
// client connection's reader started a goroutine for it, which wrote it
// into a link stream and waited in Read for the answer, woken by the
// link's reader. Under h2load those hand-offs and the scheduler work they
// bring were the largest share of a gateway's CPU that code could remove
// (docs/benchmarks.md). Here the client connection's reader writes the
// request into an idle link stream itself, and the link's reader, once
// the answer is there, small and whole (head and a Content-Length body of
// at most maxAsyncBody), queues it to the client as HEADERS and DATA and
// has the queue written once its burst of frames is read: one write for
// the answers that arrived together. No goroutine waits for the request.
//
// Only the plainest requests go this way: no body, not from another site,
// not access-logged (the line is written to stdout, which may wait), the
// first target another site's, reached over HTTP/1.1 on an idle pooled
// link stream. Anything else at the start takes the goroutine as
// before (serve). Anything else later (an answer that is not small and
// whole, a failed stream, a window too small for the body) is handed to a
// goroutine that goes on as serve would have from the same point, with
// the bytes read so far read again first: retries, failover to the next
// target, and answers streamed as they come all stay where they were.

// maxAsyncBody is the largest answer body the link's reader passes on.
const maxAsyncBody = 16 << 10

// asyncConn is an endpoint connection whose answer can be waited for
// without a goroutine: a link stream (mux.Stream's Notify and TryRead).
type asyncConn interface {
	// TryRead reads what is there without waiting: 0 bytes and no error
	// when nothing is yet.
	TryRead(p []byte) (int, error)
	// Notify has fn called once when there is something to read, on the
	// link's reader (later defers work to the end of its burst of
	// frames); true, with fn not armed, if there is something already.
	Notify(fn func(later func(func()))) bool
	// WriteUnflushed writes p, maybe leaving its end in the link's
	// buffer for f.Flush(), with what is written after it: the client
	// connection's reader flushes before it waits (h2Conn.unflushed).
	WriteUnflushed(p []byte) (f interface{ Flush() }, n int, err error)
}

// asyncState is what a stream sent without a goroutine keeps while its
// answer comes.
type asyncState struct {
	uc     *h1Conn
	conn   asyncConn
	t      Target
	done   func() // Track's
	notify func(later func(func()))
	// scanned is how much of the answer was looked through for its
	// head's end; need, once the head was parsed, the answer's length.
	// An answer that comes a byte at a time is then not read again from
	// its start for every byte.
	scanned, need int
}

// sendAsync sends the stream's request without a goroutine, if it is one
// that can go so; false, with nothing done, if not.
func (s *h2Stream) sendAsync() bool {
	hc := s.hc
	if hc.info.fromSite || hc.info.logged {
		return false // an access log line is a write that may wait
	}
	x := s.fastRequest()
	if x == nil {
		return false
	}
	a := x.pickAsync()
	if a == nil {
		recycleFast(x)
		return false
	}
	hc.mu.Lock()
	s.fx = x // a reset from now on closes uc (endLocked)
	hc.mu.Unlock()
	a.notify = func(later func(func())) { s.onAnswer(a, later) }
	if s.Err() != nil { // reset before fx was set
		s.handOff(a, s.Err())
		return true
	}
	uc, ac := a.uc, a.conn
	uc.read = 0
	f, _, err := ac.WriteUnflushed(x.requestBytes())
	if f != hc.unflushed && hc.unflushed != nil {
		hc.unflushed.Flush()
	}
	hc.unflushed = f
	if err != nil {
		s.handOff(a, fmt.Errorf("write request: %w: %w", errStale, err))
		return true
	}
	if ac.Notify(a.notify) {
		s.onAnswer(a, now)
	}
	return true
}

// pickAsync plans the request parsed into x for the path without a
// goroutine: its first target another site's, over HTTP/1.1, and an idle
// pooled link stream to it. It returns that stream, taken from the pool
// and counted as the request's (x.cur, Track), or nil with nothing done.
func (x *fastReq) pickAsync() *asyncState {
	e, addr := x.e, x.info.address
	targets, pattern, err := e.up.Targets(addr)
	if err != nil || len(targets) == 0 || pattern == model.Multicast ||
		targets[0].Site == "" || targets[0].Protocol != model.HTTP {
		return nil
	}
	t := targets[0]
	pool, host := e.h1For(addr, t)
	uc := pool.idleConn(host)
	if uc == nil {
		return nil
	}
	ac, ok := uc.conn.(asyncConn)
	if !ok || uc.br.Buffered() > 0 {
		pool.put(uc)
		return nil
	}
	x.plan = plan{address: addr, origin: originOf(x.info), start: time.Now(), targets: targets, pattern: pattern}
	x.sent = 0
	x.cur.Store(uc)
	return &asyncState{uc: uc, conn: ac, t: t, done: e.up.Track(t.Key)}
}

// now runs f at once: the later of a caller that is not the link's
// reader.
func now(f func()) { f() }

// onAnswer reads what arrived of the answer; when it is whole, it passes
// it on, else it waits for more, or hands the request to a goroutine. It
// runs on the link's reader, or on the caller of Notify, and never blocks.
func (s *h2Stream) onAnswer(a *asyncState, later func(func())) {
	x := s.fx
	for {
		switch x.readArrived(a) {
		case answerWhole:
			s.passAnswer(a, later)
			return
		case answerOther:
			s.handOff(a, nil)
			return
		}
		if !a.conn.Notify(a.notify) {
			return
		}
	}
}

// readArrived reads what arrived of the answer on a.uc into x.head, and
// tells what it holds (wholeAnswer); answerOther also when the stream
// failed: the goroutine that goes on reads what came, then the error.
func (x *fastReq) readArrived(a *asyncState) int {
	for {
		if len(x.head) == cap(x.head) {
			if len(x.head) >= maxAsyncBody+maxAsyncHead {
				return answerOther
			}
			x.head = slices.Grow(x.head, 4<<10)
		}
		n, err := a.conn.TryRead(x.head[len(x.head):cap(x.head)])
		x.head = x.head[:len(x.head)+n]
		a.uc.read += int64(n)
		if err != nil {
			return answerOther
		}
		if n == 0 {
			return x.wholeAnswer(a)
		}
	}
}

// maxAsyncHead bounds an answer's head the link's reader reads.
const maxAsyncHead = 8 << 10

// What wholeAnswer found.
const (
	answerMore  = iota // not all of it yet
	answerWhole        // head and body, nothing after
	answerOther        // not one the link's reader passes on
)

// wholeAnswer looks at what was read of the answer (x.head): whole, to
// pass on now; more to come; or other, for a goroutine to pass on.
func (x *fastReq) wholeAnswer(a *asyncState) int {
	b := x.head
	if a.need == 0 {
		if !bytes.Contains(b[max(a.scanned-3, 0):], crlf2) {
			if bytes.Contains(b[max(a.scanned-1, 0):], []byte("\n\n")) || len(b) > maxAsyncHead {
				return answerOther // a head serve reads line by line and refuses
			}
			a.scanned = len(b)
			return answerMore
		}
		h := &x.resp
		if !parseResponseHead(b, h) || h.status < 200 || h.status == 101 || len(h.undelivered) > 0 {
			return answerOther
		}
		a.need = h.size
		if !h.bodyless(x.req.method) {
			if h.chunked || h.length < 0 || h.length > maxAsyncBody {
				return answerOther
			}
			a.need += int(h.length)
		}
	}
	switch {
	case len(b) < a.need:
		return answerMore
	case len(b) > a.need:
		return answerOther // bytes after the answer: the connection is not kept
	}
	return answerWhole
}

// passAnswer passes on the whole answer read into fx.head, without
// waiting, and ends the stream's request.
func (s *h2Stream) passAnswer(a *asyncState, later func(func())) {
	hc, x := s.hc, s.fx
	h, p := &x.resp, &x.plan
	p.site = a.t.Site
	hc.e.m.observeIn(&x.series, p, h.status)
	body := x.head[h.size:]
	if n := s.tryWindow(len(body)); n < len(body) {
		// The client's window is short: a goroutine waits for it (the
		// body stays in x.head until answered).
		s.giveBack(n)
		x.release(a.uc, true)
		hc.e.o.Go(func() { s.answered(a, len(body), s.writeHead(s.encodeAnswer, body, true)) })
		return
	}
	gone := false
	err := hc.queueLater(func() { gone = !s.headFramesLocked(s.encodeAnswer, body, len(body) == 0, true) }, later)
	if gone {
		err = s.ended(len(body))
	}
	hc.e.linkAnswers.Add(1)
	x.release(a.uc, true)
	s.answered(a, len(body), err)
}

// giveBack returns n bytes taken of the stream's and the connection's
// windows (tryWindow) and not sent.
func (s *h2Stream) giveBack(n int) {
	hc := s.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	s.sendWin += int64(n)
	hc.sendWin += int64(n)
	hc.fcond.Broadcast()
}

// answered ends a request whose answer the link's reader took: err is
// how queueing it failed.
func (s *h2Stream) answered(a *asyncState, sent int, err error) {
	hc, x := s.hc, s.fx
	if err != nil {
		hc.e.log.V(1).Info("answer cut", "address", x.plan.address, "error", err.Error())
		hc.resetStream(s.id, http2.ErrCodeInternal)
	} else {
		x.sent = int64(sent)
	}
	a.done()
	x.logged(fastKeep, 0)
	s.endAsync()
}

// endAsync forgets the request of a stream sent without a goroutine, as
// serve's return does.
func (s *h2Stream) endAsync() {
	s.forgetFast()
	s.hc.streamDone(s)
	s.hc.wg.Done()
}

// forgetFast gives back the stream's request on the fast path.
func (s *h2Stream) forgetFast() {
	hc := s.hc
	hc.mu.Lock()
	x := s.fx
	s.fx = nil
	hc.mu.Unlock()
	recycleFast(x)
}

// handOff goes on with the request on a goroutine, as serve would have:
// the answer read so far is read again first from its connection; with
// sendErr, writing the request failed.
func (s *h2Stream) handOff(a *asyncState, sendErr error) {
	x := s.fx
	if len(x.head) > 0 {
		a.uc.pre = bytes.Clone(x.head)
		x.head = x.head[:0]
	}
	s.hc.e.o.Go(func() { s.goOn(a, sendErr) })
}

// goOn is handOff's goroutine.
func (s *h2Stream) goOn(a *asyncState, sendErr error) {
	x := s.fx
	v := x.serveTargets(s, func() (fastVerdict, error) {
		defer a.done()
		return x.attempts(s, &x.plan, a.t, a.uc, sendErr)
	})
	if v != fastHandOff {
		s.endAsync()
		return
	}
	// A later target speaks HTTP/2: net/http serves the request, as serve
	// does when fast declines.
	s.forgetFast()
	hc := s.hc
	defer hc.wg.Done()
	defer hc.streamDone(s)
	defer s.recoverHandler()
	s.slow()
}
