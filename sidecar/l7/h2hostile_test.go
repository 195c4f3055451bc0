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
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 front end with a hostile client, which writes its frames by
// hand: frames out of place, malformed requests, floods, a client that
// does not read.

// h2Raw is a client connection that writes HTTP/2 frames by hand and
// reads the server's.
type h2Raw struct {
	t     *testing.T
	c     net.Conn
	fr    *http2.Framer
	enc   *hpack.Encoder
	block bytes.Buffer
	batch *bytes.Buffer // where frames go instead of c, if not nil
	next  uint32        // the next stream to open
}

// rawOut sends the Framer's frames to the connection, or to the batch.
type rawOut struct{ r *h2Raw }

func (w rawOut) Write(p []byte) (int, error) {
	if w.r.batch != nil {
		return w.r.batch.Write(p)
	}
	_ = w.r.c.SetWriteDeadline(time.Now().Add(fastWait))
	return w.r.c.Write(p)
}

// dialH2 connects to url and sends HTTP/2's preface.
func dialH2(t *testing.T, url string) *h2Raw {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &h2Raw{t: t, c: c, next: 1}
	r.fr = http2.NewFramer(rawOut{r}, bufio.NewReader(c))
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.block)
	if _, err := (rawOut{r}).Write(h2Preface); err != nil {
		t.Fatal(err)
	}
	return r
}

// handshake sends the client's SETTINGS and reads the server's, and the
// server's acknowledgement of its own.
func (r *h2Raw) handshake(settings ...http2.Setting) {
	r.t.Helper()
	r.check(r.fr.WriteSettings(settings...))
	theirs, acked := false, false
	for !theirs || !acked {
		switch f := r.frame().(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				acked = true
			} else {
				theirs = true
				r.check(r.fr.WriteSettingsAck())
			}
		case *http2.WindowUpdateFrame:
		default:
			r.t.Fatalf("during the SETTINGS exchange: %v", f)
		}
	}
}

func (r *h2Raw) check(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame reads the server's next frame, within fastWait.
func (r *h2Raw) frame() http2.Frame {
	r.t.Helper()
	f, err := r.read()
	if err != nil {
		r.t.Fatalf("read a frame: %v", err)
	}
	return f
}

func (r *h2Raw) read() (http2.Frame, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(fastWait))
	return r.fr.ReadFrame()
}

// headers opens (or ends) stream id with the fields of kv, name then
// value; end ends the client's side.
func (r *h2Raw) headers(id uint32, end bool, kv ...string) {
	r.t.Helper()
	r.block.Reset()
	for i := 0; i < len(kv); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	r.check(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block.Bytes(), EndStream: end, EndHeaders: true}))
	if id%2 == 1 {
		r.next = max(r.next, id+2)
	}
}

// reqFields are the pseudo fields of a GET of web's path.
func reqFields(path string) []string {
	return []string{":method", "GET", ":scheme", "http", ":authority", "web", ":path", path}
}

// get sends a GET of path on the next stream and returns its id.
func (r *h2Raw) get(path string) uint32 {
	r.t.Helper()
	id := r.next
	r.headers(id, true, reqFields(path)...)
	return id
}

// h2Answer is what came back on a stream.
type h2Answer struct {
	status  string
	header  http.Header
	body    string
	trailer http.Header
	reset   bool // RST_STREAM ended it
	code    http2.ErrCode
}

// answer reads frames until stream id ends (those of other streams are
// passed over), giving back the window of its DATA.
func (r *h2Raw) answer(id uint32) h2Answer {
	r.t.Helper()
	var a h2Answer
	for {
		f := r.frame()
		if f.Header().StreamID != id {
			r.other(f)
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			h := http.Header{}
			for _, hf := range f.RegularFields() {
				h.Add(hf.Name, hf.Value)
			}
			if a.status == "" {
				a.status, a.header = f.PseudoValue("status"), h
			} else {
				a.trailer = h
			}
			if f.StreamEnded() {
				return a
			}
		case *http2.DataFrame:
			a.body += string(f.Data())
			if f.StreamEnded() {
				return a
			}
			if n := uint32(f.Length); n > 0 {
				// The server may be done with the connection already.
				_ = r.fr.WriteWindowUpdate(0, n)
				_ = r.fr.WriteWindowUpdate(id, n)
			}
		case *http2.RSTStreamFrame:
			a.reset, a.code = true, f.ErrCode
			return a
		case *http2.WindowUpdateFrame:
		default:
			r.t.Fatalf("stream %d: %v", id, f)
		}
	}
}

