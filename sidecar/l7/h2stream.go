package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Stream is one request of an HTTP/2 client, and the clientSide of
// its answer when it takes the fast path.
type h2Stream struct {
	hc *h2Conn
	id uint32
	// cancel ends the context of the request's handler (the slow path),
	// once it has one (under hc.mu).
	cancel context.CancelFunc
	// done is the stream's Done channel (it is the fast path's
	// context), made when first asked for (under hc.mu).
	done chan struct{}
	f    *http2.MetaHeadersFrame // the request's headers
	// declared is the body's Content-Length; -1 without one.
	declared int64
	// gone is set once nothing more may be written on the stream (it was
	// reset, or the connection ended): checked as its frames are queued,
	// under the queue's lock, where reset is under mu.
	gone atomic.Bool

	// Under hc.mu (the stream's goroutine reads fx without it).
	// fx is the request on the fast path, while it is under way.
	fx         *fastReq
	sendWin    int64
	reset      bool  // RST_STREAM sent or received, or the connection ended: nothing more goes out
	err        error // why
	body       *h2Body
	recvWin    int64 // what the client may still send on the stream
	recvDone   int64 // bytes of the body read, not yet given back
	received   int64
	clientDone bool // the client's side ended: END_STREAM, or a reset
}

// A stream is the context of its request on the fast path: done once
// it ends (endLocked), as a context.WithCancel of the connection's would
// be, without one's allocations and its registration with the
// connection's context, a mutex all streams share (16 % of a gateway's
// allocated bytes under h2load). Its Done channel is made only for a
// wait that needs it (a dial).

func (s *h2Stream) Deadline() (time.Time, bool) { return time.Time{}, false }

func (s *h2Stream) Done() <-chan struct{} {
	s.hc.mu.Lock()
	defer s.hc.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.reset {
			close(s.done)
		}
	}
	return s.done
}

func (s *h2Stream) Err() error {
	if s.gone.Load() {
		return context.Canceled
	}
	return nil
}

func (s *h2Stream) Value(key any) any { return s.hc.ctx.Value(key) }

// connSpecific are fields HTTP/2 forbids (RFC 9113, 8.2.2); TE may
// only say trailers.
var connSpecific = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"}

// onHeaders starts a stream, or ends one with its trailers.
func (hc *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	if f.StreamID%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "stream %d: an even stream from a client", f.StreamID)
	}
	hc.mu.Lock()
	s, err := hc.headersLocked(f)
	hc.mu.Unlock()
	if s != nil {
		s.start()
	}
	return err
}

