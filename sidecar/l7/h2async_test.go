package l7

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"golang.org/x/net/http2"
)

// HTTP/2 requests to another site sent without a goroutine (h2async.go),
// over a real link: a mux session on loopback whose far end relays each
// stream to a raw endpoint, as the far gateway passes its requests on.

// linkFar is the far end of a link: each stream it accepts is relayed to
// the endpoint at addr.
type linkFar struct {
	streams atomic.Int64 // streams accepted
	ended   atomic.Int64 // streams whose relay ended
}

// linkUpstreams routes web to west (over the link), then to the local
// endpoints in local.
type linkUpstreams struct {
	fakeUpstreams
	sess  *mux.Session
	local []string
}

func (u linkUpstreams) Targets(string) ([]Target, model.Pattern, error) {
	ts := []Target{{Key: "site:west", Site: "west", Protocol: model.HTTP}}
	return append(ts, httpTargets(u.local...)...), model.Closest, nil
}

func (u linkUpstreams) DialSite(ctx context.Context, _, _ string, h2 bool) (net.Conn, error) {
	if h2 {
		return nil, fmt.Errorf("no HTTP/2 here")
	}
	return u.sess.Open(ctx)
}

// linkPair runs a mux session pair over loopback TCP until the test
// ends and returns its near end; serve runs on a goroutine for each
// stream the far end accepts, and the test's end waits for them.
func linkPair(t *testing.T, serve func(st *mux.Stream)) *mux.Session {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	near, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	farConn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client, server := mux.Client(near, mux.Config{}), mux.Server(farConn, mux.Config{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		client.Close()
		server.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			st, err := server.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(st) })
		}
	})
	return client
}

// startLink runs a link whose far end relays its streams to addr.
func startLink(t *testing.T, addr string) (*mux.Session, *linkFar) {
	t.Helper()
	far := &linkFar{}
	client := linkPair(t, func(st *mux.Stream) {
		far.streams.Add(1)
		defer far.ended.Add(1)
		defer st.Close()
		ep, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer ep.Close()
		go func() {
			_, _ = io.Copy(ep, st)
			ep.Close() // the near end closed the stream
		}()
		_, _ = io.Copy(st, ep)
	})
	return client, far
}

// asyncWeb runs an engine whose web goes over a link to ep (then to the
// local endpoints), and returns it, its client URL and the link's far end.
func asyncWeb(t *testing.T, ep *rawEndpoint, local ...string) (*accessEngine, string, *linkFar) {
	t.Helper()
	sess, far := startLink(t, ep.addr)
	a, _ := startFastEngine(t, Options{Upstreams: linkUpstreams{sess: sess, local: local}})
	return a, a.listen(t, "web", false, false), far
}

