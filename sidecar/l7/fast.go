package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// The fast path serves HTTP/1.1 connections without net/http's server:
// on the goroutine that handed the connection over, it reads a request's
// head (head.go), picks an endpoint, writes the request on a kept-alive
// connection of an h1Pool, and passes the answer back, its body as it
// comes. net/http's server, ReverseProxy and Transport cost more than
// twice the CPU per request of a plain TCP splice (docs/benchmarks.md):
// a request crosses goroutines, header maps and a context per hop.
//
// It takes only the plainest requests: HTTP/1.1 in origin form, no body
// or a Content-Length body that fits its read buffer, no upgrade, no
// Expect, no Transfer-Encoding, not for a multicast address, and an
// endpoint that speaks HTTP/1.1. At the first request it does not take
// it hands the connection, that request's bytes first, to net/http's
// server for the rest of the connection's life. So every other shape,
// and every malformed or ambiguous request, is served or refused by
// net/http and the framing guard as before.

// fastBuffer is a client connection's read buffer: a request the fast
// path takes fits in it, head and body.
const fastBuffer = 4 << 10

// maxAnswerHead bounds an endpoint's answer head.
const maxAnswerHead = 1 << 20

// The states of a fast connection, for Shutdown.
const (
	fastNew    int32 = iota // no request yet
	fastIdle                // between requests
	fastActive              // a request under way
	fastClosed
)

// fastConn is a connection the fast path serves.
type fastConn struct {
	e     *Engine
	c     net.Conn
	info  connInfo
	br    *bufio.Reader
	req   reqHead
	resp  respHead
	plan  plan
	out   []byte // what is written next to the client, or to an endpoint
	head  []byte // an answer's head as read
	state atomic.Int32
	// cur is the endpoint connection of the request under way, closed
	// with the client's when the engine stops.
	cur atomic.Pointer[h1Conn]
	// series are the metrics of the last answering site.
	series series
	// sent counts the answer body bytes written to the client, for the
	// access log (a chunked body's data, as net/http counts it).
	sent int64
}

// fastVerdict is what became of a request.
type fastVerdict int

const (
	fastKeep    fastVerdict = iota // answered; the connection serves the next
	fastClose                      // answered or failed; the connection is closed
	fastHandOff                    // not taken: net/http serves the connection from this request on
)

// serveFast serves c with the fast path until it closes, or until a
// request the fast path does not take: then it returns the connection,
// that request's bytes first, for net/http's server.
func (e *Engine) serveFast(ctx context.Context, c net.Conn, info connInfo) (rest net.Conn, handOff bool) {
	fc := &fastConn{e: e, c: c, info: info, br: bufio.NewReaderSize(c, fastBuffer)}
	e.addFast(fc)
	defer e.removeFast(fc)
	stop := context.AfterFunc(ctx, fc.abort)
	defer stop()
	for {
		v := fc.readRequest()
		if v == fastKeep {
			fc.out, fc.head = takeBuf(), takeBuf()
			v = fc.serveRequest(ctx)
			fc.out, fc.head = dropBuf(fc.out), dropBuf(fc.head)
		}
		switch {
		case v == fastHandOff:
			if !stop() { // the engine is stopping: c is closed
				return nil, false
			}
			buffered, _ := fc.br.Peek(fc.br.Buffered())
			_ = c.SetReadDeadline(time.Time{})
			return &prefixConn{Conn: c, pre: bytes.Clone(buffered)}, true
		case v == fastClose || e.fastStop.Load():
			c.Close()
			return nil, false
		}
	}
}

// abort closes the client's connection and the endpoint connection in
// use: the engine stops.
func (fc *fastConn) abort() {
	fc.state.Store(fastClosed)
	fc.c.Close()
	if uc := fc.cur.Load(); uc != nil {
		uc.conn.Close()
	}
}

// readRequest waits for the next request and reads its head, and its
// body (which fits the buffer): fastKeep when the fast path takes it.
func (fc *fastConn) readRequest() fastVerdict {
	e := fc.e
	_ = fc.c.SetReadDeadline(time.Now().Add(e.o.IdleTimeout))
	was := fastNew
	if fc.state.Load() != fastNew {
		// A connection kept alive. StopKeepAlives may have looked for
		// idle ones before it was: it is not kept.
		was = fastIdle
		fc.state.Store(fastIdle)
		if e.fastStop.Load() {
			return fastClose
		}
	}
	if _, err := fc.br.Peek(1); err != nil {
		return fastClose
	}
	if !fc.state.CompareAndSwap(was, fastActive) {
		return fastClose // closed while idle (StopKeepAlives, Shutdown)
	}
	slow := false
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		switch parseRequestHead(buf, &fc.req) {
		case headHandOff:
			return fastHandOff
		case headTake:
			need := int64(fc.req.size) + fc.req.length
			if need > int64(fc.br.Size()) {
				return fastHandOff
			}
			if fc.br.Buffered() >= int(need) {
				return fastKeep
			}
			// The body is still coming: once it is here, the head is
			// parsed again (the buffer may have moved its bytes).
			if _, err := fc.br.Peek(int(need)); err != nil {
				return fastClose
			}
			continue
		}
		if len(buf) == fc.br.Size() {
			return fastHandOff // a head over the buffer: net/http reads it (or answers 431)
		}
		if !slow {
			// Bytes came: the rest of the head has what net/http's
			// ReadHeaderTimeout gives it.
			_ = fc.c.SetReadDeadline(time.Now().Add(readHeaderTimeout))
			slow = true
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			return fastClose
		}
	}
}