// headersLocked acts on HEADERS (hc.mu held) and returns the stream they
// opened, if they did; its goroutine counts in hc.wg already.
func (hc *h2Conn) headersLocked(f *http2.MetaHeadersFrame) (*h2Stream, error) {
	id := f.StreamID
	if s := hc.streams[id]; s != nil {
		return nil, hc.trailersLocked(s, f)
	}
	if id <= hc.lastID {
		return nil, connErr(http2.ErrCodeProtocol, "stream %d: HEADERS on a stream below one already opened", id)
	}
	hc.lastID = id
	switch {
	case hc.away:
		return nil, nil // after GOAWAY: not taken; the client may send it again elsewhere
	case hc.active.Load() >= h2MaxStreams:
		hc.queue(false, func() { _ = hc.wfr.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
		return nil, nil
	}
	declared, ok := checkRequest(f)
	if !ok {
		hc.queue(false, func() { _ = hc.wfr.WriteRSTStream(id, http2.ErrCodeProtocol) })
		return nil, nil
	}
	s := &h2Stream{hc: hc, id: id, f: f, declared: declared, sendWin: hc.initWin, recvWin: h2StreamWindow}
	if f.StreamEnded() {
		s.clientDone = true
	} else {
		s.body = &h2Body{s: s}
		s.body.cond.L = &hc.mu
	}
	hc.streams[id] = s
	hc.active.Add(1)
	hc.wg.Add(1)
	return s, nil
}

// start serves a new stream's request: sent from the connection's reader
// and answered from the link's (h2async.go) when it can, else on a
// goroutine of its own.
func (s *h2Stream) start() {
	if s.body == nil && !s.f.Truncated && s.sendAsync() {
		return
	}
	s.hc.e.o.Go(s.serve)
}

// trailersLocked ends the body of s with the trailers in f.
func (hc *h2Conn) trailersLocked(s *h2Stream, f *http2.MetaHeadersFrame) error {
	switch {
	case s.clientDone:
		hc.resetLocked(s, http2.ErrCodeStreamClosed)
		return nil
	case !f.StreamEnded():
		return connErr(http2.ErrCodeProtocol, "stream %d: a second HEADERS that does not end the stream", s.id)
	}
	s.clientDone = true
	if s.declared >= 0 && s.received != s.declared {
		hc.resetLocked(s, http2.ErrCodeProtocol)
		return nil
	}
	b := s.body
	b.trailer = http.Header{}
	for _, hf := range f.RegularFields() {
		b.trailer.Add(textproto.CanonicalMIMEHeaderKey(hf.Name), hf.Value)
	}
	b.endLocked(io.EOF)
	return nil
}

// checkRequest checks what RFC 9113 (8.3.1, 8.2.2) asks of a request's
// fields that x/net's Framer does not check, and returns its declared
// Content-Length (-1 without one).
func checkRequest(f *http2.MetaHeadersFrame) (int64, bool) {
	method, path, scheme := f.PseudoValue("method"), f.PseudoValue("path"), f.PseudoValue("scheme")
	switch {
	case method == "" || f.PseudoValue("protocol") != "":
		return 0, false // extended CONNECT was not offered
	case method == http.MethodConnect && (path != "" || scheme != "" || f.PseudoValue("authority") == ""):
		return 0, false
	case method != http.MethodConnect && (path == "" || scheme == ""):
		return 0, false
	}
	for _, hf := range f.Fields {
		if v := hf.Value; v != "" && (isBlank(v[0]) || isBlank(v[len(v)-1])) {
			return 0, false // RFC 9113, 8.2.1: HTTP/1.1 would read it otherwise
		}
	}
	declared := int64(-1)
	for _, hf := range f.RegularFields() {
		name := []byte(hf.Name)
		switch {
		case oneOf(name, connSpecific):
			return 0, false
		case hf.Name == "te" && hf.Value != "trailers":
			return 0, false
		case hf.Name == "content-length":
			n, ok := parseLength([]byte(hf.Value))
			if !ok || (declared >= 0 && n != declared) {
				return 0, false
			}
			declared = n
		}
	}
	if f.StreamEnded() && declared > 0 {
		return 0, false
	}
	return declared, true
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// serve answers the stream's request.
func (s *h2Stream) serve() {
	hc := s.hc
	defer hc.wg.Done()
	defer hc.streamDone(s)
	defer s.recoverHandler()
	if s.f.Truncated {
		s.own(http.StatusRequestHeaderFieldsTooLarge, "", "skiff: request header fields too large")
		return
	}
	if s.body == nil && s.fast() {
		return
	}
	s.slow()
}

// recoverHandler resets the stream of a handler that panicked (deferred
// by the stream's goroutine).
func (s *h2Stream) recoverHandler() {
	if r := recover(); r != nil {
		hc := s.hc
		if r != http.ErrAbortHandler {
			hc.e.log.Error(fmt.Errorf("%v", r), "http2 handler panic", "address", hc.info.address)
		}
		hc.resetStream(s.id, http2.ErrCodeInternal)
	}
}

// streamDone forgets a stream whose goroutine returned. A client still
// sending its body is told to stop (RST_STREAM NO_ERROR, RFC 9113, 8.1).
func (hc *h2Conn) streamDone(s *h2Stream) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !s.clientDone && !s.reset {
		id := s.id
		hc.queue(false, func() { _ = hc.wfr.WriteRSTStream(id, http2.ErrCodeNo) })
	}
	s.endLocked(errStreamDone)
	delete(hc.streams, s.id)
	if hc.active.Add(-1) == 0 && hc.away && !hc.closed {
		hc.closeWhenWrittenLocked()
	}
}

var errStreamDone = fmt.Errorf("the stream's answer ended")

// endLocked ends s: nothing more is written to it, its request's body
// fails with err, its context is cancelled (hc.mu held).
func (s *h2Stream) endLocked(err error) {
	s.gone.Store(true)
	if !s.reset {
		s.reset, s.err = true, err
		if s.done != nil {
			close(s.done)
		}
	}
	s.clientDone = true
	if s.body != nil {
		s.body.dropLocked(err)
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.fx != nil {
		// After cancel: the exchange looks at the context once it has
		// stored the connection.
		s.fx.abortCur()
	}
}

// fast serves a request without a body on the fast path; false if it
// does not take it (nothing was written then).
func (s *h2Stream) fast() bool {
	hc := s.hc
	x := s.fastRequest()
	if x == nil {
		return false
	}
	defer recycleFast(x)
	// A reset closes the endpoint connection in use (endLocked).
	hc.mu.Lock()
	s.fx = x
	hc.mu.Unlock()
	v := x.serveRequest(s)
	hc.mu.Lock()
	s.fx = nil
	hc.mu.Unlock()
	return v != fastHandOff
}

// fastRequest is the fast path's request of the stream's headers, its
// buffers taken (raw, out, head); nil if the fast path's parser does not
// take the HTTP/1.1 head they make.
func (s *h2Stream) fastRequest() *fastReq {
	hc := s.hc
	x := fastReqs.Get().(*fastReq)
	// The field lists and the metric series looked up last are kept.
	*x = fastReq{e: hc.e, info: hc.info, client: s, series: x.series,
		req: reqHead{fields: x.req.fields[:0]}, resp: respHead{fields: x.resp.fields[:0]}}
	raw, ok := appendH1Request(takeBuf(), s.f)
	x.raw, x.out, x.head = raw, takeBuf(), takeBuf()
	if !ok || parseRequestHead(raw, &x.req) != headTake || x.req.size != len(raw) {
		recycleFast(x)
		return nil
	}
	return x
}

// recycleFast gives back a request of fastRequest's and its buffers.
func recycleFast(x *fastReq) {
	dropBuf(x.raw)
	dropBuf(x.out)
	dropBuf(x.head)
	*x = fastReq{series: x.series, req: reqHead{fields: x.req.fields[:0]}, resp: respHead{fields: x.resp.fields[:0]}}
	fastReqs.Put(x)
}

// fastReqs keep the requests of HTTP/2 streams on the fast path, and the
// field lists their heads were parsed into.
var fastReqs = sync.Pool{New: func() any { return new(fastReq) }}

// appendH1Request appends the HTTP/1.1 head of the request in f: its
// line, Host (from :authority, else host), its fields with their names
// in canonical case, and the cookie fields as one (RFC 9113, 8.2.3).
// The fast path's parser then checks it as a client's.
func appendH1Request(b []byte, f *http2.MetaHeadersFrame) ([]byte, bool) {
	host := requestHost(f)
	if host == "" {
		return b, false
	}
	b = append(b, f.PseudoValue("method")...)
	b = append(b, ' ')
	b = append(b, f.PseudoValue("path")...)
	b = append(b, " HTTP/1.1\r\n"...)
	cookies := 0
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "host":
			continue // below
		case "cookie":
			cookies++
			continue
		case "te":
			continue // trailers: the hop's own
		}
		b = appendCanonical(b, hf.Name)
		b = append(b, ": "...)
		b = append(b, hf.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Host: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if cookies > 0 {
		b = append(b, "Cookie: "...)
		b = appendCookies(b, f)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return b, true
}

// requestHost is an HTTP/2 request's host, as net/http's server takes
// it: :authority, else its host field.
func requestHost(f *http2.MetaHeadersFrame) string {
	if a := f.PseudoValue("authority"); a != "" {
		return a
	}
	for _, hf := range f.RegularFields() {
		if hf.Name == "host" {
			return hf.Value
		}
	}
	return ""
}

// appendCookies appends the values of a request's cookie fields joined
// with "; ", one field's worth (RFC 9113, 8.2.3).
func appendCookies(b []byte, f *http2.MetaHeadersFrame) []byte {
	n := 0
	for _, hf := range f.RegularFields() {
		if hf.Name == "cookie" {
			if n > 0 {
				b = append(b, "; "...)
			}
			b = append(b, hf.Value...)
			n++
		}
	}
	return b
}

// appendCanonical appends a lower-case field name in canonical case
// (content-type: Content-Type), as net/http would write it.
func appendCanonical(b []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = c == '-'
		b = append(b, c)
	}
	return b
}

// answer passes on an endpoint's answer as HTTP/2 frames.
func (s *h2Stream) answer(uc *h1Conn) (fastVerdict, error) {
	x := s.fx
	h := &x.resp
	fields := s.encodeAnswer
	var err error
	switch {
	case h.bodyless(x.req.method):
		x.release(uc, true)
		err = s.writeHead(fields, nil, true)
	case h.length >= 0 && int64(uc.br.Buffered()) >= h.length && h.length <= 16<<10:
		body, _ := uc.br.Peek(int(h.length))
		err = s.writeHead(fields, body, true)
		_, _ = uc.br.Discard(int(h.length))
		x.release(uc, true)
		x.sent = h.length
	default:
		if err = s.writeHead(fields, nil, false); err == nil {
			err = s.passBody(uc)
		}
		if err != nil {
			uc.conn.Close()
		}
	}
	if err != nil {
		// The answer was cut: the client learns it from RST_STREAM.
		s.hc.e.log.V(1).Info("answer cut", "address", x.plan.address, "error", err.Error())
		s.hc.resetStream(s.id, http2.ErrCodeInternal)
	}
	return fastKeep, nil
}

// passBody passes an answer's body as it comes, after its head: by
// Content-Length (uc is kept), chunked (with its trailer), or until the
// endpoint closes.
func (s *h2Stream) passBody(uc *h1Conn) error {
	x := s.fx
	h := &x.resp
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	var src io.Reader = uc.br
	switch {
	case h.length >= 0:
		src = io.LimitReader(uc.br, h.length)
	case h.chunked:
		src = httputil.NewChunkedReader(uc.br)
	}
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			x.sent += int64(n)
			last := h.length >= 0 && x.sent == h.length
			if err := s.writeData((*buf)[:n], last); err != nil {
				return err
			}
			if last {
				break
			}
		}
		if err == io.EOF && h.length < 0 {
			if !h.chunked {
				if err := s.writeData(nil, true); err != nil {
					return err
				}
			}
			break
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read answer body: %w", err)
		}
	}
	switch {
	case h.length >= 0:
		x.release(uc, true)
		return nil
	case h.chunked:
		defer uc.conn.Close()
		return s.passTrailer(uc.br)
	}
	uc.conn.Close()
	return nil
}

// passTrailer reads a chunked answer's trailer (at most 4 KiB) and ends
// the stream with it.
func (s *h2Stream) passTrailer(br *bufio.Reader) error {
	tr, err := textproto.NewReader(bufio.NewReader(io.LimitReader(br, 4<<10))).ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("read answer trailer: %w", err)
	}
	if len(tr) == 0 {
		return s.writeData(nil, true)
	}
	return s.writeHead(func(enc *hpack.Encoder) {
		for k, vs := range tr {
			if oneOf([]byte(k), hopHeaders) || oneOf([]byte(k), skiffHeaders) {
				continue
			}
			for _, v := range vs {
				_ = enc.WriteField(hpack.HeaderField{Name: lowerName([]byte(k)), Value: v})
			}
		}
	}, nil, true)
}

