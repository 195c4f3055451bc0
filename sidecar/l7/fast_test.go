package l7

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// fastWait bounds every wait of these tests: a behaviour that is broken
// fails rather than hangs.
const fastWait = 5 * time.Second

// rawRequest is a request a rawEndpoint read.
type rawRequest struct {
	head   string // the head as it came, its blank line included
	method string
	target string
	body   string
	conn   int64 // the connection it came on, from 1
}

// rawEndpoint is a scripted HTTP/1.1 endpoint over plain TCP: it reads
// each request and answer writes the bytes of its answer; answer
// returning false closes the connection.
type rawEndpoint struct {
	addr   string
	conns  atomic.Int64 // connections accepted
	closed atomic.Int64 // connections that ended on a read: the peer closed them
	answer func(c net.Conn, r rawRequest) bool
	mu     sync.Mutex
	reqs   []rawRequest
	open   []net.Conn
}

func startRawEndpoint(t *testing.T, answer func(c net.Conn, r rawRequest) bool) *rawEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := &rawEndpoint{addr: ln.Addr().String(), answer: answer}
	t.Cleanup(func() {
		ln.Close()
		ep.mu.Lock()
		defer ep.mu.Unlock()
		for _, c := range ep.open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ep.mu.Lock()
			ep.open = append(ep.open, c)
			ep.mu.Unlock()
			go ep.serve(c, ep.conns.Add(1))
		}
	}()
	return ep
}

func (ep *rawEndpoint) serve(c net.Conn, n int64) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		r, err := readRawRequest(br, c)
		if err != nil {
			ep.closed.Add(1)
			return
		}
		r.conn = n
		ep.mu.Lock()
		ep.reqs = append(ep.reqs, r)
		ep.mu.Unlock()
		if !ep.answer(c, r) {
			return
		}
	}
}

// readRawRequest reads a request: its head line by line, as it came,
// and its body (Content-Length or chunked). It answers Expect:
// 100-continue.
func readRawRequest(br *bufio.Reader, w io.Writer) (rawRequest, error) {
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			return rawRequest{}, err
		}
		if line == "\r\n" {
			break
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head.String())))
	if err != nil {
		return rawRequest{}, err
	}
	if req.Header.Get("Expect") == "100-continue" {
		_, _ = io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	body := io.LimitReader(br, max(req.ContentLength, 0))
	if len(req.TransferEncoding) > 0 {
		body = httputil.NewChunkedReader(br)
	}
	b, err := io.ReadAll(body)
	return rawRequest{head: head.String(), method: req.Method, target: req.RequestURI, body: string(b)}, err
}

func (ep *rawEndpoint) requests() []rawRequest {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]rawRequest(nil), ep.reqs...)
}

// waitClosed waits until the peer closed n of the endpoint's connections.
func (ep *rawEndpoint) waitClosed(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(fastWait)
	for ep.closed.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the engine closed %d of the endpoint's connections, want %d", ep.closed.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// says answers each request with what script returns, keeping the
// connection.
func says(script func(r rawRequest) string) func(net.Conn, rawRequest) bool {
	return func(c net.Conn, r rawRequest) bool {
		_, err := io.WriteString(c, script(r))
		return err == nil
	}
}

// okAnswer is a 200 answer with a Content-Length body.
func okAnswer(body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// echo answers the request's method, target and body length.
func echo(r rawRequest) string {
	return okAnswer(fmt.Sprintf("%s %s %d", r.method, r.target, len(r.body)))
}

func get(target string) string { return "GET " + target + " HTTP/1.1\r\nHost: web\r\n\r\n" }

// rawClient is a client connection to the engine that writes and reads
// bytes.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// read reads n bytes, or what came before an error or fastWait.
func (rc *rawClient) read(n int) (string, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(fastWait))
	b := make([]byte, n)
	k, err := io.ReadFull(rc.br, b)
	return string(b[:k]), err
}

// expect reads len(want) bytes, which must be want.
func (rc *rawClient) expect(want string) {
	rc.t.Helper()
	got, err := rc.read(len(want))
	if got == want {
		return
	}
	i := 0
	for i < len(got) && got[i] == want[i] {
		i++
	}
	from, to := max(i-80, 0), min(i+80, len(want))
	rc.t.Fatalf("read %d bytes (%v), want %d; from byte %d:\n got %q\nwant %q", len(got), err, len(want), from, got[from:min(to, len(got))], want[from:to])
}

// answer reads an answer and its body.
func (rc *rawClient) answer() (*http.Response, string) {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(fastWait))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading an answer's body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the engine closed the connection (rather than
// keeping it open fastWait); a byte that comes instead fails the test.
func (rc *rawClient) closed() bool {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(fastWait))
	b, err := rc.br.ReadByte()
	if err == nil {
		rc.t.Errorf("a byte %q where the connection should close", b)
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// fastLog is a logger into t that goes quiet once the test ends: the
// engine's goroutines may still log then.
func fastLog(t *testing.T) logr.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(prefix, args)
		}
	}, funcr.Options{})
}