// other takes a frame that came while another stream was awaited: a
// GOAWAY fails the test, a PING is acknowledged.
func (r *h2Raw) other(f http2.Frame) {
	r.t.Helper()
	switch f := f.(type) {
	case *http2.GoAwayFrame:
		r.t.Fatalf("GOAWAY %v (last stream %d): %q", f.ErrCode, f.LastStreamID, f.DebugData())
	case *http2.PingFrame:
		if !f.IsAck() {
			r.check(r.fr.WritePing(true, f.Data))
		}
	}
}

// getOK sends a GET of path until it is not refused (REFUSED_STREAM:
// the server has as many streams as it takes) and checks its answer is
// the echo endpoint's.
func (r *h2Raw) getOK(path string) {
	r.t.Helper()
	deadline := time.Now().Add(fastWait)
	for {
		id := r.get(path)
		a := r.answer(id)
		if a.reset && a.code == http2.ErrCodeRefusedStream && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if a.status != "200" || a.body != "GET "+path+" 0" {
			r.t.Fatalf("GET %s on stream %d: %+v", path, id, a)
		}
		return
	}
}

// goAway reads frames until the server's GOAWAY.
func (r *h2Raw) goAway() *http2.GoAwayFrame {
	r.t.Helper()
	for {
		if f, ok := r.frame().(*http2.GoAwayFrame); ok {
			return f
		}
	}
}

// closed reports whether the server closed the connection within
// fastWait (frames may come first).
func (r *h2Raw) closed() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(fastWait))
	for {
		if _, err := r.fr.ReadFrame(); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// h2Of is the server of the engine's one HTTP/2 connection.
func h2Of(t *testing.T, e *Engine) *h2Conn {
	t.Helper()
	var hc *h2Conn
	h2Wait(t, "HTTP/2 connection", func() bool {
		e.fast.mu.Lock()
		defer e.fast.mu.Unlock()
		for fc := range e.fast.conns {
			if hc = fc.h2.Load(); hc != nil {
				return true
			}
		}
		return false
	})
	return hc
}

// streamsDone waits until none of hc's streams' goroutines runs.
func streamsDone(t *testing.T, hc *h2Conn) {
	t.Helper()
	h2Wait(t, "end of the streams", func() bool { return hc.active.Load() == 0 })
}

// Frames a server must refuse: out of place or over the bounds (RFC
// 9113, 3.4, 5.1, 5.1.1, 6.9.1) end the connection with GOAWAY and the
// error's code; a malformed request (8.1.1, 8.2.2, 8.3.1) is a stream
// error, RST_STREAM PROTOCOL_ERROR, after which the connection serves
// the next request.
func TestH2ProtocolErrors(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	cases := []struct {
		name    string
		send    func(r *h2Raw)
		conn    bool          // a connection error
		code    http2.ErrCode // of the GOAWAY
		noHello bool          // no SETTINGS exchange first
	}{
		{name: "first frame not SETTINGS", noHello: true, conn: true, code: http2.ErrCodeProtocol,
			send: func(r *h2Raw) { r.check(r.fr.WritePing(false, [8]byte{1})) }},
		{name: "DATA on an idle stream", conn: true, code: http2.ErrCodeProtocol,
			send: func(r *h2Raw) { r.check(r.fr.WriteData(1, true, []byte("x"))) }},
		{name: "HEADERS on an even stream", conn: true, code: http2.ErrCodeProtocol,
			send: func(r *h2Raw) { r.headers(2, true, reqFields("/even")...) }},
		{name: "connection window over 2^31-1", conn: true, code: http2.ErrCodeFlowControl,
			send: func(r *h2Raw) { r.check(r.fr.WriteWindowUpdate(0, maxWindow)) }},
		{name: "connection field", send: func(r *h2Raw) { r.headers(1, true, append(reqFields("/c"), "connection", "keep-alive")...) }},
		{name: "no :path", send: func(r *h2Raw) { r.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "web") }},
		{name: "te: gzip", send: func(r *h2Raw) { r.headers(1, true, append(reqFields("/te"), "te", "gzip")...) }},
		{name: "content-length 5, 3 bytes", send: func(r *h2Raw) {
			r.headers(1, false, append(reqFields("/cl"), "content-length", "5")...)
			r.check(r.fr.WriteData(1, true, []byte("abc")))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialH2(t, url)
			if !c.noHello {
				r.handshake()
			}
			c.send(r)
			if c.conn {
				if f := r.goAway(); f.ErrCode != c.code {
					t.Errorf("GOAWAY %v (%q), want %v", f.ErrCode, f.DebugData(), c.code)
				}
				if !r.closed() {
					t.Error("the connection stayed open after GOAWAY")
				}
				return
			}
			if a := r.answer(1); !a.reset || a.code != http2.ErrCodeProtocol {
				t.Errorf("stream 1: %+v, want RST_STREAM PROTOCOL_ERROR", a)
			}
			r.getOK("/after")
		})
	}
	for _, r := range ep.requests() {
		if r.target != "/after" && r.target != "/cl" {
			t.Errorf("the endpoint got %s %s", r.method, r.target)
		}
	}
}

