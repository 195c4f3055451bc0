package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// ends returns a connection's ends as net's own conns and as Conns, for
// tests that check both behave alike.
func ends(t *testing.T, wrap bool) (net.Conn, net.Conn) {
	c, s := pair(t)
	if !wrap {
		return c, s
	}
	wc, ws := Wrap(c), Wrap(s)
	if _, ok := wc.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c, wc)
	}
	return wc, ws
}

func both(t *testing.T, f func(t *testing.T, wrap bool)) {
	for _, wrap := range []bool{false, true} {
		name := "net"
		if wrap {
			name = "rawio"
		}
		t.Run(name, func(t *testing.T) { f(t, wrap) })
	}
}

// A large write to a reader that reads slowly fills the socket: Write
// waits for room and every byte arrives in order; the writer's
// CloseWrite is the reader's io.EOF.
func TestLargeWriteAndEOF(t *testing.T) {
	both(t, func(t *testing.T, wrap bool) {
		c, s := ends(t, wrap)
		want := make([]byte, 8<<20)
		rand.Read(want)
		errc := make(chan error, 1)
		go func() {
			n, err := c.Write(want)
			if err == nil && n != len(want) {
				err = errors.New("short write without an error")
			}
			if err == nil {
				err = c.(interface{ CloseWrite() error }).CloseWrite()
			}
			errc <- err
		}()
		time.Sleep(50 * time.Millisecond) // the writer finds the socket full
		var got bytes.Buffer
		buf := make([]byte, 3000) // odd reads
		for {
			n, err := s.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read after %d bytes: %v", got.Len(), err)
			}
			if n == 0 {
				t.Fatal("Read returned 0 bytes and no error")
			}
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %d bytes, not the %d written", got.Len(), len(want))
		}
		if n, err := s.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("read after EOF = %d, %v; want 0, EOF", n, err)
		}
		if n, err := s.Read(nil); n != 0 || err != nil {
			t.Fatalf("empty read = %d, %v; want 0, nil", n, err)
		}
	})
}

// Deadlines end a waiting Read and Write as net's do.
func TestDeadlines(t *testing.T) {
	both(t, func(t *testing.T, wrap bool) {
		c, s := ends(t, wrap)
		s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := s.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past its deadline: %v (%T), want a timeout", err, err)
		}
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		big := make([]byte, 64<<20) // more than the socket takes: nobody reads
		n, err := c.Write(big)
		t.Logf("wrote %d before the deadline", n)
		if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) {
			t.Fatalf("write past its deadline = %d, %v; want a timeout before all was written", n, err)
		}
	})
}

// A closed Conn reports net.ErrClosed; a reset reports ECONNRESET, as
// net's do.
func TestClosedAndReset(t *testing.T) {
	both(t, func(t *testing.T, wrap bool) {
		c, s := ends(t, wrap)
		s.Close()
		if _, err := s.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read of a closed conn: %v, want net.ErrClosed", err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write to a closed conn: %v, want net.ErrClosed", err)
		}
		c2, s2 := ends(t, wrap)
		if _, err := c2.Write([]byte("unread")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		s2.(interface{ SetLinger(int) error }).SetLinger(0)
		s2.Close() // unread data: a reset
		_ = c
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c2.Read(make([]byte, 10))
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("read of a reset conn: %v (%T), want a read *net.OpError for ECONNRESET", err, err)
		}
	})
}

// Read and Write report EAGAIN rather than wait; Wrap leaves what is not
// a TCP connection as it is.
func TestRawCalls(t *testing.T) {
	c, s := pair(t)
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var e syscall.Errno
	rc.Read(func(fd uintptr) bool { n, e = Read(fd, make([]byte, 4)); return true })
	if e != syscall.EAGAIN {
		t.Fatalf("read of an empty socket = %d, %v; want EAGAIN", n, e)
	}
	c.Write([]byte("abc"))
	time.Sleep(10 * time.Millisecond)
	buf := make([]byte, 4)
	rc.Read(func(fd uintptr) bool { n, e = Read(fd, buf); return true })
	if e != 0 || string(buf[:n]) != "abc" {
		t.Fatalf("read = %q, %v; want abc", buf[:n], e)
	}
	crc, _ := c.SyscallConn()
	crc.Write(func(fd uintptr) bool { n, e = Write(fd, []byte("de")); return true })
	if e != 0 || n != 2 {
		t.Fatalf("write = %d, %v; want 2", n, e)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("Wrap changed a net.Pipe end")
	}
}

