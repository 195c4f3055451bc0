package l7

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
)

// A link stream that holds its endpoint connection between requests
// (hold.go), over a real link: a mux session on loopback whose far end
// is the engine's ServeSite, as on a far site's gateway, and raw HTTP/1.1
// written into the near end's streams, as the origin's pool writes it.

// siteWeb runs an engine whose web goes to the endpoints at addrs, and a
// link into it: each stream the returned session opens is served as a
// link stream of site east's requests for web.
func siteWeb(t *testing.T, addrs ...string) (*accessEngine, *mux.Session, context.CancelFunc) {
	t.Helper()
	return siteWebWith(t, Options{}, addrs...)
}

// siteWebWith is siteWeb with the engine's options o.
func siteWebWith(t *testing.T, o Options, addrs ...string) (*accessEngine, *mux.Session, context.CancelFunc) {
	t.Helper()
	o.Upstreams = fakeUpstreams{map[string][]Target{"web": httpTargets(addrs...)}}
	a, cancel := startFastEngine(t, o)
	return a, linkPair(t, func(st *mux.Stream) { a.e.ServeSite(a.ctx, st, "web", "east") }), cancel
}

// openSite opens a link stream into the far engine.
func openSite(t *testing.T, sess *mux.Session) *rawClient {
	t.Helper()
	st, err := sess.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &rawClient{t: t, c: st, br: bufio.NewReader(st)}
}

// armed counts the engine's link streams that hold an endpoint
// connection and wait on it.
func armed(a *accessEngine) int {
	a.e.fast.mu.Lock()
	defer a.e.fast.mu.Unlock()
	n := 0
	for fc := range a.e.fast.conns {
		if fc.hold != nil && fc.hold.state.Load() == holdArmed {
			n++
		}
	}
	return n
}

// waitArmed waits until n of the engine's link streams hold an endpoint
// connection and wait on it.
func waitArmed(t *testing.T, a *accessEngine, n int) {
	t.Helper()
	for deadline := time.Now().Add(fastWait); armed(a) < n; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d link streams hold their endpoint connection, want %d", armed(a), n)
		}
	}
}

// armedSite runs siteWeb with one echoing endpoint and a link stream
// whose first request, GET /a, was answered, and waits until the stream
// holds its endpoint connection.
func armedSite(t *testing.T) (*accessEngine, *rawEndpoint, *rawClient, context.CancelFunc) {
	t.Helper()
	ep := startRawEndpoint(t, says(echo))
	a, sess, cancel := siteWeb(t, ep.addr)
	rc := openSite(t, sess)
	rc.send(get("/a"))
	rc.expect(okAnswer("GET /a 0"))
	waitArmed(t, a, 1)
	return a, ep, rc, cancel
}

// Requests one after another on a link stream: after the first, the
// link's reader sends each on the endpoint connection the stream holds,
// every answer comes back unchanged, and the endpoint sees one
// connection.
func TestHoldSendsFromTheLinkReader(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	a, sess, _ := siteWeb(t, ep.addr)
	rc := openSite(t, sess)
	const n = 100
	for i := range n {
		if i > 0 {
			waitArmed(t, a, 1)
		}
		target := "/r" + strings.Repeat("x", i%7)
		rc.send(get(target))
		rc.expect(okAnswer("GET " + target + " 0"))
	}
	if got := a.e.heldRequests.Load(); got != n-1 {
		t.Errorf("the link's reader sent %d requests, want %d", got, n-1)
	}
	if c := ep.conns.Load(); c != 1 {
		t.Errorf("the endpoint accepted %d connections, want 1", c)
	}
}