// holdingEndpoint echoes every request but those to the held targets,
// which it never answers: it waits until the engine closes their
// connection.
func holdingEndpoint(t *testing.T, held ...string) *rawEndpoint {
	return startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		if !slices.Contains(held, r.target) {
			return says(echo)(c, r)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * fastWait)) // until the engine closes it
		_, _ = c.Read(make([]byte, 1))
		return false
	})
}

// Once a stream is reset, by the client or by the server, the server
// sends nothing more on it (RFC 9113, 5.1: no frame but PRIORITY on a
// closed stream), whatever its request was doing: waiting at an endpoint
// on the fast path, or in the engine's handler with its body.
func TestH2NoFramesAfterReset(t *testing.T) {
	ep := holdingEndpoint(t, "/slow", "/post")
	a, url := fastWeb(t, ep.addr)
	r := dialH2(t, url)
	r.handshake()
	held := func() int { return len(ep.requests()) }
	cases := []struct {
		name string
		send func() uint32 // returns the stream reset
	}{
		{"client reset, fast path", func() uint32 {
			n := held()
			id := r.get("/slow")
			h2Wait(t, "request at the endpoint", func() bool { return held() > n })
			r.check(r.fr.WriteRSTStream(id, http2.ErrCodeCancel))
			return id
		}},
		{"client reset, handler", func() uint32 {
			id, n := r.next, held()
			r.headers(id, false, ":method", "POST", ":scheme", "http", ":authority", "web", ":path", "/post")
			r.check(r.fr.WriteData(id, true, []byte("ab")))
			h2Wait(t, "request at the endpoint", func() bool { return held() > n })
			r.check(r.fr.WriteRSTStream(id, http2.ErrCodeCancel))
			return id
		}},
		{"server reset, handler", func() uint32 {
			id := r.next
			r.headers(id, false, append(reqFields("/cl"), "content-length", "5")...)
			r.check(r.fr.WriteData(id, true, []byte("abc")))
			if a := r.answer(id); !a.reset {
				t.Errorf("stream %d: %+v, want RST_STREAM", id, a)
			}
			return id
		}},
	}
	hc := h2Of(t, a.e)
	for _, c := range cases {
		id := c.send()
		streamsDone(t, hc)
		// Whatever the stream queued is before the PING's acknowledgement.
		r.check(r.fr.WritePing(false, [8]byte{7}))
		for {
			f := r.frame()
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				break
			}
			if f.Header().StreamID == id {
				t.Errorf("%s: %v on stream %d after its reset", c.name, f.Header().Type, id)
			}
		}
	}
	r.getOK("/after")
}