// encodeAnswer encodes the head of the answer in fx.resp.
func (s *h2Stream) encodeAnswer(enc *hpack.Encoder) {
	h := &s.fx.resp
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(h.status)})
	for _, f := range h.fields {
		if f.drop || fieldIs(f.name, "Transfer-Encoding") {
			continue
		}
		_ = enc.WriteField(hpack.HeaderField{Name: lowerName(f.name), Value: string(f.value)})
	}
}

// own writes an answer of skiff's own, as http.Error writes it.
func (s *h2Stream) own(code int, reason, msg string) fastVerdict {
	body := msg + "\n"
	err := s.writeHead(func(enc *hpack.Encoder) {
		_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(code)})
		_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/plain; charset=utf-8"})
		_ = enc.WriteField(hpack.HeaderField{Name: "x-content-type-options", Value: "nosniff"})
		_ = enc.WriteField(hpack.HeaderField{Name: "date", Value: time.Now().UTC().Format(http.TimeFormat)})
		if reason != "" {
			_ = enc.WriteField(hpack.HeaderField{Name: lowerName([]byte(UndeliveredHeader)), Value: reason})
		}
		_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	}, []byte(body), true)
	if x := s.fx; x != nil && err == nil {
		x.sent = int64(len(body))
	}
	if err != nil {
		s.hc.resetStream(s.id, http2.ErrCodeInternal)
	}
	return fastKeep
}

