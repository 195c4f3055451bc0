package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// countedBufs is a buffer source that counts the buffers out.
type countedBufs struct{ out, gets atomic.Int64 }

func (c *countedBufs) get() *[]byte {
	c.out.Add(1)
	c.gets.Add(1)
	b := make([]byte, 32<<10)
	return &b
}

func (c *countedBufs) put(*[]byte) { c.out.Add(-1) }

// sink is a writer whose bytes a test can wait for; fail makes its
// writes fail.
type sink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	fail bool
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return 0, errors.New("sink refuses")
	}
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

type copyResult struct {
	n   int64
	err error
}

// startCopy runs copyReady from server to dst.
func startCopy(t *testing.T, server *net.TCPConn, dst io.Writer, bufs *countedBufs) <-chan copyResult {
	t.Helper()
	rc := rawTCP(server)
	if rc == nil {
		t.Fatal("rawTCP of a *net.TCPConn is nil")
	}
	done := make(chan copyResult, 1)
	go func() {
		n, err := copyReady(dst, rc, bufs.get, bufs.put)
		done <- copyResult{n, err}
	}()
	return done
}

func waitResult(t *testing.T, done <-chan copyResult) copyResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("copyReady did not return")
		return copyResult{}
	}
}

// A connection that waits for its client holds no buffer: before its
// first byte, between bursts, and after many reads; every byte arrives in
// order and the peer's EOF ends the copy without an error.
func TestCopyReadyHoldsNoBufferWhileWaiting(t *testing.T) {
	client, server := testutil.TCPPair(t)
	var bufs countedBufs
	dst := &sink{}
	done := startCopy(t, server, dst, &bufs)
	idle := func(what string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, what, func() error {
			if n := bufs.out.Load(); n != 0 {
				return fmt.Errorf("%d buffers held", n)
			}
			return nil
		})
	}
	testutil.Eventually(t, 5*time.Second, "a first read attempt", func() error {
		if bufs.gets.Load() == 0 {
			return errors.New("no buffer taken yet")
		}
		return nil
	})
	idle("no buffer before the first byte")

	var want bytes.Buffer
	for burst := range 20 {
		chunk := bytes.Repeat([]byte{byte('a' + burst)}, 1+burst*7001) // up to 130 KiB: several reads
		want.Write(chunk)
		if _, err := client.Write(chunk); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the burst copied", func() error {
			if got := dst.String(); got != want.String() {
				return fmt.Errorf("copied %d bytes of %d", len(got), want.Len())
			}
			return nil
		})
		idle(fmt.Sprintf("no buffer held after burst %d", burst))
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, done)
	if r.err != nil || r.n != int64(want.Len()) {
		t.Errorf("copyReady after EOF: %d bytes, %v; want %d, nil", r.n, r.err, want.Len())
	}
	if n := bufs.out.Load(); n != 0 {
		t.Errorf("%d buffers held after the copy", n)
	}
}

// Each way a copy can end gives its buffer back and says why: the socket
// closed under it (a reset flow), its read deadline, a peer's reset, and
// a write that failed.
func TestCopyReadyEnds(t *testing.T) {
	cases := []struct {
		name string
		end  func(t *testing.T, client, server *net.TCPConn, dst *sink)
		want func(err error) bool
	}{
		{"socket closed", func(t *testing.T, _, server *net.TCPConn, _ *sink) { server.Close() },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
		{"read deadline", func(t *testing.T, _, server *net.TCPConn, _ *sink) {
			server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"peer reset", func(t *testing.T, client, _ *net.TCPConn, _ *sink) {
			client.SetLinger(0)
			client.Close()
		}, func(err error) bool { return err != nil && !errors.Is(err, io.EOF) }},
		{"write fails", func(t *testing.T, client, _ *net.TCPConn, dst *sink) {
			dst.mu.Lock()
			dst.fail = true
			dst.mu.Unlock()
			if _, err := client.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}
		}, func(err error) bool { return err != nil && err.Error() == "sink refuses" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := testutil.TCPPair(t)
			var bufs countedBufs
			dst := &sink{}
			done := startCopy(t, server, dst, &bufs)
			if _, err := client.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the first bytes copied", func() error {
				if dst.String() != "hello" {
					return fmt.Errorf("copied %q", dst.String())
				}
				return nil
			})
			tc.end(t, client, server, dst)
			r := waitResult(t, done)
			if !tc.want(r.err) {
				t.Errorf("copyReady ended with %d bytes, %v", r.n, r.err)
			}
			if r.n != 5 {
				t.Errorf("copyReady counted %d bytes, want 5", r.n)
			}
			if n := bufs.out.Load(); n != 0 {
				t.Errorf("%d buffers held after the copy ended", n)
			}
		})
	}
}

// Only a bare TCP connection is read from its socket: anything that may
// hold bytes above it is read through its own Read.
func TestRawTCPOnlyBareSockets(t *testing.T) {
	_, server := testutil.TCPPair(t)
	if rawTCP(server) == nil {
		t.Error("rawTCP(*net.TCPConn) = nil")
	}
	for _, r := range []io.Reader{struct{ net.Conn }{server}, bytes.NewReader(nil), struct{ io.Reader }{server}} {
		if rawTCP(r) != nil {
			t.Errorf("rawTCP(%T) is not nil", r)
		}
	}
}
