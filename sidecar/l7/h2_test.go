package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 front end (h2conn.go, h2stream.go, h2slow.go) with a real
// client: x/net's Transport over cleartext (prior knowledge). The
// hostile client's tests are in h2hostile_test.go.

// h2Client is an HTTP/2 client (net/http's, over cleartext with prior
// knowledge) whose every connection goes to url whatever a request's URL
// says, so that http://web/... has :authority web; dials counts its TCP
// connections.
func h2Client(t *testing.T, url string) (c *http.Client, dials *atomic.Int64) {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	dials = &atomic.Int64{}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: fastWait}, dials
}

// h2Do sends a request for http://web+target and reads its answer whole.
func h2Do(c *http.Client, method, target string, body io.Reader) (*http.Response, string, error) {
	req, err := http.NewRequest(method, "http://web"+target, body)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// 200 GETs at once on one client connection are each answered with
// their own endpoint's answer; the client dialed once (every stream went
// on the connection it opened first); the endpoint got each as an
// HTTP/1.1 request of the method and target sent, with one Host, the
// request's authority.
func TestH2ManyStreams(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	c, dials := h2Client(t, url)
	if resp, body, err := h2Do(c, "GET", "/first", nil); err != nil || resp.StatusCode != 200 || body != "GET /first 0" {
		t.Fatalf("first GET: %v %q %v", resp, body, err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			target := fmt.Sprintf("/item/%d?q=%d", i, i)
			resp, body, err := h2Do(c, "GET", target, nil)
			if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "GET "+target+" 0" {
				t.Errorf("GET %s: %v %q %v", target, resp, body, err)
			}
		})
	}
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Errorf("the client dialed %d connections, want 1", n)
	}
	reqs := ep.requests()
	if len(reqs) != 201 {
		t.Fatalf("the endpoint got %d requests, want 201", len(reqs))
	}
	for _, r := range reqs {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(r.head)))
		if err != nil || req.Proto != "HTTP/1.1" || req.Host != "web" || strings.Count(strings.ToLower(r.head), "\r\nhost:") != 1 ||
			r.method != "GET" || !strings.HasPrefix(r.head, "GET "+r.target+" HTTP/1.1\r\n") {
			t.Errorf("the endpoint got %q (%v)", r.head, err)
		}
	}
}

// The endpoint's answers of every framing reach an HTTP/2 client whole:
// a Content-Length body larger than what comes with the head, a chunked
// body and its trailer, a body the endpoint ends by closing, a 204, and
// a HEAD's answer with a Content-Length and no body.
func TestH2AnswerShapes(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 100<<10/16)
	chunkedBig := chunked(big, 1, 4096, 70000, 333)
	cases := []struct {
		name, method, answer string
		wantStatus           int
		wantBody             string
		wantLength           int64
		wantTrailer          string // Body-Sum
	}{
		{"length", "GET", okAnswer(big), 200, big, int64(len(big)), ""},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Body-Sum\r\n\r\n" +
			strings.TrimSuffix(chunkedBig, "\r\n") + "Body-Sum: x\r\n\r\n", 200, big, -1, "x"},
		{"close", "GET", "HTTP/1.1 200 OK\r\nX-Case: close\r\n\r\nuntil the end", 200, "until the end", -1, ""},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n", 204, "", 0, ""},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "", 5, ""},
	}
	answers := map[string]string{}
	for _, c := range cases {
		answers["/"+c.name] = c.answer
	}
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		a := answers[r.target]
		if _, err := io.WriteString(c, a); err != nil {
			return false
		}
		return !strings.HasPrefix(a, "HTTP/1.1 200 OK\r\nX-Case: close")
	})
	_, url := fastWeb(t, ep.addr)
	client, _ := h2Client(t, url)
	for _, c := range cases {
		resp, body, err := h2Do(client, c.method, "/"+c.name, nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if resp.StatusCode != c.wantStatus || body != c.wantBody || resp.ContentLength != c.wantLength {
			t.Errorf("%s: %d, %d bytes (%.40q), length %d; want %d, %d bytes, length %d", c.name, resp.StatusCode,
				len(body), body, resp.ContentLength, c.wantStatus, len(c.wantBody), c.wantLength)
		}
		if got := resp.Trailer.Get("Body-Sum"); got != c.wantTrailer {
			t.Errorf("%s: trailer Body-Sum %q, want %q (trailer %v)", c.name, got, c.wantTrailer, resp.Trailer)
		}
	}
}

