package router

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// spliceGoroutines counts the goroutines of this process in a splice
// (its own, or a worker running one of its copies).
func spliceGoroutines() int {
	n := 0
	for _, stack := range goroutineStacks() {
		if strings.Contains(stack, "(*Router).splice") {
			n++
		}
	}
	return n
}

// noSplice waits until no goroutine is in a splice.
func noSplice(t *testing.T, what string) {
	t.Helper()
	tu.Eventually(t, 10*time.Second, what, func() error {
		if n := spliceGoroutines(); n != 0 {
			return fmt.Errorf("%d goroutines in a splice", n)
		}
		return nil
	})
}

// checkIdleSplices opens conns connections to addr, each reaching west's
// echo with a round trip, and waits until at most perConn goroutines per
// connection are in a splice while they are idle. Then each makes a round
// trip of msg and a bit more and closes, and no splice may be left.
func checkIdleSplices(t *testing.T, addr string, conns, perConn int, msg string) {
	t.Helper()
	noSplice(t, "no splice left from the probes")
	var open []*echoConn
	defer func() {
		for _, e := range open {
			e.c.Close()
		}
	}()
	for i := range conns {
		e, name, err := dialEcho(addr)
		if err != nil || name != "west" {
			t.Fatalf("connection %d: %q, %v", i, name, err)
		}
		open = append(open, e)
		if err := e.roundTrip(fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	tu.Eventually(t, 10*time.Second, fmt.Sprintf("%d goroutines per idle connection", perConn), func() error {
		if n := spliceGoroutines(); n > perConn*conns {
			return fmt.Errorf("%d goroutines in a splice for %d idle connections", n, conns)
		}
		return nil
	})
	for i, e := range open {
		if err := e.roundTrip(strings.TrimSpace(fmt.Sprintf("again %d %s", i, msg))); err != nil {
			t.Fatalf("after the pause: %v", err)
		}
	}
	for _, e := range open {
		if err := e.finish(); err != nil {
			t.Fatal(err)
		}
	}
	open = nil
	noSplice(t, "every splice ended")
}

// An idle TCP connection between a client's socket and a link stream
// holds one goroutine at each gateway, not two: the stream's data goes to
// the socket from the link's reader (the mux's Sink), and a goroutine runs
// for it only while data waits for a full socket. Fifty connections
// through east's listener to west's echo, each with a round trip before
// and after a pause; then each closes, and no splice is left. Two per
// connection (east's and west's), where a goroutine each way held four.
func TestIdleConnectionsHoldOneGoroutinePerGateway(t *testing.T) {
	port := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}})
	tok := east.issue(t, 1)
	startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{echoService(t, "west")}})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tu.Eventually(t, 10*time.Second, "east reaches west's echo", reachEcho(addr, "west"))
	checkIdleSplices(t, addr, 50, 2, "")
}

// In transit too: a sidecar's connection through east to west holds one
// goroutine at the sidecar, one at east (its caller's, waiting: both
// directions are link streams, carried by flushers while data waits) and
// one at west, where a splice with a goroutine each way held two at each.
// The second round trips carry more than a socket takes at once, so the
// flushers work.
func TestIdleTransitHoldsOnlyItsCaller(t *testing.T) {
	eastDir := t.TempDir()
	east := startDrainNode(t, drainSiteConfig{site: "east", router: "east-gw-0", dir: eastDir, linkAccess: true})
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-gw-0",
		links: []LinkSpec{linkSpecTo(t, east, eastDir, east.r.LinkAddr().String())},
		svc:   Services{Connectors: []Connector{echoService(t, "west")}}})
	sidecar := startSiblingSidecar(t, east, eastDir)
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west's echo through east", reachEcho(sidecar, "west"))
	checkIdleSplices(t, sidecar, 30, 3, strings.Repeat("x", 256<<10))
}