// serveRequest routes the request read: to its candidates in order until
// one takes it, as RoundTrip does.
func (fc *fastConn) serveRequest(ctx context.Context) fastVerdict {
	e, h, addr := fc.e, &fc.req, fc.info.address
	p := &fc.plan
	*p = plan{address: addr, fromSite: fc.info.fromSite, start: time.Now()}
	fc.sent = 0
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
		return fc.refuse(p, "no_endpoint", noEndpointMessage(e.o.Self, addr, err))
	}
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
		v, err := fc.try(ctx, p, t)
		if err == nil {
			return fc.logged(v, 0)
		}
		errs = append(errs, err)
		if !isUndelivered(err) {
			return fc.fail(p, errors.Join(errs...))
		}
	}
	reason := p.undelivered
	if reason == "" {
		reason = "dial"
	}
	return fc.refuse(p, reason, undeliveredMessage(addr, errors.Join(errs...)))
}

// try sends the request to one target and passes its answer on. An
// error is a request that got no answer: undelivered (another target may
// take it), or failed; anything written to the client is an answer.
func (fc *fastConn) try(ctx context.Context, p *plan, t Target) (fastVerdict, error) {
	e := fc.e
	pool, host := e.h1For(p.address, t)
	done := e.up.Track(t.Key)
	defer done()
	for attempt := 0; ; attempt++ {
		uc, reused, err := pool.get(ctx, host)
		if err != nil {
			if u, ok := errors.AsType[*undeliveredError](err); ok {
				p.undelivered = u.reason
			}
			return 0, fmt.Errorf("%s: %w", describe(t), err)
		}
		fc.cur.Store(uc)
		if ctx.Err() != nil { // abort may have looked before uc was stored
			uc.conn.Close()
			fc.cur.Store(nil)
			return 0, ctx.Err()
		}
		v, err := fc.exchange(p, t, uc)
		fc.cur.Store(nil)
		if err == nil || !errors.Is(err, errStale) {
			return v, err
		}
		if !sendAgain(ctx, reused, attempt, string(fc.req.method)) {
			return 0, fmt.Errorf("%s: %w", describe(t), err)
		}
	}
}

// errStale is an endpoint connection that failed before any byte of an
// answer came back.
var errStale = errors.New("connection closed before an answer")

