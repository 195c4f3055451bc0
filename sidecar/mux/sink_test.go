package mux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// flushers counts the flusher goroutines a Sink starts and those running.
type flushers struct{ started, running atomic.Int64 }

func (f *flushers) start(fn func()) {
	f.started.Add(1)
	f.running.Add(1)
	go func() {
		defer f.running.Add(-1)
		fn()
	}()
}

// sinkResult is what a Sink's done was called with.
type sinkResult struct {
	n   int64
	err error
}

// startSink hands b's data to w with Sink.
func startSink(t *testing.T, b *Stream, w *net.TCPConn, f *flushers) <-chan sinkResult {
	t.Helper()
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan sinkResult, 2) // 2: a second call shows up as a failure below
	b.Sink(w, SocketWriter(rc), f.start, func(n int64, err error) { done <- sinkResult{n, err} })
	return done
}

func waitSink(t *testing.T, done <-chan sinkResult) sinkResult {
	t.Helper()
	select {
	case r := <-done:
		select {
		case again := <-done:
			t.Errorf("done called twice: %+v, then %+v", r, again)
		case <-time.After(50 * time.Millisecond):
		}
		return r
	case <-time.After(guard):
		t.Fatal("Sink's done was not called")
		return sinkResult{}
	}
}

func idleSink(t *testing.T, f *flushers, what string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, func() error {
		if n := f.running.Load(); n != 0 {
			return fmt.Errorf("%d flushers running", n)
		}
		return nil
	})
}

// finishSink ends a's writing and checks that the Sink's done counted
// want and that the socket's reader (got) received it whole and in order.
func finishSink(t *testing.T, a *Stream, w *net.TCPConn, done <-chan sinkResult, got <-chan []byte, want []byte) {
	t.Helper()
	a.CloseWrite()
	if r := waitSink(t, done); r.err != nil || r.n != int64(len(want)) {
		t.Fatalf("done(%d, %v), want (%d, nil)", r.n, r.err, len(want))
	}
	w.CloseWrite()
	if all := <-got; !bytes.Equal(all, want) {
		t.Fatalf("socket received %d bytes, want %d identical", len(all), len(want))
	}
}

// sendSpaced writes n messages made by msg to a, and to want, with gap
// after each, so that each reaches an idle stream.
func sendSpaced(t *testing.T, a *Stream, want *bytes.Buffer, n int, gap time.Duration, msg func(int) []byte) {
	t.Helper()
	for i := range n {
		m := msg(i)
		want.Write(m)
		if _, err := a.Write(m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
}

// Large frames reaching an idle Sink whose socket takes them at once need
// no flusher either, once the stream has had the link to itself for a
// while: the reader writes them, as it does small ones, and a goroutine
// hand-off per frame is saved. Beside another stream's frames they go to
// a flusher again, and the reader goes on to the other stream's.
func TestSinkWritesLargeFramesDirect(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	w, far := testutil.TCPPair(t)
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(far)
		got <- all
	}()
	var f flushers
	done := startSink(t, b, w, &f)
	idleSink(t, &f, "no flusher before any data")
	large := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 20<<10) } // over smallFrame, one frame
	var want bytes.Buffer
	sendSpaced(t, a, &want, loneRun, time.Millisecond, large) // the stream has the link to itself from here on
	idleSink(t, &f, "no flusher after the first frames")
	before := f.started.Load()
	sendSpaced(t, a, &want, 50, 2*time.Millisecond, large)
	idleSink(t, &f, "no flusher after the large frames")
	if started := f.started.Load() - before; started > 5 {
		t.Errorf("%d flushers started for 50 large frames of a lone stream, one at a time; the reader writes those", started)
	}

	c, d := openPair(t, client, server)
	go func() { _, _ = io.Copy(io.Discard, d) }()
	before = f.started.Load()
	sendSpaced(t, a, &want, 30, time.Millisecond, func(i int) []byte {
		if _, err := c.Write([]byte("small")); err != nil {
			t.Error(err)
		}
		return large(i)
	})
	idleSink(t, &f, "no flusher after the mixed frames")
	if started := f.started.Load() - before; started < 20 {
		t.Errorf("%d flushers started for 30 large frames each behind another stream's frame; want one for most", started)
	}

	finishSink(t, a, w, done, got, want.Bytes())
}

