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

// An idle TCP connection between a client's socket and a link stream
// holds one goroutine at each gateway, not two: the stream's data goes to
// the socket from the link's reader (the mux's Sink), and a goroutine runs
// for it only while data waits for a full socket. Fifty connections
// through east's listener to west's echo, each with a round trip before
// and after a pause; then each closes, and no splice is left.
func TestIdleConnectionsHoldOneGoroutinePerGateway(t *testing.T) {
	port := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}})
	tok := east.issue(t, 1)
	startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{echoService(t, "west")}})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tu.Eventually(t, 10*time.Second, "east reaches west's echo", reachEcho(addr, "west"))
	tu.Eventually(t, 10*time.Second, "no splice left from the probes", func() error {
		if n := spliceGoroutines(); n != 0 {
			return fmt.Errorf("%d goroutines in a splice", n)
		}
		return nil
	})

	const conns = 50
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
	// Two per connection (east's and west's), where a splice with a
	// goroutine each way held four.
	tu.Eventually(t, 10*time.Second, "one goroutine per idle connection per gateway", func() error {
		if n := spliceGoroutines(); n > 2*conns {
			return fmt.Errorf("%d goroutines in a splice for %d idle connections", n, conns)
		}
		return nil
	})
	for i, e := range open {
		if err := e.roundTrip(fmt.Sprintf("again %d", i)); err != nil {
			t.Fatalf("after the pause: %v", err)
		}
	}
	for _, e := range open {
		if err := e.finish(); err != nil {
			t.Fatal(err)
		}
	}
	open = nil
	tu.Eventually(t, 10*time.Second, "every splice ended", func() error {
		if n := spliceGoroutines(); n != 0 {
			return fmt.Errorf("%d goroutines in a splice after every connection closed", n)
		}
		return nil
	})
}