// A Conn's Read and Write allocate nothing (they are on every request's
// path).
func TestNoAllocations(t *testing.T) {
	c, s := pair(t)
	wc, ws := Wrap(c), Wrap(s)
	msg, buf := []byte("ping"), make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := wc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ws, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := wc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := ws.(*Conn).ReadWhenReady(buf[:len(msg)], notQuiet); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a Write and a Read allocate %.1f times, want 0", allocs)
	}
}

func notQuiet() bool { return false }

// TryWrite takes what the socket takes at once and never waits: against
// a peer that does not read it ends up taking nothing, it takes nothing
// while a Write waits, it fails on a closed connection, and the peer
// reads every byte it took, in order, before the Write's.
func TestTryWrite(t *testing.T) {
	client, server := pair(t)
	// The socket fills at once. The peer's buffer is fixed (no
	// autotuning) and large enough for reads to reopen the window at once
	// (a small one stalls them: TCP's persist timer).
	client.SetWriteBuffer(4 << 10)
	server.SetReadBuffer(1 << 20)
	c := Wrap(client).(*Conn)
	chunk := bytes.Repeat([]byte("t"), 4<<10)
	var want []byte
	for i := 0; ; i++ {
		if i == 10000 {
			t.Fatal("the socket never filled")
		}
		n, err := c.TryWrite(chunk)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, chunk[:n]...)
		if n == 0 {
			break
		}
	}
	// The Write below must wait whatever made the socket refuse the last
	// TryWrite: it may have been full only while loopback's softirq
	// lagged. So it is larger than both buffers can ever hold (2 MiB each,
	// the kernel doubles what is set); the send buffer grows first, or 8
	// KiB at a time makes the peer's reading take seconds.
	client.SetWriteBuffer(1 << 20)
	last := bytes.Repeat([]byte("w"), 8<<20)
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(last); wrote <- err }()
	for deadline := time.Now().Add(10 * time.Second); c.wmu.TryLock(); { // until the Write holds the lock
		c.wmu.Unlock()
		if len(wrote) > 0 || time.Now().After(deadline) {
			t.Fatal("the Write did not wait: the socket was not full")
		}
		time.Sleep(time.Millisecond)
	}
	if n, err := c.TryWrite(chunk); n != 0 || err != nil {
		t.Fatalf("TryWrite beside a waiting Write: %d, %v; want 0, nil", n, err)
	}
	want = append(want, last...)
	got := make([]byte, len(want))
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the peer read other bytes (%v)", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.TryWrite(chunk); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TryWrite after Close: %v, want net.ErrClosed", err)
	}
}

// ReadWhenReady waits for the poller first while its caller is quiet,
// then reads as Read does: what the peer wrote after quiet turned false,
// the peer's end, the deadline (also one moved into the past while it
// waits, as another goroutine wakes it); not quiet, it reads at once.
func TestReadWhenReady(t *testing.T) {
	c, s := pair(t)
	ws := Wrap(s).(*Conn)
	buf := make([]byte, 16)
	var quiet atomic.Bool
	var asked atomic.Int32
	isQuiet := func() bool { asked.Add(1); return quiet.Load() }

	quiet.Store(true)
	go func() {
		time.Sleep(20 * time.Millisecond)
		quiet.Store(false)
		c.Write([]byte("abc"))
	}()
	n, err := ws.ReadWhenReady(buf, isQuiet)
	if err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("quiet, then written: %q, %v; want abc", buf[:n], err)
	}
	if asked.Load() != 1 {
		t.Fatalf("quiet asked %d times, want once (the first attempt)", asked.Load())
	}

	c.Write([]byte("de"))
	time.Sleep(10 * time.Millisecond)
	if n, err := ws.ReadWhenReady(buf, isQuiet); err != nil || string(buf[:n]) != "de" {
		t.Fatalf("not quiet, bytes there: %q, %v; want de", buf[:n], err)
	}

	quiet.Store(true)
	go func() {
		time.Sleep(20 * time.Millisecond)
		ws.SetReadDeadline(time.Unix(1, 0))
	}()
	if _, err := ws.ReadWhenReady(buf, isQuiet); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline moved into the past while quiet: %v, want a timeout", err)
	}
	ws.SetReadDeadline(time.Time{})

	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}()
	if n, err := ws.ReadWhenReady(buf, isQuiet); n != 0 || err != io.EOF {
		t.Fatalf("the peer closed while quiet: %d, %v; want 0, EOF", n, err)
	}
}
