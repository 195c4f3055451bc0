package mux

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// heldConn is a HeldWriter over a connection, as the router's corked TLS
// is (its tests are in sidecar/router): WriteHeld takes p only while no
// other write of the connection is under way. It holds nothing back, so
// it writes p whole, which waits only if the peer stops reading; the
// tests that use it read everything.
type heldConn struct {
	net.Conn
	mu     sync.Mutex
	writes int // writes by WriteHeld
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *heldConn) WriteHeld(p []byte) (taken, held bool, err error) {
	if !c.mu.TryLock() {
		return false, false, nil
	}
	defer c.mu.Unlock()
	c.writes++
	_, err = c.Conn.Write(p)
	return true, false, err
}

func (c *heldConn) FlushHeld() error { return nil }

func (c *heldConn) heldWrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// A lone stream whose data the session's reader writes to the Sink's
// socket itself gets its credit from that reader too: each WINDOW_UPDATE
// leaves in the reader's own write once it has no frame at hand, and
// sendLoop is not woken for it (a goroutine hand-off, and on a busy
// machine a thread's wake-up, per half window). The sender writes eight
// windows, so it finishes only if every update arrives.
func TestWindowUpdateFromTheReader(t *testing.T) {
	// No keepalive within the test: a PING would wake sendLoop.
	cfg := Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: 2 * time.Minute}
	ca, cb := connPair(t, true)
	held := &heldConn{Conn: cb}
	client, server := Client(ca, cfg), Server(held, cfg)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	a, b := openPair(t, client, server)
	w, far := testutil.TCPPair(t)
	got := make(chan []byte, 1)
	go func() {
		var all bytes.Buffer
		_, _ = all.ReadFrom(far)
		got <- all.Bytes()
	}()
	var f flushers
	done := startSink(t, b, w, &f)
	wakes := server.loopWakes.Load()
	heldBefore := held.heldWrites()

	window := int(DefaultStreamWindow)
	msg := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 2<<10) } // small: the reader writes each
	var want bytes.Buffer
	within(t, "eight windows of data", func() {
		sendSpaced(t, a, &want, 8*window/(2<<10), 0, msg)
	})
	finishSink(t, a, w, done, got, want.Bytes())
	updates := 8*window/(window/2) - 1 // the last half window is not acknowledged before FIN
	if n := held.heldWrites() - heldBefore; n < updates/2 {
		t.Errorf("the reader wrote %d times for %d WINDOW_UPDATEs; want it to write most of them", n, updates)
	}
	if n := server.loopWakes.Load() - wakes; n > uint64(updates/4) {
		t.Errorf("sendLoop woken %d times for %d WINDOW_UPDATEs; the reader writes them", n, updates)
	}
}