// waitIdle waits until the pool of web's requests to west holds n idle
// link streams: an answer the goroutine passed on may reach the client
// before its stream is back in the pool.
func waitIdle(t *testing.T, a *accessEngine, n int) {
	t.Helper()
	p := a.e.siteH1("web", "west")
	deadline := time.Now().Add(fastWait)
	for {
		p.mu.Lock()
		k := len(p.idle["west"])
		p.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle link streams, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// shapes answers by target: small and whole answers the link's reader
// passes on, and the others (a large body, chunked, an interim answer);
// to HEAD, the head alone.
func shapes(r rawRequest) string {
	a := shapeAnswer(r)
	if r.method == http.MethodHead {
		a = a[:strings.Index(a, "\r\n\r\n")+4]
	}
	return a
}

func shapeAnswer(r rawRequest) string {
	edge := strings.Repeat("e", maxAsyncBody)
	switch r.target {
	case "/small":
		return "HTTP/1.1 200 OK\r\nX-Shape: small\r\nContent-Length: 5\r\n\r\nsmall"
	case "/empty":
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	case "/none":
		return "HTTP/1.1 204 No Content\r\nX-Shape: none\r\n\r\n"
	case "/edge":
		return okAnswer(edge)
	case "/big":
		return okAnswer(edge + "+" + strings.Repeat("b", 40<<10))
	case "/chunked":
		return "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.TrimSuffix(chunked("chunked body", 3, 4), "\r\n") + "X-Sum: 7\r\n\r\n"
	case "/early":
		return "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + okAnswer("late")
	}
	return okAnswer("kilo " + strings.Repeat("k", 1000))
}

// wantShape is what the client gets for target: status and body.
func wantShape(method, target string) (int, string) {
	edge := strings.Repeat("e", maxAsyncBody)
	body := map[string]string{"/small": "small", "/empty": "", "/none": "", "/edge": edge,
		"/big": edge + "+" + strings.Repeat("b", 40<<10), "/chunked": "chunked body", "/early": "late"}[target]
	switch {
	case target == "/none":
		return http.StatusNoContent, ""
	case method == http.MethodHead:
		return http.StatusOK, ""
	case body == "" && target != "/empty":
		return http.StatusOK, "kilo " + strings.Repeat("k", 1000)
	}
	return http.StatusOK, body
}

var shapeTargets = []string{"/small", "/empty", "/none", "/edge", "/big", "/chunked", "/early", "/kilo"}

func checkShape(c *http.Client, method, target string) error {
	req, err := http.NewRequest(method, "http://web"+target, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, target, err)
	}
	status, body := wantShape(method, target)
	if resp.StatusCode != status || string(b) != body {
		return fmt.Errorf("%s %s: %d with %d bytes, want %d with %d", method, target, resp.StatusCode, len(b), status, len(body))
	}
	if target == "/chunked" && resp.Trailer.Get("X-Sum") != "7" {
		return fmt.Errorf("%s %s: trailer %v, want X-Sum: 7", method, target, resp.Trailer)
	}
	if target == "/small" && resp.Header.Get("X-Shape") != "small" {
		return fmt.Errorf("%s %s: head %v, want X-Shape: small", method, target, resp.Header)
	}
	return nil
}

// Small and whole answers are passed on by the link's reader, one after
// another on one link stream (it goes back to the pool); every other
// shape is handed to a goroutine and arrives whole; and all of them at
// once on one client connection.
func TestH2LinkReaderAnswers(t *testing.T) {
	ep := startRawEndpoint(t, says(shapes))
	a, url, far := asyncWeb(t, ep)
	c, dials := h2Client(t, url)
	if err := checkShape(c, http.MethodGet, "/small"); err != nil { // the pool's first stream
		t.Fatal(err)
	}
	waitIdle(t, a, 1)
	passed := func() int64 { return a.e.linkAnswers.Load() }
	before := passed()
	whole := 0
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, target := range []string{"/small", "/empty", "/none", "/edge", "/kilo"} {
			for range 5 {
				if err := checkShape(c, method, target); err != nil {
					t.Fatal(err)
				}
				whole++
			}
		}
	}
	if got := passed() - before; got != int64(whole) {
		t.Errorf("the link's reader passed on %d of %d small, whole answers sent one at a time", got, whole)
	}
	if n := far.streams.Load(); n != 1 {
		t.Errorf("%d link streams for requests one at a time, want 1 (kept in the pool)", n)
	}
	before = passed()
	for _, target := range []string{"/big", "/chunked", "/early"} {
		for range 3 {
			if err := checkShape(c, http.MethodGet, target); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := passed() - before; got != 0 {
		t.Errorf("the link's reader passed on %d answers that are not small and whole", got)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				target := shapeTargets[(g+i)%len(shapeTargets)]
				if err := checkShape(c, http.MethodGet, target); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if dials.Load() != 1 {
		t.Errorf("the client made %d connections, want 1", dials.Load())
	}
}

// A client that resets its stream while the answer is awaited: the link
// stream is closed, not kept, and the connection serves the next request.
func TestH2LinkReaderClientReset(t *testing.T) {
	got, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	ep := startRawEndpoint(t, held(got, release))
	a, url, far := asyncWeb(t, ep)
	c, _ := h2Client(t, url)
	echoed := func(target string) {
		t.Helper()
		resp, body, err := h2Do(c, http.MethodGet, target, nil)
		if err != nil || resp.StatusCode != http.StatusOK || body != "GET "+target+" 0" {
			t.Fatalf("GET %s: %v %q", target, err, body)
		}
	}
	echoed("/a")
	waitIdle(t, a, 1) // /slow goes without a goroutine
	before := a.e.linkAnswers.Load()
	cancelAtEndpoint(t, c, got)
	deadline := time.Now().Add(fastWait)
	for far.ended.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the link stream of the reset request stayed open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	echoed("/b")
	waitIdle(t, a, 1)
	if n := far.streams.Load(); n != 2 {
		t.Errorf("%d link streams, want 2: the reset request's is not used again", n)
	}
	echoed("/c") // on the stream /b's dial put in the pool
	if got := a.e.linkAnswers.Load() - before; got != 1 {
		t.Errorf("the link's reader passed on %d answers, want 1 (the last)", got)
	}
}

// A pooled link stream the far end closed while idle: the request written
// on it gets no answer, and goes again on a new stream (GET may).
func TestH2LinkReaderStaleStream(t *testing.T) {
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		_, err := io.WriteString(c, shapes(r))
		return err == nil && r.target != "/last" // then the endpoint closes
	})
	_, url, far := asyncWeb(t, ep)
	c, _ := h2Client(t, url)
	if err := checkShape(c, http.MethodGet, "/last"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(fastWait)
	for far.ended.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the far end did not close its stream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // its FIN on the way back
	if err := checkShape(c, http.MethodGet, "/small"); err != nil {
		t.Fatal(err)
	}
	if n := len(ep.requests()); n != 2 {
		t.Errorf("the endpoint got %d requests, want 2", n)
	}
}

// A client whose stream window is smaller than the answer's body: the
// body waits for the window on a goroutine and arrives whole.
func TestH2LinkReaderSmallWindow(t *testing.T) {
	ep := startRawEndpoint(t, says(shapes))
	_, url, _ := asyncWeb(t, ep)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 100},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, strings.TrimPrefix(url, "http://"))
		}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: fastWait}
	for range 5 {
		if err := checkShape(c, http.MethodGet, "/kilo"); err != nil {
			t.Fatal(err)
		}
	}
}

