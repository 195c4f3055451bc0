package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// A request the fast path takes, from an HTTP/1.1 client (fast.go) or an
// HTTP/2 one (h2stream.go), is sent the same way: to its candidates in order,
// each an HTTP/1.1 endpoint or site reached over a kept-alive connection
// of an h1Pool, written as the HTTP/1.1 bytes of its head and body. Only
// the way its answer goes back differs: clientSide.

// fastReq is a request under way on the fast path.
type fastReq struct {
	e      *Engine
	info   connInfo
	client clientSide
	req    reqHead
	// raw is the request as written to an endpoint: its head, which req
	// was parsed from, then its body.
	raw  []byte
	resp respHead
	plan plan
	out  []byte // what is written next to the client, or to an endpoint
	head []byte // an answer's head as read
	// cur is the endpoint connection of the request under way, closed
	// when the client goes away or the engine stops.
	cur atomic.Pointer[h1Conn]
	// series are the metrics of the last answering site.
	series series
	// sent counts the answer body bytes written to the client, for the
	// access log (a chunked body's data, as net/http counts it).
	sent int64
	// kept is the pool and address of the endpoint connection the last
	// request gave back, which a link stream holds until the next (hold.go).
	kept     *h1Pool
	keptHost string
}

// clientSide is how a request's answer reaches its client.
type clientSide interface {
	// answer passes on the answer whose head was read into resp and
	// head, its body read from uc as it comes; uc goes back to its pool
	// (release) or is closed.
	answer(uc *h1Conn) (fastVerdict, error)
	// own writes an answer of skiff's own, as http.Error writes it;
	// reason, if not empty, goes in UndeliveredHeader.
	own(code int, reason, msg string) fastVerdict
	// proto and remote are the client's protocol and address, for the
	// access log.
	proto() string
	remote() string
}

// serveRequest routes the request read: to its candidates in order until
// one takes it, as RoundTrip does.
func (x *fastReq) serveRequest(ctx context.Context) fastVerdict {
	e, h, addr := x.e, &x.req, x.info.address
	p := &x.plan
	*p = plan{address: addr, fromSite: x.info.fromSite, origin: originOf(x.info), start: time.Now()}
	x.sent = 0
	var err error
	if p.fromSite {
		if h.multicast {
			return fastHandOff // copied to every endpoint here (multicast.go)
		}
		p.targets, err = e.up.LocalTargets(addr)
		p.pattern = model.Balanced
	} else {
		p.targets, p.pattern, err = e.up.Targets(addr)
		if err == nil && p.pattern == model.Multicast {
			return fastHandOff
		}
	}
	if err == nil && len(p.targets) == 0 {
		err = errors.New("no endpoint")
	}
	if err != nil {
		return x.refuse(p, "no_endpoint", noEndpointMessage(e.o.Self, addr, err))
	}
	return x.serveTargets(ctx, nil)
}

// serveTargets sends the planned request to its targets in order until
// one takes it. first, if set, is the first target's try, begun already
// (h2async.go).
func (x *fastReq) serveTargets(ctx context.Context, first func() (fastVerdict, error)) fastVerdict {
	e, p, addr := x.e, &x.plan, x.info.address
	var errs []error
	for i, t := range p.targets {
		if i == e.o.MaxAttempts {
			break
		}
		if t.Protocol != model.HTTP {
			// The candidate speaks HTTP/2: net/http serves the request,
			// from the first candidate.
			return fastHandOff
		}
		if i > 0 {
			e.m.Retries.WithLabelValues(addr).Inc()
			p.retries++
		}
		var v fastVerdict
		var err error
		if first != nil {
			v, err = first()
			first = nil
		} else {
			v, err = x.try(ctx, p, t)
		}
		if err == nil {
			return x.logged(v, 0)
		}
		if ctx.Err() != nil {
			// The client went away (an HTTP/2 stream it reset), or the
			// engine stops: nobody reads an answer.
			p.site = ""
			e.m.observeIn(&x.series, p, 499)
			x.sent = 0
			return x.logged(fastClose, 499)
		}
		errs = append(errs, err)
		if !isUndelivered(err) {
			return x.fail(p, errors.Join(errs...))
		}
	}
	reason := p.undelivered
	if reason == "" {
		reason = "dial"
	}
	return x.refuse(p, reason, undeliveredMessage(addr, errors.Join(errs...)))
}

// try sends the request to one target and passes its answer on. An
// error is a request that got no answer: undelivered (another target may
// take it), or failed; anything written to the client is an answer.
func (x *fastReq) try(ctx context.Context, p *plan, t Target) (fastVerdict, error) {
	done := x.e.up.Track(t.Key)
	defer done()
	return x.attempts(ctx, p, t, nil, nil)
}