// startFastEngine runs an engine of site east with o until the test
// ends, or until the cancel it returns is called.
func startFastEngine(t *testing.T, o Options) (*accessEngine, context.CancelFunc) {
	t.Helper()
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	o.Self, o.Log = "east", fastLog(t)
	e := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &accessEngine{e: e, m: o.Metrics, ctx: ctx}, cancel
}

func httpTargets(addrs ...string) []Target {
	var ts []Target
	for _, a := range addrs {
		ts = append(ts, Target{Key: a, Endpoint: a, Protocol: model.HTTP})
	}
	return ts
}

// fastWeb runs an engine that routes address web to addrs in order, and
// returns it and the URL of a listener of web's client connections.
func fastWeb(t *testing.T, addrs ...string) (*accessEngine, string) {
	t.Helper()
	a, _ := startFastEngine(t, Options{Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(addrs...)}}})
	return a, a.listen(t, "web", false, false)
}

// 100 GETs one after another on one client connection are all answered
// with the endpoint's bytes unchanged (the fast path served them:
// net/http would add a Date), and the endpoint accepted one connection:
// the pool kept it.
func TestFastKeepAlive(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	for i := range 100 {
		target := fmt.Sprintf("/item/%d?q=%d", i, i)
		rc.send(get(target))
		rc.expect(okAnswer("GET " + target + " 0"))
	}
	if n := ep.conns.Load(); n != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", n)
	}
	if n := len(ep.requests()); n != 100 {
		t.Errorf("the endpoint got %d requests, want 100", n)
	}
}

// Requests written in one Write get their answers in order; the last,
// with Connection: close, is answered saying so and the connection then
// closes.
func TestFastPipelining(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/a") + get("/b") + "GET /c HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
	rc.expect(okAnswer("GET /a 0"))
	rc.expect(okAnswer("GET /b 0"))
	rc.expect("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nGET /c 0")
	if !rc.closed() {
		t.Error("the connection stayed open after an answer to Connection: close")
	}
	if n := ep.conns.Load(); n != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", n)
	}
}

// A request pipelined behind another whose body comes later: its head
// sits in the read buffer after the first request's bytes when the rest
// of its body is read. The endpoint gets it as sent, less the hop's
// field, and the answer is to it.
func TestFastPipelinedBodyLate(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/first") + "POST /late HTTP/1.1\r\nHost: web\r\nKeep-Alive: timeout=5\r\nContent-Length: 10\r\n\r\n01234")
	rc.expect(okAnswer("GET /first 0"))
	rc.send("56789")
	rc.expect(okAnswer("POST /late 10"))
	reqs := ep.requests()
	want := rawRequest{head: "POST /late HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\n", method: "POST", target: "/late", body: "0123456789", conn: 1}
	if len(reqs) != 2 || reqs[1] != want {
		t.Errorf("the endpoint got %+v, want /first then %+v", reqs, want)
	}
}