// exchange writes the request on uc and passes the answer on. uc goes
// back to its pool if both sides keep it.
func (fc *fastConn) exchange(p *plan, t Target, uc *h1Conn) (fastVerdict, error) {
	uc.read = 0
	if err := fc.writeRequest(uc); err != nil {
		uc.conn.Close()
		return 0, fmt.Errorf("write request: %w: %w", errStale, err)
	}
	h := &fc.resp
	for {
		if err := fc.readAnswerHead(uc); err != nil {
			uc.conn.Close()
			if uc.read == 0 {
				return 0, fmt.Errorf("read answer: %w: %w", errStale, err)
			}
			return 0, fmt.Errorf("%s: read answer: %w", describe(t), err)
		}
		if !parseResponseHead(fc.head, h) {
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
		fc.discardAnswer(uc)
		return 0, &undeliveredError{reason: p.undelivered, err: fmt.Errorf("%s: %d", describe(t), h.status)}
	}
	if h.chunked && !h.bodyless(fc.req.method) {
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
		p.site = fc.e.o.Self
	}
	fc.e.m.observeIn(&fc.series, p, h.status)
	return fc.passAnswer(uc)
}

// writeRequest writes the request's head, without the fields it drops,
// and its body on uc.
func (fc *fastConn) writeRequest(uc *h1Conn) error {
	h := &fc.req
	buf, _ := fc.br.Peek(h.size + int(h.length))
	if h.dropped == 0 {
		if _, err := uc.bw.Write(buf); err != nil {
			return err
		}
		return uc.bw.Flush()
	}
	out := fc.out[:0]
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
	fc.out = out
	if _, err := uc.bw.Write(out); err != nil {
		return err
	}
	return uc.bw.Flush()
}

// readAnswerHead reads an answer's head from uc, its lines as they come,
// into fc.head.
func (fc *fastConn) readAnswerHead(uc *h1Conn) error {
	head := fc.head[:0]
	lineStart := 0
	for {
		b, err := uc.br.ReadSlice('\n')
		head = append(head, b...)
		fc.head = head
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
func (fc *fastConn) discardAnswer(uc *h1Conn) {
	h := &fc.resp
	switch {
	case h.bodyless(fc.req.method):
		fc.release(uc, true)
	case h.length >= 0 && h.length <= 4<<10:
		_, err := uc.br.Discard(int(h.length))
		fc.release(uc, err == nil)
	default:
		uc.conn.Close()
	}
}

// release puts uc back in its pool when both it and the answer allow,
// else closes it.
func (fc *fastConn) release(uc *h1Conn, bodyRead bool) {
	h := &fc.resp
	if bodyRead && !h.close && !h.http10 && uc.br.Buffered() == 0 && !fc.e.fastStop.Load() {
		uc.pool.put(uc)
		return
	}
	uc.conn.Close()
}

// passAnswer writes the answer's head, without the fields it drops, and
// its body as it comes, framed as the endpoint framed it.
func (fc *fastConn) passAnswer(uc *h1Conn) (fastVerdict, error) {
	h := &fc.resp
	bodyless := h.bodyless(fc.req.method)
	delimited := !bodyless && !h.chunked && h.length < 0 // by the endpoint closing
	closeClient := fc.req.close || delimited || fc.e.fastStop.Load()
	out := fc.answerHead(closeClient)
	var bodyRead bool
	var err error
	switch {
	case bodyless:
		// uc serves the next request before the client has this answer.
		fc.release(uc, true)
		_, err = fc.c.Write(out)
		return fc.after(err, closeClient)
	case h.length >= 0 && int64(uc.br.Buffered()) >= h.length && len(out)+int(h.length) <= 16<<10:
		// The body is here already: one write with the head.
		body, _ := uc.br.Peek(int(h.length))
		out = append(out, body...)
		fc.out = out
		_, _ = uc.br.Discard(int(h.length))
		fc.release(uc, true)
		_, err = fc.c.Write(out)
		fc.sent = h.length
		return fc.after(err, closeClient)
	case h.length >= 0:
		bodyRead, err = fc.passLength(uc, out)
	case h.chunked:
		bodyRead, err = fc.passChunked(uc, out)
	default:
		if _, err = fc.c.Write(out); err == nil {
			fc.sent, err = copyBody(fc.c, uc.br)
		}
	}
	if err != nil {
		// The answer was cut: the client learns it as its connection
		// closes.
		uc.conn.Close()
		fc.e.log.V(1).Info("answer cut", "address", fc.plan.address, "error", err.Error())
		return fastClose, nil
	}
	fc.release(uc, bodyRead && !delimited)
	return fc.after(nil, closeClient)
}

// after is what becomes of the client's connection once its answer was
// written (err: its last write).
func (fc *fastConn) after(err error, closeClient bool) (fastVerdict, error) {
	if err != nil || closeClient {
		return fastClose, nil
	}
	return fastKeep, nil
}

// answerHead builds the head written to the client.
func (fc *fastConn) answerHead(closeClient bool) []byte {
	h := &fc.resp
	out := fc.out[:0]
	status, _, _ := cutLine(fc.head)
	if h.http10 {
		out = append(out, "HTTP/1.1"...)
		out = append(out, status[8:]...)
		out = append(out, "\r\n"...)
	} else {
		out = append(out, fc.head[:len(status)+2]...)
	}
	for _, f := range h.fields {
		if !f.drop {
			out = append(out, f.line...)
		}
	}
	if closeClient {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	fc.out = out
	return out
}

// passLength passes a body of h.length bytes, as it comes.
func (fc *fastConn) passLength(uc *h1Conn, out []byte) (bool, error) {
	n := fc.resp.length
	if _, err := fc.c.Write(out); err != nil {
		return false, err
	}
	sent, err := copyBody(fc.c, io.LimitReader(uc.br, n))
	fc.sent = sent
	if err == nil && sent < n {
		err = io.ErrUnexpectedEOF
	}
	return err == nil, err
}

// passChunked passes a chunked body, chunk lines and trailer as they
// are, to its end: what is read already with the head, then as it comes.
// It reports whether uc may serve another request (nothing came after
// the body).
func (fc *fastConn) passChunked(uc *h1Conn, out []byte) (bool, error) {
	var sc chunkScanner
	if b := uc.br.Buffered(); b > 0 {
		p, _ := uc.br.Peek(b)
		n, done, bad := sc.scan(p)
		if bad {
			return false, errMalformedChunks
		}
		out = append(out, p[:n]...)
		fc.out = out
		_, _ = uc.br.Discard(n)
		fc.sent = sc.data
		if done {
			_, err := fc.c.Write(out)
			return err == nil, err
		}
	}
	if _, err := fc.c.Write(out); err != nil {
		return false, err
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		k, err := uc.br.Read(*buf)
		if k == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		n, done, bad := sc.scan((*buf)[:k])
		if bad {
			return false, errMalformedChunks
		}
		if _, err := fc.c.Write((*buf)[:n]); err != nil {
			return false, err
		}
		fc.sent = sc.data
		if done {
			return n == k, nil // bytes after the body: uc is not kept
		}
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
func (fc *fastConn) refuse(p *plan, reason, msg string) fastVerdict {
	e := fc.e
	if !p.fromSite {
		e.log.Info("request not delivered", "address", p.address, "method", string(fc.req.method), "reason", reason, "error", msg)
	}
	p.site = ""
	e.m.observeIn(&fc.series, p, http.StatusServiceUnavailable)
	return fc.logged(fc.writeError(http.StatusServiceUnavailable, reason, msg), http.StatusServiceUnavailable)
}

// fail answers a request an endpoint failed: 502, as Engine.proxyError
// does.
func (fc *fastConn) fail(p *plan, err error) fastVerdict {
	e := fc.e
	e.log.Info("request failed", "address", p.address, "method", string(fc.req.method), "error", err.Error())
	e.m.observeIn(&fc.series, p, http.StatusBadGateway)
	return fc.logged(fc.writeError(http.StatusBadGateway, "", "skiff: "+err.Error()), http.StatusBadGateway)
}

// writeError writes an answer of skiff's own, as http.Error writes it.
func (fc *fastConn) writeError(code int, reason, msg string) fastVerdict {
	closeClient := fc.req.close || fc.e.fastStop.Load()
	out := fc.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(code)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
	if reason != "" {
		out = append(out, "\r\n"+UndeliveredHeader+": "...)
		out = append(out, reason...)
	}
	if closeClient {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(msg)+1), 10)
	out = append(out, "\r\n\r\n"...)
	out = append(out, msg...)
	out = append(out, '\n')
	fc.out = out
	fc.sent = int64(len(msg) + 1)
	if _, err := fc.c.Write(out); err != nil || closeClient {
		return fastClose
	}
	return fastKeep
}

// logged writes the request's access-log line, if its connection has
// them, and consumes the request from the buffer; status is skiff's own
// answer's, 0 for the endpoint's.
func (fc *fastConn) logged(v fastVerdict, status int) fastVerdict {
	h := &fc.req
	if fc.info.logged {
		if status == 0 {
			status = fc.resp.status
		}
		p := &fc.plan
		path := string(h.target)
		if i := bytes.IndexByte(h.target, '?'); i >= 0 {
			path = string(h.target[:i])
		}
		if u, err := url.PathUnescape(path); err == nil {
			path = u
		}
		fc.e.alog.write(&AccessLine{
			TS:         p.start.UTC().Format(accessTimeFormat),
			Address:    p.address,
			Method:     clip(string(h.method), maxLoggedMethod),
			Path:       clip(path, MaxLoggedPath),
			Proto:      "HTTP/1.1",
			Status:     status,
			Site:       siteLabel(p.site),
			DurationMS: float64(time.Since(p.start).Microseconds()) / 1000,
			BytesIn:    h.length,
			BytesOut:   fc.sent,
			Retries:    p.retries,
			Client:     fc.c.RemoteAddr().String(),
		})
	}
	_, _ = fc.br.Discard(h.size + int(h.length))
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

// prefixConn reads pre before the connection: the bytes the fast path
// read of a request it handed to net/http.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// fastConns are the connections the fast path serves, for Shutdown.
type fastConns struct {
	mu    sync.Mutex
	conns map[*fastConn]struct{}
}

func (e *Engine) addFast(fc *fastConn) {
	e.fast.mu.Lock()
	defer e.fast.mu.Unlock()
	if e.fast.conns == nil {
		e.fast.conns = map[*fastConn]struct{}{}
	}
	e.fast.conns[fc] = struct{}{}
}

func (e *Engine) removeFast(fc *fastConn) {
	e.fast.mu.Lock()
	defer e.fast.mu.Unlock()
	delete(e.fast.conns, fc)
}

// closeIdleFast closes the fast path's idle connections, and with
// orNew those that have not sent a request yet; it returns how many
// connections it still serves.
func (e *Engine) closeIdleFast(orNew bool) int {
	e.fast.mu.Lock()
	defer e.fast.mu.Unlock()
	for fc := range e.fast.conns {
		if fc.state.CompareAndSwap(fastIdle, fastClosed) || (orNew && fc.state.CompareAndSwap(fastNew, fastClosed)) {
			fc.c.Close()
		}
	}
	return len(e.fast.conns)
}