// attempts is try's work. With sent set, the request was written on that
// connection already (sendErr: how that failed), and its answer is read
// from it first (h2async.go).
func (x *fastReq) attempts(ctx context.Context, p *plan, t Target, sent *h1Conn, sendErr error) (fastVerdict, error) {
	pool, host := x.e.h1For(p.address, t)
	for attempt := 0; ; attempt++ {
		var v fastVerdict
		var err error
		uc, reused := sent, true
		switch {
		case sent != nil && sendErr != nil:
			sent = nil
			uc.conn.Close()
			err = sendErr
		case sent != nil:
			sent = nil
			v, err = x.awaitAnswer(p, t, uc)
		default:
			uc, reused, err = pool.get(ctx, host)
			if err != nil {
				if u, ok := errors.AsType[*undeliveredError](err); ok {
					p.undelivered = u.reason
				}
				return 0, fmt.Errorf("%s: %w", describe(t), err)
			}
			x.cur.Store(uc)
			if ctx.Err() != nil { // abort may have looked before uc was stored
				uc.conn.Close()
				x.cur.Store(nil)
				return 0, ctx.Err()
			}
			v, err = x.exchange(p, t, uc)
		}
		x.cur.Store(nil)
		if err == nil || !errors.Is(err, errStale) {
			return v, err
		}
		if !sendAgain(ctx, reused, attempt, string(x.req.method)) {
			return 0, fmt.Errorf("%s: %w", describe(t), err)
		}
	}
}

// errStale is an endpoint connection that failed before any byte of an
// answer came back.
var errStale = errors.New("connection closed before an answer")

// exchange writes the request on uc and passes the answer on. uc goes
// back to its pool if both sides keep it.
func (x *fastReq) exchange(p *plan, t Target, uc *h1Conn) (fastVerdict, error) {
	uc.read = 0
	if err := x.writeRequest(uc); err != nil {
		uc.conn.Close()
		return 0, fmt.Errorf("write request: %w: %w", errStale, err)
	}
	return x.awaitAnswer(p, t, uc)
}

// awaitAnswer reads the answer to the request written on uc and passes
// it on.
func (x *fastReq) awaitAnswer(p *plan, t Target, uc *h1Conn) (fastVerdict, error) {
	h := &x.resp
	for {
		if err := x.readAnswerHead(uc); err != nil {
			uc.conn.Close()
			if uc.read == 0 {
				return 0, fmt.Errorf("read answer: %w: %w", errStale, err)
			}
			return 0, fmt.Errorf("%s: read answer: %w", describe(t), err)
		}
		if !parseResponseHead(x.head, h) {
			uc.conn.Close()
			return 0, fmt.Errorf("%s: an answer whose head cannot be passed on", describe(t))
		}
		if h.status == http.StatusSwitchingProtocols {
			uc.conn.Close()
			return 0, fmt.Errorf("%s: 101 Switching Protocols to a request that did not ask", describe(t))
		}
		if h.status >= 200 {
			break
		}
		// An informational answer (103 Early Hints) before the answer.
	}
	if len(h.undelivered) > 0 && t.Site != "" {
		// The far site had no endpoint to give it.
		p.undelivered = string(h.undelivered)
		x.discardAnswer(uc)
		return 0, &undeliveredError{reason: p.undelivered, err: fmt.Errorf("%s: %d", describe(t), h.status)}
	}
	if h.chunked && !h.bodyless(x.req.method) {
		// A body malformed in what came with the head still gets a 502.
		var probe chunkScanner
		if b, _ := uc.br.Peek(uc.br.Buffered()); len(b) > 0 {
			if _, _, bad := probe.scan(b); bad {
				uc.conn.Close()
				return 0, fmt.Errorf("%s: %w", describe(t), errMalformedChunks)
			}
		}
	}
	p.site = t.Site
	if p.site == "" {
		p.site = x.e.o.Self
	}
	x.e.m.observeIn(&x.series, p, h.status)
	return x.client.answer(uc)
}

// writeRequest writes the request's head, without the fields it drops,
// and its body on uc.
func (x *fastReq) writeRequest(uc *h1Conn) error {
	if _, err := uc.bw.Write(x.requestBytes()); err != nil {
		return err
	}
	return uc.bw.Flush()
}

// requestBytes is the request as written to an endpoint: its head without
// the fields it drops, and its body.
func (x *fastReq) requestBytes() []byte {
	h := &x.req
	buf := x.raw
	if h.dropped == 0 {
		return buf
	}
	out := x.out[:0]
	out = append(out, h.method...)
	out = append(out, ' ')
	out = append(out, h.target...)
	out = append(out, " HTTP/1.1\r\n"...)
	for _, f := range h.fields {
		if !f.drop {
			out = append(out, f.line...)
		}
	}
	out = append(out, "\r\n"...)
	out = append(out, buf[h.size:]...)
	x.out = out
	return out
}

