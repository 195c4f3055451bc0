package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

func TestGoAway(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	if err := server.GoAway(); err != nil {
		t.Fatalf("GoAway: %v", err)
	}
	// Data written after GOAWAY arrives after it.
	if _, err := s.Write([]byte("still here")); err != nil {
		t.Fatalf("write on an existing stream: %v", err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read on an existing stream: %v", err)
	}
	if _, err := client.Open(t.Context()); !errors.Is(err, ErrGoAway) {
		t.Errorf("client Open after GOAWAY: %v, want ErrGoAway", err)
	}
	// The existing stream carries on both ways.
	if _, err := c.Write([]byte("and me")); err != nil {
		t.Errorf("client write on an existing stream: %v", err)
	}
	if _, err := io.ReadFull(s, buf[:6]); err != nil || string(buf[:6]) != "and me" {
		t.Errorf("server read = %q, %v", buf[:6], err)
	}
	// The server may still open streams.
	if _, err := server.Open(t.Context()); err != nil {
		t.Errorf("server Open after its own GOAWAY: %v", err)
	}
}

// TestGoAwayRace: a stream the peer opened before it heard of GOAWAY is
// refused, and fails with ErrGoAway there.
func TestGoAwayRace(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	if err := server.GoAway(); err != nil {
		t.Fatalf("GoAway: %v", err)
	}
	st, err := client.Open(t.Context())
	if err == nil {
		_, err = st.Read(make([]byte, 1))
	}
	if !errors.Is(err, ErrGoAway) {
		t.Errorf("open and read after GOAWAY: %v, want ErrGoAway", err)
	}
}

func TestAcceptBacklog(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{AcceptBacklog: 2})
	var streams []*Stream
	for range 3 {
		st, err := client.Open(t.Context())
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		streams = append(streams, st)
	}
	if _, err := streams[2].Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
		t.Errorf("read on the stream beyond the backlog: %v, want ErrStreamReset", err)
	}
	for _, want := range streams[:2] {
		got, err := server.Accept()
		if err != nil || got.ID() != want.ID() {
			t.Errorf("Accept = %v, %v; want stream %d", got, err, want.ID())
		}
	}
}

// blackHole is a peer that stops responding: once frozen, whatever it is
// asked to write vanishes.
type blackHole struct {
	net.Conn
	mu     sync.Mutex
	frozen bool
}

func (b *blackHole) Write(p []byte) (int, error) {
	b.mu.Lock()
	frozen := b.frozen
	b.mu.Unlock()
	if frozen {
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func TestKeepAliveTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 500 * time.Millisecond}
		a, b := net.Pipe()
		hole := &blackHole{Conn: b}
		client, server := Client(a, cfg), Server(hole, cfg)
		defer server.Close()
		defer client.Close()
		c, _ := openPair(t, client, server)

		// Alive while the peer answers: several timeouts pass.
		time.Sleep(5 * cfg.KeepAliveTimeout)
		if err := client.Err(); err != nil {
			t.Fatalf("session ended while the peer answered: %v", err)
		}

		hole.mu.Lock()
		hole.frozen = true
		hole.mu.Unlock()
		start := time.Now()
		<-client.Done()
		if err := client.Err(); !errors.Is(err, ErrKeepAliveTimeout) || !errors.Is(err, ErrSessionClosed) {
			t.Errorf("Err() = %v, want ErrKeepAliveTimeout and ErrSessionClosed", err)
		}
		// Fake clock: exact, not a wall-clock assertion.
		if d := time.Since(start); d > cfg.KeepAliveTimeout+cfg.KeepAliveInterval {
			t.Errorf("dead peer detected after %v, want within %v", d, cfg.KeepAliveTimeout+cfg.KeepAliveInterval)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrKeepAliveTimeout) {
			t.Errorf("stream read: %v, want ErrKeepAliveTimeout", err)
		}
	})
}

