package l7

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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

// fastConn is an HTTP/1.1 connection the fast path serves, and the
// clientSide of its requests.
type fastConn struct {
	fastReq
	c     net.Conn
	br    *bufio.Reader
	state atomic.Int32
	// idleFrom is when the idle deadline was last set; headerDeadline,
	// that the deadline in force is readHeaderTimeout's.
	idleFrom       time.Time
	headerDeadline bool
	// h2 is the connection's HTTP/2 server, once its client sent HTTP/2's
	// preface.
	h2 atomic.Pointer[h2Conn]
	// in is what br reads: c, after the bytes a hold took from it; hold,
	// a link stream's endpoint connection held between requests (hold.go).
	in   prefixConn
	hold *hold
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
	fc := &fastConn{fastReq: fastReq{e: e, info: info}, c: c, in: prefixConn{Conn: c}}
	fc.br = bufio.NewReaderSize(&fc.in, fastBuffer)
	if ac, ok := c.(asyncConn); ok && info.fromSite {
		fc.hold = newHold(fc, ac)
	}
	fc.client = fc
	e.addFast(fc)
	defer e.removeFast(fc)
	stop := context.AfterFunc(ctx, fc.abort)
	defer stop()
	for first := true; ; first = false {
		v, held := fastKeep, false
		if !first {
			v, held = fc.holdIdle(ctx)
		}
		if !held {
			v = fc.readRequest()
		}
		if !held && v == fastKeep {
			fc.out, fc.head = takeBuf(), takeBuf()
			fc.raw, _ = fc.br.Peek(fc.req.size + int(fc.req.length))
			v = fc.serveRequest(ctx)
			fc.out, fc.head, fc.raw = dropBuf(fc.out), dropBuf(fc.head), nil
			if v != fastHandOff {
				_, _ = fc.br.Discard(fc.req.size + int(fc.req.length))
			}
		}
		switch {
		case v == fastHandOff && first && fc.prefaced():
			e.serveH2(ctx, fc)
			return nil, false
		case v == fastHandOff:
			if !stop() { // the engine is stopping: c is closed
				return nil, false
			}
			buffered, _ := fc.br.Peek(fc.br.Buffered())
			_ = c.SetReadDeadline(time.Time{})
			return &prefixConn{Conn: c, pre: append(bytes.Clone(buffered), fc.in.pre...)}, true
		case v == fastClose || e.fastStop.Load():
			c.Close()
			return nil, false
		}
	}
}

// prefaced reports a connection that opened with HTTP/2's preface: its
// first line read as a request's head.
func (fc *fastConn) prefaced() bool {
	b, _ := fc.br.Peek(fc.br.Buffered())
	return bytes.HasPrefix(b, h2Preface[:18])
}

// abort closes the client's connection and the endpoint connection in
// use: the engine stops.
func (fc *fastConn) abort() {
	fc.state.Store(fastClosed)
	fc.c.Close()
	fc.abortCur()
}

// readRequest waits for the next request and reads its head, and its
// body (which fits the buffer): fastKeep when the fast path takes it.
func (fc *fastConn) readRequest() fastVerdict {
	e := fc.e
	if now := time.Now(); fc.headerDeadline || now.Sub(fc.idleFrom) >= time.Second {
		// The idle deadline moves at most once a second: setting it is
		// a timer's work, on every request of a busy connection. So a
		// connection idles between IdleTimeout less a second and
		// IdleTimeout.
		_ = fc.c.SetReadDeadline(now.Add(e.o.IdleTimeout))
		fc.idleFrom, fc.headerDeadline = now, false
	}
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
			slow, fc.headerDeadline = true, true
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			return fastClose
		}
	}
}

// answer writes the answer's head, without the fields it drops, and
// its body as it comes, framed as the endpoint framed it.
func (fc *fastConn) answer(uc *h1Conn) (fastVerdict, error) {
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

// own writes an answer of skiff's own, as http.Error writes it.
func (fc *fastConn) own(code int, reason, msg string) fastVerdict {
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

// prefixConn reads pre before the connection: the bytes the fast path
// read of a request it handed to net/http, or those a hold took from a
// link stream (hold.go).
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
		if hc := fc.h2.Load(); hc != nil {
			hc.shutdown() // GOAWAY: it closes once its streams are done
		}
	}
	return len(e.fast.conns)
}

// pokeHolds wakes the link streams that hold an endpoint connection:
// they give it back, or close it after a change.
func (e *Engine) pokeHolds() {
	e.fast.mu.Lock()
	defer e.fast.mu.Unlock()
	for fc := range e.fast.conns {
		if fc.hold != nil {
			fc.hold.poke()
		}
	}
}

func (fc *fastConn) proto() string  { return "HTTP/1.1" }
func (fc *fastConn) remote() string { return fc.c.RemoteAddr().String() }