// A POST of 1 MiB (more than the stream's and the connection's windows)
// goes through the engine's handler and reaches the endpoint whole; its
// answer comes back.
func TestH2PostBody(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, url := fastWeb(t, ep.addr)
	c, _ := h2Client(t, url)
	body := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	resp, got, err := h2Do(c, "POST", "/upload", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 200 || got != "POST /upload "+strconv.Itoa(len(body)) {
		t.Fatalf("POST: %v %q %v", resp, got, err)
	}
	reqs := ep.requests()
	if len(reqs) != 1 || len(reqs[0].body) != len(body) || sha256.Sum256([]byte(reqs[0].body)) != sha256.Sum256(body) {
		t.Errorf("the endpoint got %d requests; want one with the %d bytes sent", len(reqs), len(body))
	}
}

// An HTTP/2 request's access-log line says HTTP/2.0, on the fast path (a
// GET) and through the engine's handler (a POST).
func TestH2AccessLog(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	w := &lineWriter{}
	a, _ := startFastEngine(t, Options{AccessLog: w, Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}})
	c, _ := h2Client(t, a.listen(t, "web", true, false))
	if resp, body, err := h2Do(c, "GET", "/caf%C3%A9?secret=1", nil); err != nil || resp.StatusCode != 200 || body != "GET /caf%C3%A9?secret=1 0" {
		t.Fatalf("GET: %v %q %v", resp, body, err)
	}
	waitLines(t, w, 1)
	if resp, body, err := h2Do(c, "POST", "/p", strings.NewReader("abc")); err != nil || resp.StatusCode != 200 || body != "POST /p 3" {
		t.Fatalf("POST: %v %q %v", resp, body, err)
	}
	want := []AccessLine{
		{Address: "web", Method: "GET", Path: "/café", Proto: "HTTP/2.0", Status: 200, Site: "east", BytesOut: int64(len("GET /caf%C3%A9?secret=1 0"))},
		{Address: "web", Method: "POST", Path: "/p", Proto: "HTTP/2.0", Status: 200, Site: "east", BytesIn: 3, BytesOut: int64(len("POST /p 3"))},
	}
	for i, l := range waitLines(t, w, 2) {
		if host, _, err := net.SplitHostPort(l.Client); err != nil || host != "127.0.0.1" {
			t.Errorf("%s: client %q", l.Method, l.Client)
		}
		l.TS, l.DurationMS, l.Client = "", 0, ""
		if l != want[i] {
			t.Errorf("line %d\n got %+v\nwant %+v", i, l, want[i])
		}
	}
}

// A request the client cancels (RST_STREAM) while its endpoint holds it
// gets the line AccessLine documents for a client that went away before
// any answer: status 499, on the fast path as through net/http.
func TestH2AccessLogClientReset(t *testing.T) {
	got, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	ep := startRawEndpoint(t, held(got, release))
	w := &lineWriter{}
	a, _ := startFastEngine(t, Options{AccessLog: w, Upstreams: fakeUpstreams{map[string][]Target{"web": httpTargets(ep.addr)}}})
	c, _ := h2Client(t, a.listen(t, "web", true, false))
	cancelAtEndpoint(t, c, got)
	l := waitLines(t, w, 1)[0]
	if l.Status != 499 || l.Path != "/slow" || l.Proto != "HTTP/2.0" {
		t.Errorf("line %+v; want status 499 for /slow", l)
	}
}

// cancelAtEndpoint sends GET /slow, cancels it once the endpoint got it
// (the client resets the stream), and checks that no answer came.
func cancelAtEndpoint(t *testing.T, c *http.Client, got <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://web/slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, got, "request at the endpoint")
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled request was answered")
	}
}

