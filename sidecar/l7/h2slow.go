package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A request the fast path does not take becomes an http.Request for the
// engine's handler, with an http.ResponseWriter whose answer goes out as
// the stream's frames: what net/http's HTTP/2 server did for every
// request.

// onData passes a DATA frame's bytes to its stream's body.
func (hc *h2Conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if id > hc.lastID {
		return connErr(http2.ErrCodeProtocol, "stream %d: DATA on an idle stream", id)
	}
	if n > hc.recvWin {
		return connErr(http2.ErrCodeFlowControl, "stream %d: DATA over the connection's window", id)
	}
	hc.recvWin -= n
	s := hc.streams[id]
	switch {
	case s == nil:
		hc.giveBackLocked(nil, n) // a stream that ended
		return nil
	case s.clientDone:
		hc.giveBackLocked(nil, n)
		hc.resetLocked(s, http2.ErrCodeStreamClosed)
		return nil
	case n > s.recvWin:
		hc.giveBackLocked(nil, n)
		hc.resetLocked(s, http2.ErrCodeFlowControl)
		return nil
	}
	s.recvWin -= n
	data := f.Data()
	s.received += int64(len(data))
	end := f.StreamEnded()
	if s.declared >= 0 && (s.received > s.declared || end && s.received != s.declared) {
		hc.giveBackLocked(nil, n)
		hc.resetLocked(s, http2.ErrCodeProtocol)
		return nil
	}
	b := s.body
	if b.closed || b.err != nil {
		hc.giveBackLocked(s, n)
	} else {
		b.buf = append(b.buf, data...)
		hc.giveBackLocked(s, n-int64(len(data))) // padding
		b.cond.Broadcast()
	}
	if end {
		s.clientDone = true
		b.endLocked(io.EOF)
	}
	return nil
}

// giveBackLocked returns n bytes of flow-control window to the client,
// on the connection and on s's stream (s nil: the connection only),
// once a quarter of a window is owed (hc.mu held).
func (hc *h2Conn) giveBackLocked(s *h2Stream, n int64) {
	if n <= 0 {
		return
	}
	var conn, stream int64
	if hc.recvDone += n; hc.recvDone >= h2ConnWindow/4 {
		conn, hc.recvDone = hc.recvDone, 0
		hc.recvWin += conn
	}
	if s != nil && !s.clientDone {
		if s.recvDone += n; s.recvDone >= h2StreamWindow/4 {
			stream, s.recvDone = s.recvDone, 0
			s.recvWin += stream
		}
	}
	if conn == 0 && stream == 0 {
		return
	}
	var id uint32
	if s != nil {
		id = s.id
	}
	hc.queue(false, func() {
		if conn > 0 {
			_ = hc.wfr.WriteWindowUpdate(0, uint32(conn))
		}
		if stream > 0 {
			_ = hc.wfr.WriteWindowUpdate(id, uint32(stream))
		}
	})
}

// h2Body is a request's body as its DATA frames bring it. Its fields
// are under the connection's mu.
type h2Body struct {
	s    *h2Stream
	cond sync.Cond
	buf  []byte
	off  int
	// err ends the reads once buf is read: io.EOF, or why the body
	// failed.
	err     error
	closed  bool        // the handler closed it
	trailer http.Header // what the client's trailers said
	req     *http.Request
	// expect: the client asked for 100 Continue, which the first Read
	// sends unless the answer started.
	expect atomic.Bool
}

var errBodyClosed = errors.New("http2: the request body was closed")

func (b *h2Body) Read(p []byte) (int, error) {
	if b.expect.CompareAndSwap(true, false) {
		// The client waits for 100 Continue before it sends the body, as
		// net/http's server tells it on the handler's first read.
		_ = b.s.writeHead(func(enc *hpack.Encoder) {
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
		}, nil, false)
	}
	hc := b.s.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for b.off == len(b.buf) && b.err == nil {
		b.cond.Wait()
	}
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		if b.off += n; b.off == len(b.buf) {
			b.buf, b.off = b.buf[:0], 0
		}
		hc.giveBackLocked(b.s, int64(n))
		return n, nil
	}
	if b.err == io.EOF && b.trailer != nil && b.req != nil {
		if b.req.Trailer == nil {
			b.req.Trailer = http.Header{}
		}
		for k, v := range b.trailer {
			b.req.Trailer[k] = v
		}
		b.trailer = nil
	}
	return 0, b.err
}

// Close drops what was not read; more of the body is dropped as it
// comes.
func (b *h2Body) Close() error {
	hc := b.s.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.dropLocked(errBodyClosed)
	}
	return nil
}

// endLocked ends the body with err once what came is read.
func (b *h2Body) endLocked(err error) {
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
}

// dropLocked fails the body with err and gives back the window of what
// it held.
func (b *h2Body) dropLocked(err error) {
	if b.err == nil || b.err == io.EOF {
		b.err = err
	}
	b.s.hc.giveBackLocked(nil, int64(len(b.buf)-b.off))
	b.buf, b.off = nil, 0
	b.cond.Broadcast()
}