// What a Sink writes arrives complete and in order, small frames and
// large, and its done counts it at the peer's FIN. While the stream waits
// no goroutine of its runs, and small messages on an idle stream need no
// flusher: the session's reader writes them. What the socket does not
// take at once (here: nobody reads it yet) goes to a flusher.
func TestSinkDeliversWithoutAGoroutineWhileIdle(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	w, far := testutil.TCPPair(t)
	got, readNow := make(chan []byte, 1), make(chan struct{})
	go func() {
		<-readNow
		all, _ := io.ReadAll(far)
		got <- all
	}()
	var f flushers
	done := startSink(t, b, w, &f)
	idleSink(t, &f, "no flusher before any data")

	var want bytes.Buffer
	startedBefore := f.started.Load()
	sendSpaced(t, a, &want, 200, 200*time.Microsecond, func(i int) []byte { return fmt.Appendf(nil, "message %d;", i) })
	idleSink(t, &f, "no flusher after the small messages")
	if started := f.started.Load() - startedBefore; started > 20 {
		t.Errorf("%d flushers started for 200 small messages one at a time; the reader writes those", started)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB: large frames, more than the socket holds unread
	want.Write(big)
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(big)
		wrote <- err
	}()
	testutil.Eventually(t, 10*time.Second, "a flusher for what the full socket did not take", func() error {
		if n := f.started.Load(); n == startedBefore {
			return errors.New("no flusher started for the large write")
		}
		return nil
	})
	close(readNow)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	idleSink(t, &f, "no flusher once the large write is out")
	a.CloseWrite()
	r := waitSink(t, done)
	if r.err != nil || r.n != int64(want.Len()) {
		t.Fatalf("done(%d, %v), want (%d, nil)", r.n, r.err, want.Len())
	}
	w.CloseWrite()
	if all := <-got; !bytes.Equal(all, want.Bytes()) {
		t.Fatalf("socket received %d bytes, want %d identical", len(all), want.Len())
	}
	idleSink(t, &f, "no flusher after done")
}

// A socket that is not read fills; the stream's window then holds the
// sender back, and what the reader takes up afterwards arrives whole.
func TestSinkSlowReader(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	w, far := testutil.TCPPair(t)
	var f flushers
	done := startSink(t, b, w, &f)
	payload := bytes.Repeat([]byte("x"), 16<<20) // far beyond the socket buffers and the stream window
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(payload)
		if err == nil {
			err = a.CloseWrite()
		}
		wrote <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-wrote:
		t.Fatalf("16 MiB went into a stream whose socket nobody reads (%v): the window did not hold", err)
	default:
	}
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, far)
		read <- n
	}()
	r := waitSink(t, done)
	if r.err != nil || r.n != int64(len(payload)) {
		t.Fatalf("done(%d, %v), want (%d, nil)", r.n, r.err, len(payload))
	}
	w.CloseWrite()
	if n := <-read; n != int64(len(payload)) {
		t.Fatalf("socket received %d bytes, want %d", n, len(payload))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	idleSink(t, &f, "no flusher after done")
}

// Each way a stream can end tells done, once, with why: the peer's reset,
// the session's end, this end's Close, and a write to the socket that
// failed.
func TestSinkEnds(t *testing.T) {
	cases := []struct {
		name string
		end  func(t *testing.T, a, b *Stream, client *Session, far net.Conn)
		want func(error) bool
	}{
		{"peer reset", func(t *testing.T, a, _ *Stream, _ *Session, _ net.Conn) { a.Reset() },
			func(err error) bool { return errors.Is(err, ErrStreamReset) }},
		{"session closed", func(t *testing.T, _, _ *Stream, client *Session, _ net.Conn) { client.Close() },
			func(err error) bool { return errors.Is(err, ErrSessionClosed) }},
		{"closed here", func(t *testing.T, _, b *Stream, _ *Session, _ net.Conn) { b.Close() },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
		{"socket write fails", func(t *testing.T, a, _ *Stream, _ *Session, far net.Conn) {
			far.(*net.TCPConn).SetLinger(0)
			far.Close()
			time.Sleep(50 * time.Millisecond)
			for range 50 { // the first writes after a reset may still succeed
				if _, err := a.Write(bytes.Repeat([]byte("y"), 8<<10)); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}, func(err error) bool { return err != nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := sessionPair(t, overTLS, Config{}, Config{})
			a, b := openPair(t, client, server)
			w, far := testutil.TCPPair(t)
			var f flushers
			done := startSink(t, b, w, &f)
			if _, err := a.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("first bytes: %q %v", buf, err)
			}
			tc.end(t, a, b, client, far)
			r := waitSink(t, done)
			if !tc.want(r.err) {
				t.Errorf("done(%d, %v)", r.n, r.err)
			}
			if r.n < 5 {
				t.Errorf("done counted %d bytes, want at least the 5 delivered", r.n)
			}
			idleSink(t, &f, "no flusher after done")
		})
	}
}