// chunked encodes body in chunks of the sizes given, in turn.
func chunked(body string, sizes ...int) string {
	var b strings.Builder
	for i := 0; len(body) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// Answers that keep their connection pass on as the endpoint framed
// them, on one client connection and one endpoint connection: a
// Content-Length body; a chunked body with chunk extensions and a
// trailer, byte for byte as it came in pieces; HEAD with a
// Content-Length and no body; 204 and 304; 103 Early Hints before a 200
// (the fast path reads the 103 away, as h1Pool does: the client gets
// the 200).
func TestFastAnswerShapes(t *testing.T) {
	hints := "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
	cases := []struct {
		name, request string
		parts         []string // what the endpoint writes, a pause between each
		want          string   // what the client reads; the parts joined if ""
	}{
		{"length", get("/length"), []string{"HTTP/1.1 200 OK\r\nX-Case: length\r\nContent-Length: 5\r\n\r\nhello"}, ""},
		{"chunked", get("/chunked"), []string{
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Sum\r\n\r\n3;ext=1\r\nab",
			"c\r\n5;na", "me=\"v\"\r\ndefgh\r\n0\r\nSum: 42\r\n", "X-More: y\r\n\r\n"}, ""},
		{"head", "HEAD /head HTTP/1.1\r\nHost: web\r\n\r\n", []string{"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"}, ""},
		{"204", get("/204"), []string{"HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n"}, ""},
		{"304", get("/304"), []string{"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 9\r\n\r\n"}, ""},
		{"103", get("/103"), []string{hints, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints"}, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints"},
		{"after", get("/after"), []string{okAnswer("still here")}, ""},
	}
	parts := map[string][]string{}
	for _, c := range cases {
		parts["/"+c.name] = c.parts
	}
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		for i, p := range parts[r.target] {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := io.WriteString(c, p); err != nil {
				return false
			}
		}
		return true
	})
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	for _, c := range cases {
		rc.send(c.request)
		want := c.want
		if want == "" {
			want = strings.Join(c.parts, "")
		}
		t.Logf("%s: expect %q", c.name, want)
		rc.expect(want)
	}
	if n := ep.conns.Load(); n != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", n)
	}
}

// A body the endpoint ends by closing its connection: the client gets
// the head with Connection: close, the body, then the end of its
// connection.
func TestFastAnswerCloseDelimited(t *testing.T) {
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil ")
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(c, "the end")
		return false
	})
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/"))
	rc.expect("HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\nuntil the end")
	if !rc.closed() {
		t.Error("the client's connection stayed open after a body delimited by the endpoint closing")
	}
}

// An answer whose endpoint connection cannot serve another request: an
// HTTP/1.0 answer (its status line rewritten to HTTP/1.1) and one with
// Connection: close (which is the endpoint's hop's, not passed on). The
// client's connection serves the next request, on a new endpoint
// connection; the engine closed the other.
func TestFastAnswerNotKept(t *testing.T) {
	cases := []struct{ name, answer, want string }{
		{"http10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"},
		{"http10-keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ep := startRawEndpoint(t, says(func(r rawRequest) string {
				if r.target == "/first" {
					return c.answer // the endpoint keeps its connection all the same
				}
				return echo(r)
			}))
			_, url := fastWeb(t, ep.addr)
			rc := dialRaw(t, url)
			rc.send(get("/first"))
			rc.expect(c.want)
			rc.send(get("/next"))
			rc.expect(okAnswer("GET /next 0"))
			ep.waitClosed(t, 1)
			if reqs := ep.requests(); len(reqs) != 2 || reqs[1].conn != 2 {
				t.Errorf("the endpoint got %+v; want /next on a second connection", reqs)
			}
		})
	}
}

// A 1 MiB body, with a Content-Length and chunked, passes intact; the
// endpoint connection serves both.
func TestFastAnswerLarge(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		b.WriteByte(byte('a' + i*7%26))
	}
	body := b.String()
	answers := map[string]string{
		"/length":  okAnswer(body),
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 1, 100, 4096, 70000, 33333, 9),
	}
	ep := startRawEndpoint(t, says(func(r rawRequest) string { return answers[r.target] }))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	for _, target := range []string{"/length", "/chunked", "/length"} {
		rc.send(get(target))
		rc.expect(answers[target])
	}
	if n := ep.conns.Load(); n != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", n)
	}
}