// readAnswerHead reads an answer's head from uc, its lines as they come,
// into x.head.
func (x *fastReq) readAnswerHead(uc *h1Conn) error {
	head := x.head[:0]
	lineStart := 0
	for {
		b, err := uc.br.ReadSlice('\n')
		head = append(head, b...)
		x.head = head
		if len(head) > maxAnswerHead {
			return fmt.Errorf("an answer head over %d bytes", maxAnswerHead)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return err
		}
		line := head[lineStart:]
		if string(line) == "\r\n" || string(line) == "\n" {
			return nil
		}
		lineStart = len(head)
	}
}

// discardAnswer reads a short answer's body away, to keep uc; a longer
// one closes it.
func (x *fastReq) discardAnswer(uc *h1Conn) {
	h := &x.resp
	switch {
	case h.bodyless(x.req.method):
		x.release(uc, true)
	case h.length >= 0 && h.length <= 4<<10:
		_, err := uc.br.Discard(int(h.length))
		x.release(uc, err == nil)
	default:
		uc.conn.Close()
	}
}

// release puts uc back in its pool when both it and the answer allow,
// else closes it. It takes uc out of cur first: once in the pool, uc may
// serve another request at once, and an abort of this one must not close
// it then. If abort took it first, it is closed and stays out.
func (x *fastReq) release(uc *h1Conn, bodyRead bool) {
	h := &x.resp
	mine := x.cur.CompareAndSwap(uc, nil)
	if mine && bodyRead && !h.close && !h.http10 && uc.br.Buffered() == 0 && len(uc.pre) == 0 && !x.e.fastStop.Load() {
		x.kept, x.keptHost = uc.pool, uc.addr
		uc.pool.put(uc)
		return
	}
	uc.conn.Close()
}

// abortCur closes the endpoint connection of the request under way, if
// it has one that release has not taken back: the client went away or
// the engine stops.
func (x *fastReq) abortCur() {
	if uc := x.cur.Swap(nil); uc != nil {
		uc.conn.Close()
	}
}

var errMalformedChunks = errors.New("a malformed chunked body")

// copyBody copies src to the client with a pooled buffer.
func copyBody(dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
}

// refuse answers a request that reached no endpoint: 503 with
// UndeliveredHeader, as Engine.refuse does.
func (x *fastReq) refuse(p *plan, reason, msg string) fastVerdict {
	e := x.e
	if !p.fromSite {
		e.log.Info("request not delivered", "address", p.address, "method", string(x.req.method), "reason", reason, "error", msg)
	}
	p.site = ""
	e.m.observeIn(&x.series, p, http.StatusServiceUnavailable)
	return x.logged(x.client.own(http.StatusServiceUnavailable, reason, msg), http.StatusServiceUnavailable)
}

// fail answers a request an endpoint failed: 502, as Engine.proxyError
// does.
func (x *fastReq) fail(p *plan, err error) fastVerdict {
	e := x.e
	e.log.Info("request failed", "address", p.address, "method", string(x.req.method), "error", err.Error())
	e.m.observeIn(&x.series, p, http.StatusBadGateway)
	return x.logged(x.client.own(http.StatusBadGateway, "", "skiff: "+err.Error()), http.StatusBadGateway)
}

// logged writes the request's access-log line, if its connection has
// them, and consumes the request from the buffer; status is skiff's own
// answer's, 0 for the endpoint's.
func (x *fastReq) logged(v fastVerdict, status int) fastVerdict {
	h := &x.req
	if x.info.logged {
		if status == 0 {
			status = x.resp.status
		}
		p := &x.plan
		path := string(h.target)
		if i := bytes.IndexByte(h.target, '?'); i >= 0 {
			path = string(h.target[:i])
		}
		if u, err := url.PathUnescape(path); err == nil {
			path = u
		}
		x.e.alog.write(&AccessLine{
			TS:         p.start.UTC().Format(accessTimeFormat),
			Address:    p.address,
			Method:     clip(string(h.method), maxLoggedMethod),
			Path:       clip(path, MaxLoggedPath),
			Proto:      x.client.proto(),
			Status:     status,
			Site:       siteLabel(p.site),
			DurationMS: float64(time.Since(p.start).Microseconds()) / 1000,
			BytesIn:    h.length,
			BytesOut:   x.sent,
			Retries:    p.retries,
			Client:     x.client.remote(),
		})
	}
	return v
}

// headBufs lend a request its scratch buffers (fastConn.out and head),
// so that an idle connection holds only its read buffer.
var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func takeBuf() []byte { return (*headBufs.Get().(*[]byte))[:0] }

// dropBuf gives b back, unless it grew past 64 KiB for an odd answer.
func dropBuf(b []byte) []byte {
	if cap(b) <= 64<<10 {
		headBufs.Put(&b)
	}
	return nil
}