// The cookie fields of a request reach the endpoint as one Cookie line,
// joined with "; " (RFC 9113, 8.2.3), on the fast path (a GET) and
// through the engine's handler (a request with a body).
func TestH2Cookies(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	r := dialH2(t, url)
	r.handshake()
	r.headers(1, true, append(reqFields("/fast"), "cookie", "a=1", "x-other", "o", "cookie", "b=2")...)
	if a := r.answer(1); a.status != "200" || a.body != "GET /fast 0" {
		t.Fatalf("GET: %+v", a)
	}
	r.headers(3, false, ":method", "POST", ":scheme", "http", ":authority", "web", ":path", "/slow", "cookie", "a=1", "cookie", "b=2")
	r.check(r.fr.WriteData(3, true, []byte("xy")))
	if a := r.answer(3); a.status != "200" || a.body != "POST /slow 2" {
		t.Fatalf("POST: %+v", a)
	}
	for _, rr := range ep.requests() {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(rr.head)))
		if err != nil || len(req.Header["Cookie"]) != 1 || req.Header.Get("Cookie") != "a=1; b=2" {
			t.Errorf("the endpoint got %q (%v), want one Cookie: a=1; b=2", rr.head, err)
		}
	}
}

// A request whose fields are over the engine's MaxHeaderBytes is
// answered 431 on its stream, and not sent; the connection serves the
// next request.
func TestH2HeadersTooLarge(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	a, _ := startFastEngine(t, Options{Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}, MaxHeaderBytes: 4 << 10})
	r := dialH2(t, a.listen(t, "web", false, false))
	r.handshake()
	fields := reqFields("/huge")
	for i := range 3 { // 3 × 1,500 bytes: each under the 4 KiB a string may have
		fields = append(fields, "x-fill-"+strconv.Itoa(i), strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789-_", 40)[:1500])
	}
	id := r.next
	r.headers(id, true, fields...)
	if a := r.answer(id); a.status != "431" {
		t.Errorf("a header list over 4 KiB: %+v, want 431", a)
	}
	r.getOK("/after")
	if reqs := ep.requests(); len(reqs) != 1 || reqs[0].target != "/after" {
		t.Errorf("the endpoint got %+v, want /after only", reqs)
	}
}

// Rapid reset (CVE-2023-44487): 3,000 streams opened and reset, their
// requests for an endpoint that holds them (500 reset once there, 2,500
// reset at once), leave nothing behind: the connection answers a GET
// after them, and the goroutines come back to what they were before
// (none is left per reset stream, none for the endpoint connections of
// the requests held).
func TestH2RapidReset(t *testing.T) {
	ep := holdingEndpoint(t, "/slow")
	_, url := fastWeb(t, ep.addr)
	r := dialH2(t, url)
	r.handshake()
	r.getOK("/before")
	base := runtime.NumGoroutine()
	var ids []uint32
	r.send(func() {
		for range 500 {
			ids = append(ids, r.get("/slow"))
		}
	})
	h2Wait(t, "500 requests at the endpoint", func() bool { return len(ep.requests()) == 501 })
	r.send(func() {
		for _, id := range ids {
			r.check(r.fr.WriteRSTStream(id, http2.ErrCodeCancel))
		}
		for range 2500 {
			r.check(r.fr.WriteRSTStream(r.get("/slow"), http2.ErrCodeCancel))
		}
	})
	r.getOK("/after")
	deadline := time.Now().Add(fastWait)
	for n := runtime.NumGoroutine(); n > base+10; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after the resets, %d before:\n%.8000s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send writes the frames write makes in one Write, within fastWait.
func (r *h2Raw) send(write func()) {
	r.t.Helper()
	r.batch = &bytes.Buffer{}
	write()
	out := r.batch.Bytes()
	r.batch = nil
	_ = r.c.SetWriteDeadline(time.Now().Add(fastWait))
	if _, err := r.c.Write(out); err != nil {
		r.t.Fatalf("write %d bytes: %v", len(out), err)
	}
}

// A client that lets the server send without bound (its windows at
// 2^31-1) and reads nothing, while two answers of 64 MiB come: the
// frames queued stay within h2QueueWait and two frames. (One answer's
// goroutine writes the queue itself and waits on the client; the other's
// must wait for the queue to shrink.)
func TestH2SlowReader(t *testing.T) {
	const size = 64 << 20
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		_ = c.SetWriteDeadline(time.Now().Add(4 * fastWait))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				break
			}
		}
		return false
	})
	a, url := fastWeb(t, ep.addr)
	r := dialH2(t, url)
	r.handshake(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	r.check(r.fr.WriteWindowUpdate(0, maxWindow-65535))
	r.get("/big/1")
	r.get("/big/2")
	hc := h2Of(t, a.e)
	h2Wait(t, "requests at the endpoint", func() bool { return len(ep.requests()) == 2 })
	limit, most := h2QueueWait+2*(16<<10+9), 0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		hc.wmu.Lock()
		most = max(most, len(hc.wbuf))
		hc.wmu.Unlock()
	}
	active := hc.active.Load()
	if most > limit || active != 2 {
		t.Errorf("queued up to %d bytes (at most %d), %d streams under way (want the 2 answers)", most, limit, active)
	}
	t.Logf("queued up to %d bytes", most)
	r.c.Close()
	streamsDone(t, hc)
}