// Answers that cannot be passed on unambiguously are 502; their endpoint
// connection is closed, not reused, and the client's serves on.
func TestFastBadAnswers(t *testing.T) {
	bad := map[string]string{
		"/length-and-chunked": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"/two-lengths":        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"/gzip-chunked":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"/101":                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
		"/status-2000":        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"/status-proto":       "HTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"/status-short":       "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"/bare-lf":            "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	}
	ep := startRawEndpoint(t, says(func(r rawRequest) string {
		if a, ok := bad[r.target]; ok {
			return a // the endpoint keeps its connection: only the engine closes it
		}
		return echo(r)
	}))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	n := int64(0)
	for target := range bad {
		rc.send(get(target))
		if resp, body := rc.answer(); resp.StatusCode != http.StatusBadGateway || resp.Close {
			t.Errorf("%s: answered %d %q (close %v), want 502 on a kept connection", target, resp.StatusCode, body, resp.Close)
		}
		n++
		ep.waitClosed(t, n)
		rc.send(get("/ok"))
		rc.expect(okAnswer("GET /ok 0"))
	}
	if got := ep.conns.Load(); got != n+1 {
		t.Errorf("the endpoint accepted %d connections, want %d: one per bad answer and one more", got, n+1)
	}
}

// A malformed chunk after the head and a good chunk were passed on: the
// client gets them, then its connection closes; the endpoint connection
// is closed too.
func TestFastMalformedChunk(t *testing.T) {
	partial := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
	seen := make(chan struct{})
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		if r.target != "/bad" {
			return says(echo)(c, r)
		}
		_, _ = io.WriteString(c, partial)
		select {
		case <-seen: // the client has the partial answer
		case <-time.After(fastWait):
		}
		_, _ = io.WriteString(c, "zz\r\nmore\r\n0\r\n\r\n")
		return true
	})
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/bad"))
	rc.expect(partial)
	close(seen)
	if !rc.closed() {
		t.Error("the client's connection stayed open after a malformed chunk")
	}
	ep.waitClosed(t, 1)
	rc = dialRaw(t, url)
	rc.send(get("/ok"))
	rc.expect(okAnswer("GET /ok 0"))
	if n := ep.conns.Load(); n != 2 {
		t.Errorf("the endpoint accepted %d connections, want 2", n)
	}
}

// The endpoint gets a request without the hop's fields (Connection and
// the fields it names, Keep-Alive, Proxy-Connection,
// Proxy-Authorization), the client's forwarding fields and skiff's own,
// and every other field verbatim, in order, in its case; a request with
// none of those arrives byte for byte.
func TestFastRequestRewrite(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	cases := []struct{ request, head, body string }{
		{"GET /p?q=1 HTTP/1.1\r\nHost: web\r\nconnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n" +
			"User-AGENT:  raw/1.0 \r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-host: h\r\n" +
			"X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nSkiff-Multicast: all\r\nAccept: */*\r\nX-Dup: a\r\n" +
			"x-dup: b\r\nProxy-Authorization: Basic eA==\r\nskiff-undelivered: x\r\n\r\n",
			"GET /p?q=1 HTTP/1.1\r\nHost: web\r\nUser-AGENT:  raw/1.0 \r\nAccept: */*\r\nX-Dup: a\r\nx-dup: b\r\n\r\n", ""},
		{"POST /form HTTP/1.1\r\nhost: web\r\nContent-Length: 7\r\nKeep-Alive: 1\r\nX-Z:z\r\n\r\na=1&b=2",
			"POST /form HTTP/1.1\r\nhost: web\r\nContent-Length: 7\r\nX-Z:z\r\n\r\n", "a=1&b=2"},
		{"DELETE /x%20y HTTP/1.1\r\nX-First: 1\r\nHOST: web\r\nx-b:c\r\nCookie: a=b; c=d\r\n\r\n", "", ""},
		{"PUT /u HTTP/1.1\r\nHost: web\r\ncontent-length: 3\r\nContent-Type:\ttext/plain\r\n\r\nabc", "", "abc"},
	}
	for i, c := range cases {
		rc.send(c.request)
		if _, body := rc.answer(); !strings.HasSuffix(body, " "+strconv.Itoa(len(c.body))) {
			t.Fatalf("request %d answered %q", i, body)
		}
		head := c.head
		if head == "" {
			head = strings.TrimSuffix(c.request, c.body)
		}
		reqs := ep.requests()
		if got := reqs[len(reqs)-1]; got.head != head || got.body != c.body {
			t.Errorf("request %d: the endpoint got\n%q %q, want\n%q %q", i, got.head, got.body, head, c.body)
		}
	}
}