func (s *h2Stream) proto() string  { return "HTTP/2.0" }
func (s *h2Stream) remote() string { return s.hc.c.RemoteAddr().String() }

// writeHead queues the stream's HEADERS (encode encodes its fields), and
// body as DATA if given, ending the stream with end. The head and a body
// the windows have room for go in one queueing.
func (s *h2Stream) writeHead(encode func(*hpack.Encoder), body []byte, end bool) error {
	hc := s.hc
	n := 0
	if len(body) > 0 {
		n = s.tryWindow(len(body))
	}
	headEnd := end && len(body) == 0
	dataEnd := end && n == len(body)
	gone := false
	err := hc.queue(true, func() { gone = !s.headFramesLocked(encode, body[:n], headEnd, dataEnd) })
	switch {
	case gone:
		return s.ended(n)
	case err != nil || n == len(body):
		return err
	}
	return s.writeData(body[n:], end)
}

// headFramesLocked appends the stream's HEADERS (encode encodes its
// fields), ending the stream with headEnd, and data as DATA if any,
// ending it with dataEnd, to the queue (wmu held); false, with nothing
// encoded (the HPACK state stays the client's), once nothing more may
// be written on the stream.
func (s *h2Stream) headFramesLocked(encode func(*hpack.Encoder), data []byte, headEnd, dataEnd bool) bool {
	hc := s.hc
	if s.gone.Load() {
		return false
	}
	hc.hbuf = hc.hbuf[:0]
	encode(hc.enc)
	hc.writeBlockLocked(s.id, hc.hbuf, headEnd)
	if len(data) > 0 {
		_ = hc.wfr.WriteData(s.id, dataEnd, data)
	}
	return true
}