// An endpoint that closes its connection after each answer (without
// saying so, as one whose idle timeout is short): the held connection is
// closed or found closed, and every request is answered all the same,
// on a new connection (a GET is sent again when the kept connection
// failed before an answer).
func TestHoldEndpointClosesIdle(t *testing.T) {
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		_, _ = c.Write([]byte(echo(r)))
		return false
	})
	_, sess, _ := siteWeb(t, ep.addr)
	rc := openSite(t, sess)
	for i := range 30 {
		if i%3 == 0 {
			time.Sleep(5 * time.Millisecond) // the endpoint's FIN came before the next request
		}
		rc.send(get("/a"))
		rc.expect(okAnswer("GET /a 0"))
	}
	if c := ep.conns.Load(); c != 30 {
		t.Errorf("the endpoint accepted %d connections, want one per request (30)", c)
	}
}

// What the link's reader does not send itself wakes the stream's
// goroutine, which serves it from the stream as before: two requests in
// one write, a head that comes in two writes, a request with a chunked
// body (net/http's from then on). A request whole and alone after the
// first two is sent by the link's reader again.
func TestHoldWakesForOtherRequests(t *testing.T) {
	a, _, rc, _ := armedSite(t)
	rc.send(get("/p1") + get("/p2"))
	rc.expect(okAnswer("GET /p1 0") + okAnswer("GET /p2 0"))

	waitArmed(t, a, 1)
	rc.send("GET /split HTTP/1.1\r\nHo")
	time.Sleep(20 * time.Millisecond)
	rc.send("st: web\r\n\r\n")
	rc.expect(okAnswer("GET /split 0"))
	if got := a.e.heldRequests.Load(); got != 0 {
		t.Fatalf("the link's reader sent %d requests that were not whole and alone", got)
	}

	waitArmed(t, a, 1)
	rc.send(get("/alone"))
	rc.expect(okAnswer("GET /alone 0"))
	if got := a.e.heldRequests.Load(); got != 1 {
		t.Fatalf("the link's reader sent %d requests, want 1 (/alone)", got)
	}

	waitArmed(t, a, 1)
	rc.send("POST /chunks HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked("hello world", 5, 6))
	resp, body := rc.answer()
	if resp.StatusCode != 200 || body != "POST /chunks 11" {
		t.Fatalf("chunked POST: %d %q", resp.StatusCode, body)
	}
}

// With two endpoints here the stream holds nothing: the next request
// may be drawn for the other (the router draws; this test's upstreams
// keep their order).
func TestHoldNotWithTwoEndpoints(t *testing.T) {
	ep1, ep2 := startRawEndpoint(t, says(echo)), startRawEndpoint(t, says(echo))
	a, sess, _ := siteWeb(t, ep1.addr, ep2.addr)
	rc := openSite(t, sess)
	for range 20 {
		rc.send(get("/a"))
		rc.expect(okAnswer("GET /a 0"))
	}
	if got := a.e.heldRequests.Load(); got != 0 {
		t.Errorf("the link's reader sent %d requests with two endpoints", got)
	}
	if n := len(ep1.requests()) + len(ep2.requests()); n != 20 {
		t.Errorf("the endpoints got %d requests, want 20", n)
	}
}

// The hold's time out closes the endpoint connection and the stream
// serves on; and an answer slower than the hold's time, its head and its
// body apart, still comes whole: the hold's read deadline is gone before
// the answer is waited for again.
func TestHoldTimeout(t *testing.T) {
	was := holdMax
	holdMax = 200 * time.Millisecond
	t.Cleanup(func() { holdMax = was })
	ep := startRawEndpoint(t, func(c net.Conn, r rawRequest) bool {
		if r.target != "/slow" {
			_, _ = c.Write([]byte(echo(r)))
			return true
		}
		time.Sleep(300 * time.Millisecond)
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"))
		time.Sleep(300 * time.Millisecond)
		_, _ = c.Write([]byte("slow"))
		return true
	})
	a, sess, _ := siteWeb(t, ep.addr)
	rc := openSite(t, sess)
	rc.send(get("/a"))
	rc.expect(okAnswer("GET /a 0"))
	ep.waitClosed(t, 1) // held for holdMax, then closed
	rc.send(get("/b"))
	rc.expect(okAnswer("GET /b 0"))

	waitArmed(t, a, 1)
	rc.send(get("/slow"))
	rc.expect(okAnswer("slow"))
	if got := a.e.heldRequests.Load(); got != 1 {
		t.Errorf("the link's reader sent %d requests, want 1 (/slow)", got)
	}
	ep.waitClosed(t, 2) // held after /slow, then closed
	rc.send(get("/c"))
	rc.expect(okAnswer("GET /c 0"))
	var got []string
	for _, r := range ep.requests() {
		got = append(got, r.target)
	}
	if strings.Join(got, " ") != "/a /b /slow /c" {
		t.Errorf("the endpoint got %v, want each request once", got)
	}
	if c := ep.conns.Load(); c != 3 {
		t.Errorf("the endpoint accepted %d connections, want 3", c)
	}
}

// An engine whose IdleTimeout is shorter than a hold's time holds an
// idle endpoint connection no longer than that, and closes the link
// stream as it would have without holding.
func TestHoldIdleTimeout(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	_, sess, _ := siteWebWith(t, Options{IdleTimeout: 300 * time.Millisecond}, ep.addr)
	rc := openSite(t, sess)
	rc.send(get("/a"))
	rc.expect(okAnswer("GET /a 0"))
	if !rc.closed() {
		t.Error("the link stream stayed open past the engine's IdleTimeout")
	}
	ep.waitClosed(t, 1)
}

// A change of the service table (CloseIdle) closes a held connection
// rather than giving it back; the next request goes on a new one.
func TestHoldCloseIdle(t *testing.T) {
	a, ep, rc, _ := armedSite(t)
	a.e.CloseIdle()
	ep.waitClosed(t, 1)
	rc.send(get("/b"))
	rc.expect(okAnswer("GET /b 0"))
	if c := ep.conns.Load(); c != 2 {
		t.Errorf("the endpoint accepted %d connections, want 2", c)
	}
}

// StopKeepAlives, Shutdown and the engine's stop each close a link
// stream that holds an endpoint connection, and that connection.
func TestHoldStops(t *testing.T) {
	for _, stop := range []string{"StopKeepAlives", "Shutdown", "engine stop"} {
		t.Run(stop, func(t *testing.T) {
			a, ep, rc, cancel := armedSite(t)
			switch stop {
			case "StopKeepAlives":
				a.e.StopKeepAlives()
			case "Shutdown":
				ctx, cancelShutdown := context.WithTimeout(context.Background(), fastWait)
				defer cancelShutdown()
				if err := a.e.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			default:
				cancel()
			}
			if !rc.closed() {
				t.Error("the link stream stayed open")
			}
			ep.waitClosed(t, 1)
		})
	}
}

// A linked site's idle streams hold no more of an address's endpoint
// connections than the pool keeps idle (maxIdle): four streams, each
// with one request answered, of which two hold their connection; the
// next request of each is answered, and the link's reader sends only
// the two held streams' ones.
func TestHoldBoundedByMaxIdle(t *testing.T) {
	ep := startRawEndpoint(t, says(echo))
	a, sess, _ := siteWeb(t, ep.addr)
	a.e.h1.maxIdle = 2
	var rcs []*rawClient
	for i := range 4 {
		rc := openSite(t, sess)
		rc.send(get("/first"))
		rc.expect(okAnswer("GET /first 0"))
		rcs = append(rcs, rc)
		if i < 2 {
			waitArmed(t, a, i+1)
		}
	}
	time.Sleep(50 * time.Millisecond) // the last two tried to hold, and could not
	if n := armed(a); n != 2 {
		t.Fatalf("%d link streams hold an endpoint connection, want 2 (maxIdle)", n)
	}
	for _, rc := range rcs {
		rc.send(get("/next"))
		rc.expect(okAnswer("GET /next 0"))
	}
	if got := a.e.heldRequests.Load(); got != 2 {
		t.Errorf("the link's reader sent %d requests, want 2", got)
	}
}