// On one client connection: a fast GET (the endpoint's bytes unchanged),
// a chunked POST (net/http serves it, and the rest of the connection:
// its answer has net/http's Date), then a GET still answered.
func TestFastHandOff(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/a"))
	rc.expect(okAnswer("GET /a 0"))
	rc.send("POST /chunked HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	resp, body := rc.answer()
	if resp.StatusCode != 200 || body != "POST /chunked 5" || resp.Header.Get("Date") == "" {
		t.Errorf("chunked POST: %d %q %v; want 200 from net/http", resp.StatusCode, body, resp.Header)
	}
	rc.send(get("/b"))
	if resp, body := rc.answer(); resp.StatusCode != 200 || body != "GET /b 0" {
		t.Errorf("GET after the hand-off: %d %q", resp.StatusCode, body)
	}
	if reqs := ep.requests(); len(reqs) != 3 || reqs[1].body != "abcde" {
		t.Errorf("the endpoint got %+v", reqs)
	}
}

// Requests the fast path hands to net/http are served: a body over its
// buffer, and a head over its buffer; the connection serves on.
func TestFastHandOffShapes(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	var fields strings.Builder
	for i := range 60 {
		fmt.Fprintf(&fields, "X-Fill-%02d: %s\r\n", i, strings.Repeat("f", 90))
	}
	cases := []struct{ name, request, want string }{
		{"5KiB body", "POST /big HTTP/1.1\r\nHost: web\r\nContent-Length: 5120\r\n\r\n" + strings.Repeat("b", 5120), "POST /big 5120"},
		{"6KiB head", "GET /fields HTTP/1.1\r\nHost: web\r\n" + fields.String() + "\r\n", "GET /fields 0"},
	}
	for _, c := range cases {
		rc := dialRaw(t, url)
		rc.send(c.request)
		if resp, body := rc.answer(); resp.StatusCode != 200 || body != c.want {
			t.Errorf("%s: %d %q, want 200 %q", c.name, resp.StatusCode, body, c.want)
		}
		rc.send(get("/after"))
		if resp, body := rc.answer(); resp.StatusCode != 200 || body != "GET /after 0" {
			t.Errorf("%s, then a GET: %d %q", c.name, resp.StatusCode, body)
		}
	}
	if reqs := ep.requests(); len(reqs) != 4 || !strings.Contains(reqs[2].head, "X-Fill-59: fff") {
		t.Errorf("the endpoint got %+v; want 4 requests, the third with every X-Fill field", reqs)
	}
}

// A POST with Expect: 100-continue gets 100 Continue, sends its body
// and is answered.
func TestFastExpectContinue(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send("POST /e HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if resp, _ := rc.answer(); resp.StatusCode != http.StatusContinue {
		t.Fatalf("answered %d before the body, want 100", resp.StatusCode)
	}
	rc.send("hello")
	resp, body := rc.answer()
	for resp.StatusCode == http.StatusContinue { // one from the endpoint, passed on, may come too
		resp, body = rc.answer()
	}
	if resp.StatusCode != 200 || body != "POST /e 5" {
		t.Errorf("answered %d %q", resp.StatusCode, body)
	}
}

// A head over the engine's MaxHeaderBytes is answered 431.
func TestFastHeadTooLarge(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	a, _ := startFastEngine(t, Options{Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}, MaxHeaderBytes: 8 << 10})
	rc := dialRaw(t, a.listen(t, "web", false, false))
	head := "GET /huge HTTP/1.1\r\nHost: web\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 100)+"\r\n", 160) + "\r\n"
	go func() { _, _ = io.WriteString(rc.c, head) }() // net/http may stop reading it
	_ = rc.c.SetReadDeadline(time.Now().Add(fastWait))
	resp, err := http.ReadResponse(rc.br, nil) // its body may be cut: net/http closes with the head unread
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a %d-byte head answered %+v, %v; want 431", len(head), resp, err)
	}
	if n := len(ep.requests()); n != 0 {
		t.Errorf("the endpoint got %d requests", n)
	}
}

// A request with Content-Length and Transfer-Encoding after a fast one
// on the same connection: 400 and the connection closed (the framing
// guard applies to what the fast path hands over); the endpoint never
// sees it or the request after it.
func TestFastHandOffFramingGuard(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/first") + "POST /smuggled HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/after"))
	rc.expect(okAnswer("GET /first 0"))
	if resp, body := rc.answer(); resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Errorf("answered %d %q (close %v), want 400 and Connection: close", resp.StatusCode, body, resp.Close)
	}
	if !rc.closed() {
		t.Error("the connection stayed open")
	}
	if reqs := ep.requests(); len(reqs) != 1 {
		t.Errorf("the endpoint got %+v, want /first only", reqs)
	}
}