// FuzzH2Request checks the fast path's HTTP/1.1 form of an HTTP/2
// request against net/http: a request checkRequest accepts has no value
// with whitespace at either end (RFC 9113, 8.2.1: malformed, and
// HTTP/1.1 would lose it); if appendH1Request writes its head and the
// fast path's parser takes it whole, http.ReadRequest reads it as the
// same method, target and host, with every field's value (the cookie
// fields as one, 8.2.3).
func FuzzH2Request(f *testing.F) {
	f.Add("GET", "/", "web", "accept", "*/*", "cookie", "a=1", "cookie", "b=2")
	f.Add("POST", "/items?id=7&x=%20", "web:8080", "content-type", "text/plain", "content-length", "0", "user-agent", "curl/8.5")
	f.Add("GET", "/caf%C3%A9", "", "host", "web", "x-dup", "a", "x-dup", "b")
	f.Add("DELETE", "/x", "web", "te", "trailers", "x-forwarded-for", "1.2.3.4", "accept-language", "en, fr;q=0.5")
	f.Add("HEAD", "/h", "[::1]:80", "if-none-match", `"v1"`, "cookie", "c=3", "x-a", "")
	f.Add("OPTIONS", "*", "web", "connection", "close", "upgrade", "h2c", "transfer-encoding", "chunked")
	f.Fuzz(func(t *testing.T, method, path, authority, n1, v1, n2, v2, n3, v3 string) {
		checkH2Request(t, method, path, authority, n1, v1, n2, v2, n3, v3)
	})
}

// checkH2Request is FuzzH2Request's check of one request: its pseudo
// fields, then its fields as name, value pairs (an empty name is none).
func checkH2Request(t *testing.T, method, path, authority string, fields ...string) {
	f, ok := h2RequestFrame(method, path, authority, fields...)
	if !ok {
		return // the Framer refuses it, as it would the client's
	}
	if _, ok := checkRequest(f); !ok {
		return
	}
	for _, hf := range f.Fields {
		if strings.Trim(hf.Value, " \t") != hf.Value {
			t.Fatalf("checkRequest takes %s: %q, a value that starts or ends with whitespace: malformed (RFC 9113, 8.2.1)", hf.Name, hf.Value)
		}
	}
	raw, ok := appendH1Request(nil, f)
	var h reqHead
	if !ok || parseRequestHead(raw, &h) != headTake || h.size != len(raw) {
		return // not the fast path's
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("the fast path takes %q, net/http: %v", raw, err)
	}
	host := authority
	var cookies []string
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "host":
			if host == "" {
				host = hf.Value
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
		case "te":
		default:
			if !slices.Contains(req.Header.Values(hf.Name), hf.Value) {
				t.Fatalf("field %q: %q; net/http read %q from %q", hf.Name, hf.Value, req.Header.Values(hf.Name), raw)
			}
		}
	}
	if req.Method != method || req.RequestURI != path || req.Host != host {
		t.Fatalf("%q %q host %q; net/http read %q %q host %q from %q", method, path, host, req.Method, req.RequestURI, req.Host, raw)
	}
	if want := strings.Join(cookies, "; "); len(cookies) > 0 && (len(req.Header["Cookie"]) != 1 || req.Header.Get("Cookie") != want) {
		t.Fatalf("cookies %q; net/http read %q from %q", want, req.Header["Cookie"], raw)
	}
}

// h2RequestFrame is the HEADERS frame, ending its stream, of a request
// with those fields, as the server's Framer reads it: false if it
// refuses it, or it is over 64 KiB (the engine answers 431).
func h2RequestFrame(method, path, authority string, fields ...string) (*http2.MetaHeadersFrame, bool) {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	pairs := []string{":method", method, ":scheme", "http"}
	if authority != "" {
		pairs = append(pairs, ":authority", authority)
	}
	if path != "" {
		pairs = append(pairs, ":path", path)
	}
	pairs = append(pairs, fields...)
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != "" {
			_ = enc.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]})
		}
	}
	var wire bytes.Buffer
	fr := http2.NewFramer(&wire, &wire)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 64 << 10
	err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	if err != nil {
		return nil, false
	}
	frame, err := fr.ReadFrame()
	if err != nil {
		return nil, false
	}
	mh, ok := frame.(*http2.MetaHeadersFrame)
	if !ok || mh.Truncated {
		return nil, false
	}
	return mh, true
}

// h2Wait waits until done says yes, or fails the test after fastWait.
func h2Wait(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(fastWait)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, fastWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