// slow serves the request with the engine's handler.
func (s *h2Stream) slow() {
	req, err := s.request()
	if err != nil {
		s.own(http.StatusBadRequest, "", "skiff: "+err.Error())
		return
	}
	if s.body != nil {
		s.hc.mu.Lock()
		s.body.req = req
		s.hc.mu.Unlock()
		s.body.expect.Store(strings.EqualFold(req.Header.Get("Expect"), "100-continue"))
		defer s.body.Close()
	}
	w := &h2Writer{s: s, header: http.Header{}, head: req.Method == http.MethodHead}
	s.hc.e.serveHTTP(w, req)
	w.finish()
}

// request is the stream's request as net/http's server would make it.
func (s *h2Stream) request() (*http.Request, error) {
	f := s.f
	method, path, authority := f.PseudoValue("method"), f.PseudoValue("path"), f.PseudoValue("authority")
	u, uri := &url.URL{Host: authority}, authority
	if method != http.MethodConnect {
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, fmt.Errorf("a malformed :path: %w", err)
		}
		uri = path
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	cookies := false
	for _, hf := range fields {
		switch k := textproto.CanonicalMIMEHeaderKey(hf.Name); k {
		case "Cookie":
			cookies = true
		case "Host": // the request's Host
		default:
			header[k] = append(header[k], hf.Value)
		}
	}
	if cookies {
		header.Set("Cookie", string(appendCookies(nil, f)))
	}
	req := &http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		Body: http.NoBody, Host: requestHost(f), RemoteAddr: s.remote(), RequestURI: uri}
	if s.body != nil {
		req.Body, req.ContentLength = s.body, s.declared
	}
	for _, k := range trailerKeys(header) {
		if httpguts.ValidTrailerHeader(k) {
			if req.Trailer == nil {
				req.Trailer = http.Header{}
			}
			req.Trailer[k] = nil
		}
	}
	header.Del("Trailer")
	ctx, cancel := context.WithCancel(context.WithValue(s.hc.ctx, connInfoKey{}, s.hc.info))
	s.hc.mu.Lock()
	s.cancel = cancel
	if s.gone.Load() {
		cancel()
	}
	s.hc.mu.Unlock()
	return req.WithContext(ctx), nil
}

// trailerKeys are the fields h's Trailer fields announce, in canonical
// case.
func trailerKeys(h http.Header) []string {
	var keys []string
	for _, v := range h.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)); k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// h2Writer is the handler's http.ResponseWriter.
type h2Writer struct {
	s      *h2Stream
	header http.Header
	status int  // 0 until WriteHeader
	sent   bool // the head was queued
	head   bool // the answer to a HEAD request: its body is not sent
	buf    []byte
	// trailers are the fields the head announced in Trailer.
	trailers []string
}

func (w *h2Writer) Header() http.Header { return w.header }

func (w *h2Writer) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.status != 0 {
		return
	}
	if b := w.s.body; b != nil && code >= 200 {
		b.expect.Store(false) // the answer comes instead
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) goes now.
		if err := w.s.writeHead(w.encode(code), nil, false); err != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	w.status = code
	w.trailers = trailerKeys(w.header)
	if _, ok := w.header["Date"]; !ok {
		w.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.head {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= 16<<10 {
		if err := w.FlushError(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// FlushError sends the head and what was written (http.ResponseController).
func (w *h2Writer) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var err error
	if !w.sent {
		w.sent = true
		err = w.s.writeHead(w.encode(w.status), w.buf, false)
	} else if len(w.buf) > 0 {
		err = w.s.writeData(w.buf, false)
	}
	w.buf = w.buf[:0]
	return err
}

func (w *h2Writer) Flush() { _ = w.FlushError() }

// EnableFullDuplex: an HTTP/2 stream reads its body while it answers.
func (w *h2Writer) EnableFullDuplex() error { return nil }

// finish ends the answer once the handler returned: the head if not yet
// sent (with Content-Length, the whole body being known), the rest of
// the body, and the trailers.
func (w *h2Writer) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var tr []hpack.HeaderField
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			tr = append(tr, hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				tr = append(tr, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	end := len(tr) == 0
	var err error
	if !w.sent {
		w.sent = true
		if _, ok := w.header["Content-Length"]; !ok && bodyAllowed(w.status) && !w.head && len(w.trailers) == 0 {
			w.header.Set("Content-Length", strconv.Itoa(len(w.buf)))
		}
		err = w.s.writeHead(w.encode(w.status), w.buf, end)
	} else {
		err = w.s.writeData(w.buf, end)
	}
	if err == nil && !end {
		err = w.s.writeHead(func(enc *hpack.Encoder) {
			for _, hf := range tr {
				_ = enc.WriteField(hf)
			}
		}, nil, true)
	}
	if err != nil {
		w.s.hc.resetStream(w.s.id, http2.ErrCodeInternal)
	}
}

// encode encodes a head of the handler's header (its trailers and the
// fields HTTP/2 forbids left out).
func (w *h2Writer) encode(code int) func(*hpack.Encoder) {
	return func(enc *hpack.Encoder) {
		_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(code)})
		for k, vs := range w.header {
			if strings.HasPrefix(k, http.TrailerPrefix) || oneOf([]byte(k), connSpecific) || !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			name := lowerName([]byte(k))
			for _, v := range vs {
				if httpguts.ValidHeaderFieldValue(v) {
					_ = enc.WriteField(hpack.HeaderField{Name: name, Value: v})
				}
			}
		}
	}
}

// bodyAllowed reports whether an answer with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

var _ io.ReadCloser = (*h2Body)(nil)