// A kept-alive endpoint connection the endpoint closed while idle: the
// next GET is sent again on a new connection and answered; a POST in
// the same spot is answered 502 and not sent twice.
func TestFastStaleConnection(t *testing.T) {
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		_, _ = io.WriteString(c, echo(r))
		return false // closed once answered, without saying so
	})
	_, url := fastWeb(t, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/1"))
	rc.expect(okAnswer("GET /1 0"))
	time.Sleep(50 * time.Millisecond) // the endpoint's FIN reaches the pool's end
	rc.send(get("/2"))
	rc.expect(okAnswer("GET /2 0"))
	if n := ep.conns.Load(); n != 2 {
		t.Errorf("the endpoint accepted %d connections, want 2", n)
	}
	time.Sleep(50 * time.Millisecond)
	rc.send("POST /3 HTTP/1.1\r\nHost: web\r\nContent-Length: 1\r\n\r\nx")
	if resp, body := rc.answer(); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST on a stale connection: %d %q, want 502", resp.StatusCode, body)
	}
	posts := 0
	for _, r := range ep.requests() {
		if r.target == "/3" {
			posts++
		}
	}
	if posts > 1 {
		t.Errorf("the endpoint got the POST %d times", posts)
	}
}

// A first target whose dial fails: the request goes to the second, and
// skiff_http_retries_total counts it.
func TestFastDialRetry(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	ep := startRawEndpoint(t, says(echo))
	a, url := fastWeb(t, deadAddr, ep.addr)
	rc := dialRaw(t, url)
	rc.send(get("/r"))
	rc.expect(okAnswer("GET /r 0"))
	if n := value(a.m.Retries.WithLabelValues("web")); n != 1 {
		t.Errorf("skiff_http_retries_total{address=web} = %v, want 1", n)
	}
}

// siteUpstreams routes each address to its targets in order; DialSite
// connects to far, which plays every site's gateway.
type siteUpstreams struct {
	fakeUpstreams
	order map[string][]Target
	far   string
}

func (s siteUpstreams) Targets(address string) ([]Target, model.Pattern, error) {
	return s.order[address], model.Closest, nil
}

func (s siteUpstreams) DialSite(ctx context.Context, _, _ string, h2 bool) (net.Conn, error) {
	if h2 {
		return nil, errors.New("no HTTP/2 here")
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", s.far)
}

// A far site's answer with Skiff-Undelivered sends the request to the
// next target; its short answer is read away and its connection kept.
// With no other target, the client gets 503 with the far site's reason.
func TestFastSiteUndelivered(t *testing.T) {
	far := startRawEndpoint(t, says(func(rawRequest) string {
		return "HTTP/1.1 503 Service Unavailable\r\nSkiff-Undelivered: no_endpoint\r\nContent-Length: 5\r\n\r\nnone\n"
	}))
	ep := startRawEndpoint(t, says(echo))
	west := Target{Key: "site:west", Site: "west", Protocol: model.HTTP}
	up := siteUpstreams{far: far.addr, order: map[string][]Target{
		"web":    {west, httpTargets(ep.addr)[0]},
		"lonely": {west},
	}}
	a, _ := startFastEngine(t, Options{Upstreams: up})
	rc := dialRaw(t, a.listen(t, "web", false, false))
	for _, target := range []string{"/x", "/y"} {
		rc.send(get(target))
		rc.expect(okAnswer("GET " + target + " 0"))
	}
	if n := value(a.m.Retries.WithLabelValues("web")); n != 2 {
		t.Errorf("skiff_http_retries_total{address=web} = %v, want 2", n)
	}
	if got, conns := len(far.requests()), far.conns.Load(); got != 2 || conns != 1 {
		t.Errorf("the far site got %d requests on %d connections, want 2 on 1", got, conns)
	}
	rc = dialRaw(t, a.listen(t, "lonely", false, false))
	rc.send(get("/z"))
	if resp, body := rc.answer(); resp.StatusCode != 503 || resp.Header.Get(UndeliveredHeader) != "no_endpoint" {
		t.Errorf("no target took it: %d %v %q, want 503 and %s: no_endpoint", resp.StatusCode, resp.Header, body, UndeliveredHeader)
	}
}

// An endpoint's own Skiff-Undelivered is removed from its answer, on a
// connection another site opened (ServeSite) and on a client's; the
// request is not sent to the next endpoint.
func TestFastEndpointUndeliveredRemoved(t *testing.T) {
	first := startRawEndpoint(t, says(func(rawRequest) string {
		return "HTTP/1.1 503 Service Unavailable\r\nSkiff-Undelivered: no_endpoint\r\nContent-Length: 4\r\n\r\nbusy"
	}))
	second := startRawEndpoint(t, says(echo))
	a, _ := fastWeb(t, first.addr, second.addr)
	for _, fromSite := range []bool{true, false} {
		rc := dialRaw(t, a.listen(t, "web", false, fromSite))
		rc.send(get("/u"))
		rc.expect("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
	}
	if n := len(second.requests()); n != 0 {
		t.Errorf("the second endpoint got %d requests", n)
	}
}

// held is an endpoint that signals got at each request to /slow and
// answers it once release is closed.
func held(got chan<- struct{}, release <-chan struct{}) func(net.Conn, rawRequest) bool {
	return func(c net.Conn, r rawRequest) bool {
		if r.target == "/slow" {
			got <- struct{}{}
			<-release
			_, err := io.WriteString(c, okAnswer("slow"))
			return err == nil
		}
		return says(echo)(c, r)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(fastWait):
		t.Fatalf("no %s", what)
	}
}

// idleAndBusy starts an engine whose endpoint holds its requests until
// released, and two client connections: idle, whose request was
// answered, and busy, whose request waits at the endpoint.
func idleAndBusy(t *testing.T) (a *accessEngine, ep *rawEndpoint, idle, busy *rawClient, release chan<- struct{}) {
	t.Helper()
	got, rel := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(rel) })
	ep = startRawEndpoint(t, held(got, rel))
	a, url := fastWeb(t, ep.addr)
	idle, busy = dialRaw(t, url), dialRaw(t, url)
	idle.send(get("/a"))
	idle.expect(okAnswer("GET /a 0"))
	busy.send(get("/slow"))
	waitFor(t, got, "request at the endpoint")
	return a, ep, idle, busy, rel
}