// ended gives back the window taken for n bytes that were not sent, and
// returns why the stream ended.
func (s *h2Stream) ended(n int) error {
	hc := s.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.sendWin += int64(n)
	hc.fcond.Broadcast()
	if s.err == nil {
		return net.ErrClosed
	}
	return s.err
}

// writeBlockLocked queues a header block as HEADERS and CONTINUATION
// frames within the client's frame size (wmu held).
func (hc *h2Conn) writeBlockLocked(id uint32, block []byte, end bool) {
	max := int(hc.maxFrame.Load())
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		if first {
			_ = hc.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
		} else {
			_ = hc.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
		first = false
	}
}

// writeData queues p as DATA frames as the windows allow, the last
// ending the stream with end.
func (s *h2Stream) writeData(p []byte, end bool) error {
	hc := s.hc
	for {
		n := 0
		if len(p) > 0 {
			var err error
			if n, err = s.window(len(p)); err != nil {
				return err
			}
		}
		chunk, last := p[:n], end && n == len(p)
		if n > 0 || last {
			gone := false
			err := hc.queue(true, func() {
				if gone = s.gone.Load(); !gone {
					_ = hc.wfr.WriteData(s.id, last, chunk)
				}
			})
			if gone {
				return s.ended(n)
			}
			if err != nil {
				return err
			}
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// window waits until the windows let up to n bytes go on the stream,
// and takes what they let go (at most a frame).
func (s *h2Stream) window(n int) (int, error) {
	hc := s.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for {
		if s.reset {
			return 0, s.err
		}
		if w := s.takeLocked(n); w > 0 {
			return w, nil
		}
		hc.fcond.Wait()
	}
}

// tryWindow takes what the windows let go now of n bytes.
func (s *h2Stream) tryWindow(n int) int {
	s.hc.mu.Lock()
	defer s.hc.mu.Unlock()
	if s.reset {
		return 0
	}
	return s.takeLocked(n)
}

func (s *h2Stream) takeLocked(n int) int {
	hc := s.hc
	w := min(int64(n), s.sendWin, hc.sendWin, int64(hc.maxFrame.Load()))
	if w <= 0 {
		return 0
	}
	s.sendWin -= w
	hc.sendWin -= w
	return int(w)
}

// statuses are the :status values, made once.
var statuses = func() (s [600]string) {
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusString(code int) string {
	if code >= 100 && code < len(statuses) {
		return statuses[code]
	}
	return strconv.Itoa(code)
}

// commonFields are answer field names in HTTP/2's lower case, so that
// the usual ones cost no allocation.
var commonFields = []string{
	"content-type", "content-length", "date", "server", "cache-control", "etag", "last-modified",
	"vary", "location", "set-cookie", "content-encoding", "x-content-type-options", "accept-ranges",
	"expires", "age", "trailer", "grpc-status", "grpc-message", "content-security-policy",
}

// lowerName is a field name in lower case.
func lowerName(name []byte) string {
	for _, k := range commonFields {
		if fieldIs(name, k) {
			return k
		}
	}
	b := make([]byte, len(name))
	for i, c := range name {
		b[i] = lower(c)
	}
	return string(b)
}