// The far site finds no endpoint (Skiff-Undelivered): the request goes to
// the next target, a local endpoint, and the client gets its answer.
func TestH2LinkReaderUndelivered(t *testing.T) {
	far := startRawEndpoint(t, says(func(rawRequest) string {
		return "HTTP/1.1 503 Service Unavailable\r\nSkiff-Undelivered: no_endpoint\r\nContent-Length: 5\r\n\r\nnone\n"
	}))
	local := startRawEndpoint(t, says(echo))
	a, url, _ := asyncWeb(t, far, local.addr)
	c, _ := h2Client(t, url)
	for _, target := range []string{"/a", "/b", "/c"} {
		resp, body, err := h2Do(c, http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || body != "GET "+target+" 0" {
			t.Fatalf("%s: %d %q, want the local endpoint's echo", target, resp.StatusCode, body)
		}
	}
	if n := value(a.m.Retries.WithLabelValues("web")); n != 3 {
		t.Errorf("skiff_http_retries_total{address=web} = %v, want 3", n)
	}
}

// An answer that comes a byte at a time is passed on whole by the link's
// reader, which looks through each byte once (asyncState.scanned, need).
func TestH2LinkReaderTrickle(t *testing.T) {
	body := strings.Repeat("t", 100)
	answer := "HTTP/1.1 200 OK\r\nX-Shape: trickle\r\nContent-Length: 100\r\n\r\n" + body
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		if r.target != "/trickle" {
			return says(shapes)(c, r)
		}
		for i := range len(answer) {
			if _, err := c.Write([]byte{answer[i]}); err != nil {
				return false
			}
			time.Sleep(200 * time.Microsecond)
		}
		return true
	})
	a, url, _ := asyncWeb(t, ep)
	c, _ := h2Client(t, url)
	if err := checkShape(c, http.MethodGet, "/small"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, a, 1)
	before := a.e.linkAnswers.Load()
	resp, got, err := h2Do(c, http.MethodGet, "/trickle", nil)
	if err != nil || resp.StatusCode != http.StatusOK || got != body || resp.Header.Get("X-Shape") != "trickle" {
		t.Fatalf("a trickled answer: %v %v %q", err, resp, got)
	}
	if n := a.e.linkAnswers.Load() - before; n != 1 {
		t.Errorf("the link's reader passed on %d answers, want 1", n)
	}
}

// wholeAnswer fed an answer in pieces of any size says at each piece
// what it says of the same bytes fed at once: looking through only what
// is new loses no head's end and finds none that is not there.
func FuzzWholeAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), uint8(0), true)
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\n"), uint8(2), false)
	f.Add([]byte("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), uint8(1), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), uint8(5), true)
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), uint8(7), true)
	f.Fuzz(func(t *testing.T, b []byte, step uint8, head bool) {
		method := []byte(http.MethodGet)
		if head {
			method = []byte(http.MethodHead)
		}
		// verdict feeds p in pieces until wholeAnswer is not answerMore,
		// and says what it said and of how many bytes.
		verdict := func(p []byte, pieces int) (int, int) {
			x := &fastReq{req: reqHead{method: method}}
			a := &asyncState{}
			for i := 0; i < len(p); {
				i = min(i+pieces, len(p))
				x.head = p[:i]
				if v := x.wholeAnswer(a); v != answerMore {
					return v, i
				}
			}
			return answerMore, len(p)
		}
		n := int(step) + 1
		got, at := verdict(b, n)
		if want, _ := verdict(b[:at], at); got != want {
			t.Fatalf("%q in pieces of %d: %d; at once: %d", b[:at], n, got, want)
		}
	})
}