// StopKeepAlives closes an idle fast connection; a request under way is
// answered with Connection: close, then its connection closes, and its
// endpoint connection is not kept.
func TestFastStopKeepAlives(t *testing.T) {
	// Called at once: idle's goroutine may not wait for its next request
	// yet, and must close the connection all the same.
	a, ep, idle, busy, release := idleAndBusy(t)
	a.e.StopKeepAlives()
	if !idle.closed() {
		t.Error("StopKeepAlives left an idle connection open")
	}
	release <- struct{}{}
	busy.expect("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
	if !busy.closed() {
		t.Error("the connection stayed open after its answer")
	}
	ep.waitClosed(t, 1) // the pool's one connection, which served both
	if n := ep.conns.Load(); n != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", n)
	}
}

// Shutdown closes idle connections, waits for a request under way at a
// slow endpoint (its answer arrives, saying Connection: close), and
// returns nil.
func TestFastShutdown(t *testing.T) {
	a, _, idle, busy, release := idleAndBusy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*fastWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.e.Shutdown(ctx) }()
	if !idle.closed() {
		t.Error("Shutdown left an idle connection open")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request under way", err)
	default:
	}
	release <- struct{}{}
	busy.expect("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
	if !busy.closed() {
		t.Error("the connection stayed open after its answer")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(fastWait):
		t.Error("Shutdown did not return once the request was answered")
	}
}

// The engine stopping (Run's context ends) closes a client connection
// whose request waits at a slow endpoint, and that endpoint connection.
func TestFastEngineStop(t *testing.T) {
	got := make(chan struct{}, 1)
	endpointClosed := make(chan struct{})
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		got <- struct{}{}
		_ = c.SetReadDeadline(time.Now().Add(2 * fastWait))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			close(endpointClosed)
		}
		return false
	})
	a, cancel := startFastEngine(t, Options{Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}})
	rc := dialRaw(t, a.listen(t, "web", false, false))
	rc.send(get("/slow"))
	waitFor(t, got, "request at the endpoint")
	cancel()
	if !rc.closed() {
		t.Error("the client's connection stayed open after the engine stopped")
	}
	waitFor(t, endpointClosed, "close of the endpoint connection")
}