func TestSessionCloseEndsStreams(t *testing.T) {
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	errc := make(chan error, 10)
	var streams []*Stream
	for range 5 {
		c, _ := openPair(t, client, server)
		streams = append(streams, c)
		go func() {
			_, err := c.Read(make([]byte, 1))
			errc <- err
		}()
	}
	// A writer blocked on a full window.
	w := streams[0]
	w.Write(make([]byte, DefaultStreamWindow))
	go func() {
		_, err := w.Write(make([]byte, 1))
		errc <- err
	}()
	if err := client.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for range 6 {
		var err error
		within(t, "stream operation", func() { err = <-errc })
		if !errors.Is(err, ErrSessionClosed) {
			t.Errorf("stream operation: %v, want ErrSessionClosed", err)
		}
	}
	if _, err := client.Open(t.Context()); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Open after Close: %v, want ErrSessionClosed", err)
	}
	if _, err := client.Accept(); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Accept after Close: %v, want ErrSessionClosed", err)
	}
	// The peer sees the connection go.
	var err error
	within(t, "peer Accept", func() { _, err = server.Accept() })
	if !errors.Is(err, ErrSessionClosed) || !errors.Is(server.Err(), ErrSessionClosed) {
		t.Errorf("peer Accept: %v, want ErrSessionClosed", err)
	}
	if n := client.NumStreams(); n != 0 {
		t.Errorf("NumStreams after Close = %d, want 0", n)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, tr := range []transport{overPipe, overTCP, overTLS} {
		a, b := net.Pipe()
		if tr != overPipe {
			a, b = connPair(t, tr == overTLS)
		}
		client, server := Client(a, Config{}), Server(b, Config{})
		var wg sync.WaitGroup
		for range 10 {
			c, s := openPair(t, client, server)
			wg.Go(func() {
				io.Copy(s, s)
				s.Close()
			})
			wg.Go(func() {
				c.Write(make([]byte, 100<<10))
				c.CloseWrite()
				io.Copy(io.Discard, c)
				c.Close()
			})
		}
		// Some streams left open and blocked.
		c, _ := openPair(t, client, server)
		wg.Go(func() { c.Read(make([]byte, 1)) })
		client.Close()
		within(t, "streams", wg.Wait)
		server.Close()
	}
	testutil.Until(t, guard, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}

// TestIdleStreamMemory: open streams that carried a little data and were
// read cost a few hundred bytes each, not buffers.
func TestIdleStreamMemory(t *testing.T) {
	const streams = 1000
	client, server := sessionPair(t, overPipe, Config{}, Config{AcceptBacklog: streams})
	msg := make([]byte, 100)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var keep []*Stream
	for range streams {
		c, s := openPair(t, client, server)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, msg); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, c, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perStream := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / streams
	t.Logf("%d bytes of heap per idle stream (both ends)", perStream)
	if perStream > 4<<10 {
		t.Errorf("%d bytes of heap per idle stream, want at most 4 KiB", perStream)
	}
	if n := server.NumStreams(); n != streams {
		t.Errorf("NumStreams = %d, want %d", n, streams)
	}
	runtime.KeepAlive(keep)
}

func TestRTT(t *testing.T) {
	cfg := Config{KeepAliveInterval: time.Millisecond, KeepAliveTimeout: guard}
	client, _ := sessionPair(t, overTCP, cfg, cfg)
	testutil.Until(t, guard, "a PING to be answered", func() bool { return client.RTT() > 0 })
}

// TestCloseSendsQueuedFrames: closing the session right after a stream
// delivers the stream's FIN rather than cutting it off.
func TestCloseSendsQueuedFrames(t *testing.T) {
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	c, s := openPair(t, client, server)
	c.Write([]byte("last words"))
	c.Close()
	client.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "last words" {
		t.Errorf("read = %q, %v; want %q, nil (EOF)", got, err, "last words")
	}
}

// DataBytes counts stream data both ways, and nothing else: no frame
// headers, no control frames.
func TestDataBytes(t *testing.T) {
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	if a, b := client.DataBytes(), server.DataBytes(); a != 0 || b != 0 {
		t.Fatalf("before any stream: client %d, server %d bytes; want 0", a, b)
	}
	c, s := openPair(t, client, server)
	up := bytes.Repeat([]byte("u"), 100_000)
	down := bytes.Repeat([]byte("d"), 3_000)
	within(t, "exchange", func() {
		go func() {
			c.Write(up)
			c.CloseWrite()
		}()
		got, err := io.ReadAll(s)
		if err != nil || len(got) != len(up) {
			t.Errorf("server read %d bytes, %v; want %d", len(got), err, len(up))
		}
		s.Write(down)
		s.Close()
		got, err = io.ReadAll(c)
		if err != nil || len(got) != len(down) {
			t.Errorf("client read %d bytes, %v; want %d", len(got), err, len(down))
		}
	})
	want := uint64(len(up) + len(down))
	if a, b := client.DataBytes(), server.DataBytes(); a != want || b != want {
		t.Fatalf("client counted %d bytes, server %d; want %d each", a, b, want)
	}
}

// The reader wakes an idle P's thread every nudgeEvery bytes of data, so
// that a reader which always has data at hand, and never parks, does not
// leave the process without a thread polling the network (read.go).
func TestReaderWakesIdleP(t *testing.T) {
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	c, s := openPair(t, client, server)
	const total = 8 * nudgeEvery
	within(t, "8 nudges' worth of data", func() {
		go func() {
			c.Write(make([]byte, total))
			c.CloseWrite()
		}()
		n, err := io.Copy(io.Discard, s)
		if err != nil || n != total {
			t.Errorf("read %d bytes, %v; want %d", n, err, total)
		}
	})
	if got := server.nudges.Load(); got != 8 {
		t.Fatalf("reader read %d bytes and woke an idle P %d times; want 8", total, got)
	}
	if got := client.nudges.Load(); got != 0 {
		t.Fatalf("the sending side's reader read no data and woke an idle P %d times; want 0", got)
	}
}