// The engine stopping while an answer is awaited without a goroutine:
// the link stream is closed, the request ends (its connection's serving
// returns, which waits for every stream), and the client's connection
// closes.
func TestH2LinkReaderEngineStop(t *testing.T) {
	got, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	ep := startRawEndpoint(t, held(got, release))
	sess, far := startLink(t, ep.addr)
	a, cancel := startFastEngine(t, Options{Upstreams: linkUpstreams{sess: sess}})
	r := dialH2(t, a.listen(t, "web", false, false))
	r.handshake()
	if ans := r.answer(r.get("/a")); ans.status != "200" {
		t.Fatalf("first request: %+v", ans)
	}
	waitIdle(t, a, 1)
	r.get("/slow")
	waitFor(t, got, "the request at the endpoint")
	cancel()
	if !r.closed() {
		t.Error("the client's connection stayed open after the engine stopped")
	}
	deadline := time.Now().Add(fastWait)
	for {
		a.e.fast.mu.Lock()
		n := len(a.e.fast.conns)
		a.e.fast.mu.Unlock()
		if n == 0 && far.ended.Load() >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d client connections still served, %d link streams ended", n, far.ended.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that sends requests to another site and reads none of the
// answers, its windows at 2^31-1 so that flow control never holds one
// back: the link's reader queues each small, whole answer without
// waiting, and once more than h2QueueMax waits for the client the
// connection is closed (overflowLocked). The queue never holds more
// than h2QueueMax and one answer, and the engine serves the next client.
func TestH2LinkReaderClientReadsNothing(t *testing.T) {
	body := strings.Repeat("n", maxAsyncBody)
	ep := startRawEndpoint(t, says(func(rawRequest) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}))
	a, url, _ := asyncWeb(t, ep)
	r := dialH2(t, url)
	r.handshake(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	r.check(r.fr.WriteWindowUpdate(0, maxWindow-65535))
	if ans := r.answer(r.get("/warm")); ans.status != "200" || len(ans.body) != len(body) {
		t.Fatalf("first request: %s, %d bytes", ans.status, len(ans.body))
	}
	hc := h2Of(t, a.e)
	state := func() (queued int, err error) {
		hc.wmu.Lock()
		defer hc.wmu.Unlock()
		return len(hc.wbuf), hc.werr
	}
	before, most, sent := a.e.linkAnswers.Load(), 0, 0
	for ; sent < 4000; sent++ {
		waitIdle(t, a, 1) // the answer's link stream is back: the next request goes without a goroutine too
		r.batch = &bytes.Buffer{}
		r.get(fmt.Sprintf("/n/%d", sent))
		frames := r.batch.Bytes()
		r.batch = nil
		_ = r.c.SetWriteDeadline(time.Now().Add(fastWait))
		if _, err := r.c.Write(frames); err != nil {
			break // the server closed the connection
		}
		var err error
		for deadline := time.Now().Add(fastWait); a.e.linkAnswers.Load()-before < int64(sent+1); time.Sleep(100 * time.Microsecond) {
			var queued int
			queued, err = state()
			most = max(most, queued)
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %d: not passed on by the link's reader (%d queued)", sent, queued)
			}
		}
		queued, err2 := state()
		if most = max(most, queued); err != nil || err2 != nil {
			break
		}
	}
	_, err := state()
	if err == nil || !strings.Contains(err.Error(), "does not read") {
		t.Fatalf("after %d answers of %d bytes nobody read: the connection's error is %v, want the client closed for not reading", sent, len(body), err)
	}
	if limit := h2QueueMax + len(body) + 1<<10; most > limit {
		t.Errorf("up to %d bytes queued, more than h2QueueMax and one answer (%d)", most, limit)
	}
	t.Logf("closed after %d answers not read; up to %d bytes queued", sent, most)
	if !r.closed() {
		t.Error("the client's connection stayed open")
	}
	c, _ := h2Client(t, url)
	if resp, got, err := h2Do(c, http.MethodGet, "/next", nil); err != nil || resp.StatusCode != http.StatusOK || got != body {
		t.Fatalf("the next client: %v, %d bytes", err, len(got))
	}
}