// waitLines waits for n access-log lines.
func waitLines(t *testing.T, w *lineWriter, n int) []AccessLine {
	t.Helper()
	deadline := time.Now().Add(fastWait)
	for {
		ls := w.lines(t)
		if len(ls) >= n || time.Now().After(deadline) {
			if len(ls) != n {
				t.Fatalf("%d access-log lines, want %d", len(ls), n)
			}
			return ls
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The access-log lines of fast-path requests: method, path
// (percent-decoded, without its query), status, bytes in and out, site;
// for a 200 and for a 503 (no endpoint).
func TestFastAccessLog(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	w := &lineWriter{}
	a, _ := startFastEngine(t, Options{AccessLog: w, Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}})
	web := dialRaw(t, a.listen(t, "web", true, false))
	web.send(get("/caf%C3%A9/x%20y?secret=1"))
	web.expect(okAnswer("GET /caf%C3%A9/x%20y?secret=1 0"))
	web.send("POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc")
	web.expect(okAnswer("POST /p 3"))
	gone := dialRaw(t, a.listen(t, "gone", true, false))
	gone.send("DELETE /x HTTP/1.1\r\nHost: gone\r\n\r\n")
	resp, body := gone.answer()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("no endpoint: answered %d %q", resp.StatusCode, body)
	}
	want := map[string]AccessLine{
		"GET": {Address: "web", Method: "GET", Path: "/café/x y", Proto: "HTTP/1.1", Status: 200, Site: "east",
			BytesOut: int64(len("GET /caf%C3%A9/x%20y?secret=1 0"))},
		"POST":   {Address: "web", Method: "POST", Path: "/p", Proto: "HTTP/1.1", Status: 200, Site: "east", BytesIn: 3, BytesOut: int64(len("POST /p 3"))},
		"DELETE": {Address: "gone", Method: "DELETE", Path: "/x", Proto: "HTTP/1.1", Status: 503, Site: "none", BytesOut: int64(len(body))},
	}
	for _, l := range waitLines(t, w, 3) {
		if host, _, err := net.SplitHostPort(l.Client); err != nil || host != "127.0.0.1" {
			t.Errorf("%s: client %q", l.Method, l.Client)
		}
		if _, err := time.Parse(accessTimeFormat, l.TS); err != nil || l.DurationMS <= 0 {
			t.Errorf("%s: ts %q, duration_ms %v", l.Method, l.TS, l.DurationMS)
		}
		l.TS, l.DurationMS, l.Client = "", 0, ""
		if l != want[l.Method] {
			t.Errorf("line\n got %+v\nwant %+v", l, want[l.Method])
		}
	}
}

// bytes_out of a chunked answer is the same whichever path served it:
// the fast path (a GET) and net/http's proxy (a POST with a chunked
// body, handed off), which counts the body's bytes, not its chunk
// framing.
func TestFastAccessLogChunked(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n"
	ep := startRawEndpoint(t, says(func(rawRequest) string { return answer }))
	w := &lineWriter{}
	a, _ := startFastEngine(t, Options{AccessLog: w, Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}})
	rc := dialRaw(t, a.listen(t, "web", true, false))
	rc.send(get("/fast"))
	rc.expect(answer)
	rc.send("POST /slow HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
	if resp, body := rc.answer(); resp.StatusCode != 200 || body != "hello world" {
		t.Fatalf("handed-off request: %d %q", resp.StatusCode, body)
	}
	for _, l := range waitLines(t, w, 2) {
		if l.BytesOut != int64(len("hello world")) {
			t.Errorf("%s %s: bytes_out %d, want %d", l.Method, l.Path, l.BytesOut, len("hello world"))
		}
	}
}

// release and abortCur race when a request's client goes away just as
// its answer ends: the endpoint connection went back to its pool and may
// already carry another request, so the abort must not close it. The
// other order, an abort first, closes it and keeps it out of the pool.
func TestAbortAfterReleaseLeavesPooledConn(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	p := newTestPool()
	ctx := context.Background()
	uc, _, err := p.get(ctx, ep.addr)
	if err != nil {
		t.Fatal(err)
	}
	x := &fastReq{e: &Engine{}}
	x.cur.Store(uc)
	x.release(uc, true)
	x.abortCur() // too late: uc is the pool's
	again, reused, err := p.get(ctx, ep.addr)
	if err != nil || again != uc || !reused {
		t.Fatalf("after release and a late abort the pool gave %p (reused %v, %v), want the released %p", again, reused, err, uc)
	}
	if _, err := io.WriteString(again.bw, get("/1")); err != nil {
		t.Fatal(err)
	}
	if err := again.bw.Flush(); err != nil {
		t.Fatalf("a late abort closed the pooled connection: %v", err)
	}
	resp, err := http.ReadResponse(again.br, nil)
	if err != nil {
		t.Fatalf("a late abort closed the pooled connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "GET /1 0" {
		t.Errorf("answer %q, want %q", body, "GET /1 0")
	}

	x.cur.Store(again)
	x.abortCur() // the client went away while the request was under way
	x.release(again, true)
	if n := len(p.idle[ep.addr]); n != 0 {
		t.Errorf("release after an abort put the closed connection back: %d idle", n)
	}
	if _, err := again.conn.Write([]byte("x")); err == nil {
		t.Error("the aborted request's endpoint connection is still open")
	}
}