// A client that sends PINGs and reads none of their acknowledgements:
// the server closes the connection rather than queue them without
// bound.
func TestH2PingFlood(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	r := dialH2(t, url)
	r.handshake()
	var pings bytes.Buffer
	fr := http2.NewFramer(&pings, nil)
	for range 4096 {
		_ = fr.WritePing(false, [8]byte{1, 2, 3})
	}
	var werr error
	sent := 0
	for ; sent < 2_000_000 && werr == nil; sent += 4096 {
		// A deadline per write, not for all: under the race detector on a
		// loaded machine the server reads the flood slowly, but reads it.
		_ = r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, werr = r.c.Write(pings.Bytes())
	}
	if errors.Is(werr, os.ErrDeadlineExceeded) {
		t.Fatalf("the server took no more PINGs after %d, and kept the connection", sent)
	}
	_ = r.c.SetReadDeadline(time.Now().Add(fastWait))
	_, rerr := io.Copy(io.Discard, r.c)
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Errorf("the connection stayed open after %d PINGs not read (write: %v)", sent, werr)
	}
	t.Logf("%d PINGs; write: %v; read: %v", sent, werr, rerr)
}

// Shutdown tells an HTTP/2 client GOAWAY (NO_ERROR, its last stream),
// waits for the stream under way, whose answer arrives, then closes the
// connection and returns nil: with the stream's request at a local
// endpoint, and sent to another site without a goroutine (h2async.go).
func TestH2Shutdown(t *testing.T) {
	for _, link := range []bool{false, true} {
		t.Run(fmt.Sprintf("link=%v", link), func(t *testing.T) { testH2Shutdown(t, link) })
	}
}

func testH2Shutdown(t *testing.T, link bool) {
	got, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	ep := startRawEndpoint(t, held(got, release))
	var a *accessEngine
	var url string
	if link {
		a, url, _ = asyncWeb(t, ep)
	} else {
		a, url = fastWeb(t, ep.addr)
	}
	r := dialH2(t, url)
	r.handshake()
	if link { // a first request leaves a link stream in the pool
		if ans := r.answer(r.get("/a")); ans.status != "200" {
			t.Fatalf("first request: %+v", ans)
		}
		waitIdle(t, a, 1)
	}
	before := a.e.linkAnswers.Load()
	id := r.get("/slow")
	waitFor(t, got, "request at the endpoint")
	ctx, cancel := context.WithTimeout(context.Background(), 2*fastWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.e.Shutdown(ctx) }()
	if f := r.goAway(); f.ErrCode != http2.ErrCodeNo || f.LastStreamID != id {
		t.Errorf("GOAWAY %v, last stream %d; want NO_ERROR, %d", f.ErrCode, f.LastStreamID, id)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream under way", err)
	default:
	}
	free()
	if a := r.answer(id); a.status != "200" || a.body != "slow" {
		t.Errorf("stream %d: %+v, want 200 slow", id, a)
	}
	if n := a.e.linkAnswers.Load() - before; link && n != 1 {
		t.Errorf("the link's reader passed on %d answers, want the last", n)
	}
	if !r.closed() {
		t.Error("the connection stayed open after its last stream")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(fastWait):
		t.Error("Shutdown did not return once the stream was answered")
	}
}
