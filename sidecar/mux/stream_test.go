package mux

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/test/testutil"
)

func TestOpenFromBothEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tr     transport
		dialer bool // the client opens
	}{
		{"pipe/client opens", overPipe, true},
		{"pipe/server opens", overPipe, false},
		{"tls/client opens", overTLS, true},
		{"tls/server opens", overTLS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := sessionPair(t, tc.tr, Config{}, Config{})
			from, to := server, client
			if tc.dialer {
				from, to = client, server
			}
			var ids []uint32
			for range 3 {
				a, b := openPair(t, from, to)
				ids = append(ids, a.ID())
				want := []byte("hello from " + tc.name)
				go func() {
					a.Write(want)
					a.CloseWrite()
				}()
				got, err := io.ReadAll(b)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if diff := cmp.Diff(string(got), string(want)); diff != "" {
					t.Errorf("payload (-got +want):\n%s", diff)
				}
				b.Write([]byte("reply"))
				b.Close()
				reply, err := io.ReadAll(a)
				if err != nil || string(reply) != "reply" {
					t.Errorf("reply = %q, %v; want %q, nil", reply, err, "reply")
				}
				a.Close()
			}
			want := []uint32{2, 4, 6}
			if tc.dialer {
				want = []uint32{1, 3, 5}
			}
			if diff := cmp.Diff(ids, want); diff != "" {
				t.Errorf("stream IDs (-got +want):\n%s", diff)
			}
			testutil.Until(t, guard, "streams to be freed", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
		})
	}
}

// TestConcurrentEcho runs many streams at once, each echoing a random
// payload of a few MiB, and checks every byte.
func TestConcurrentEcho(t *testing.T) {
	streams, minSize, maxSize := 200, 1<<20, 3<<20
	if testing.Short() {
		streams, minSize, maxSize = 20, 256<<10, 1<<20
	}
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	go func() {
		for {
			st, err := server.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				if _, err := io.Copy(st, st); err != nil {
					t.Errorf("server stream %d: copy: %v", st.ID(), err)
				}
				st.CloseWrite()
			}()
		}
	}()

	random := make([]byte, 2*maxSize)
	rand.NewChaCha8([32]byte{}).Read(random)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			// A random slice of random bytes: a payload of its own.
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			size := minSize + rng.IntN(maxSize-minSize)
			off := rng.IntN(len(random) - size)
			payload := random[off : off+size]
			st, err := client.Open(t.Context())
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			defer st.Close()
			go func() {
				// Uneven writes to exercise framing.
				for p := payload; len(p) > 0; {
					n := min(len(p), 1+rng.IntN(100<<10))
					if _, err := st.Write(p[:n]); err != nil {
						t.Errorf("stream %d: write: %v", st.ID(), err)
						return
					}
					p = p[n:]
				}
				st.CloseWrite()
			}()
			h := sha256.New()
			n, err := io.Copy(h, st)
			if err != nil {
				t.Errorf("stream %d: read: %v", st.ID(), err)
				return
			}
			if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), sum(payload)) {
				t.Errorf("stream %d: echoed %d bytes with another checksum, want %d bytes", st.ID(), n, len(payload))
			}
		})
	}
	within(t, "echo", wg.Wait)
	testutil.Until(t, guard, "streams to be freed", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
}

func sum(p []byte) []byte {
	s := sha256.Sum256(p)
	return s[:]
}

func TestHalfClose(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	go func() {
		c.Write([]byte("request"))
		c.CloseWrite()
	}()
	req, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("server read: %v", err)
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after CloseWrite: %v, want net.ErrClosed", err)
	}
	if _, err := s.Write(append([]byte("reply to "), req...)); err != nil {
		t.Fatalf("server write: %v", err)
	}
	s.Close()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if diff := cmp.Diff(string(reply), "reply to request"); diff != "" {
		t.Errorf("reply (-got +want):\n%s", diff)
	}
	c.Close()
	testutil.Until(t, guard, "streams to be freed", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
}

func TestReset(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	c.Write([]byte("doomed"))
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 100)
		for {
			if _, err := s.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	if err := c.Reset(); err != nil {
		t.Fatalf("reset: %v", err)
	}
	var err error
	within(t, "peer read", func() { err = <-readErr })
	if !errors.Is(err, ErrStreamReset) {
		t.Errorf("peer read: %v, want ErrStreamReset", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Errorf("peer write: %v, want ErrStreamReset", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrStreamReset) {
		t.Errorf("own read: %v, want ErrStreamReset", err)
	}
	testutil.Until(t, guard, "streams to be freed", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
}

// TestCloseWithUnreadData: closing before the peer finished discards what
// was not read and stops the peer's writes, while the peer still reads
// what was written before the close.
func TestCloseWithUnreadData(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	if _, err := c.Write(bytes.Repeat([]byte("x"), 100<<10)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := s.Write([]byte("bye")); err != nil {
		t.Fatalf("write: %v", err)
	}
	s.Close() // 100 KiB unread
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Errorf("read = %q, %v; want %q, nil", got, err, "bye")
	}
	// The STOP came before the FIN, so the peer's writes fail by now.
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Errorf("write after peer closed: %v, want ErrStreamReset", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v, want net.ErrClosed", err)
	}
	c.Close()
	testutil.Until(t, guard, "streams to be freed", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
}

func TestDeadlines(t *testing.T) {
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
	}
	t.Run("read deadline expires while blocked", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := sessionPair(t, overPipe, Config{}, Config{})
			c, _ := openPair(t, client, server)
			start := time.Now()
			c.SetReadDeadline(start.Add(time.Second))
			_, err := c.Read(make([]byte, 1))
			if !isTimeout(err) {
				t.Fatalf("read: %v, want a timeout", err)
			}
			if d := time.Since(start); d != time.Second {
				t.Errorf("read returned after %v, want 1s (fake clock)", d)
			}
		})
	})
	t.Run("deadline set while blocked", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := sessionPair(t, overPipe, Config{}, Config{})
			c, _ := openPair(t, client, server)
			errc := make(chan error)
			go func() {
				_, err := c.Read(make([]byte, 1))
				errc <- err
			}()
			synctest.Wait()
			c.SetReadDeadline(time.Now())
			if err := <-errc; !isTimeout(err) {
				t.Fatalf("read: %v, want a timeout", err)
			}
		})
	})
	t.Run("cleared deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := sessionPair(t, overPipe, Config{}, Config{})
			c, s := openPair(t, client, server)
			c.SetDeadline(time.Now().Add(-time.Second))
			if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
				t.Fatalf("read with past deadline: %v, want a timeout", err)
			}
			if _, err := c.Write([]byte("x")); !isTimeout(err) {
				t.Fatalf("write with past deadline: %v, want a timeout", err)
			}
			c.SetDeadline(time.Time{})
			s.Write([]byte("ok"))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
				t.Errorf("read = %q, %v; want %q, nil", buf, err, "ok")
			}
		})
	})
	t.Run("write deadline while the window is full", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := sessionPair(t, overPipe, Config{}, Config{})
			c, _ := openPair(t, client, server)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := c.Write(make([]byte, DefaultStreamWindow+1))
			if !isTimeout(err) {
				t.Fatalf("write: %v, want a timeout", err)
			}
			if n != DefaultStreamWindow {
				t.Errorf("wrote %d bytes before the timeout, want the window, %d", n, DefaultStreamWindow)
			}
		})
	})
}

// TestFlowControlIsolation: a stream whose reader stopped reading fills
// its window and blocks its writer, while another stream keeps flowing.
func TestFlowControlIsolation(t *testing.T) {
	client, server := sessionPair(t, overTCP, Config{}, Config{})
	stuck, stuckPeer := openPair(t, client, server)
	flowing, flowingPeer := openPair(t, client, server)

	// Fill the stuck stream's window, which the peer does not read.
	if _, err := stuck.Write(make([]byte, DefaultStreamWindow)); err != nil {
		t.Fatalf("fill window: %v", err)
	}
	stuck.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	if n, err := stuck.Write([]byte("x")); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write beyond the window = %d, %v; want 0 and a timeout", n, err)
	}
	stuck.SetWriteDeadline(time.Time{})
	blocked := make(chan error, 1)
	go func() {
		_, err := stuck.Write(make([]byte, 1<<20))
		blocked <- err
	}()

	// Meanwhile 8 MiB go through the other stream, far beyond a window.
	payload := bytes.Repeat([]byte("flowing "), 1<<20)
	go func() {
		flowing.Write(payload)
		flowing.CloseWrite()
	}()
	var got []byte
	within(t, "second stream", func() { got, _ = io.ReadAll(flowingPeer) })
	if !bytes.Equal(got, payload) {
		t.Fatalf("second stream carried %d bytes, want %d", len(got), len(payload))
	}
	select {
	case err := <-blocked:
		t.Fatalf("write on the stuck stream returned (%v) before its peer read", err)
	default:
	}

	// Reading the stuck stream releases its writer.
	var n int64
	within(t, "stuck stream", func() {
		n, _ = io.CopyN(io.Discard, stuckPeer, DefaultStreamWindow+1<<20)
	})
	if n != DefaultStreamWindow+1<<20 {
		t.Errorf("stuck stream carried %d bytes, want %d", n, DefaultStreamWindow+1<<20)
	}
	if err := <-blocked; err != nil {
		t.Errorf("stuck write: %v", err)
	}
}

func TestWriteTo(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	payload := make([]byte, 3<<20+17)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("WriteTo = %d, %v; want %d, nil", n, err, len(payload))
	}
	if !bytes.Equal(buf.Bytes(), payload) {
		t.Error("WriteTo delivered other bytes")
	}
}

// TestReadFrom copies readers of every shape into a stream with io.Copy,
// which uses Stream.ReadFrom.
func TestReadFrom(t *testing.T) {
	payload := make([]byte, 1<<20+3)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return onlyReader{bytes.NewReader(payload)} }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(payload)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(payload)) }},
		{"one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(payload[:5000])) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := sessionPair(t, overPipe, Config{}, Config{})
			c, s := openPair(t, client, server)
			want := payload
			if tc.name == "one byte" {
				want = payload[:5000]
			}
			go func() {
				n, err := io.Copy(c, tc.r())
				if err != nil || n != int64(len(want)) {
					t.Errorf("copy = %d, %v; want %d, nil", n, err, len(want))
				}
				c.CloseWrite()
			}()
			got, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %d bytes, other than the %d sent", len(got), len(want))
			}
		})
	}
	t.Run("reader error", func(t *testing.T) {
		client, server := sessionPair(t, overPipe, Config{}, Config{})
		c, s := openPair(t, client, server)
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader([]byte("partial")), iotest.ErrReader(boom))
		if n, err := io.Copy(c, r); n != 7 || !errors.Is(err, boom) {
			t.Errorf("copy = %d, %v; want 7, boom", n, err)
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "partial" {
			t.Errorf("read = %q, %v", buf, err)
		}
	})
}

// onlyReader hides a reader's WriteTo.
type onlyReader struct{ io.Reader }

// OpenWrite: the peer accepts the stream with its first data, and the OPEN
// frame comes right before that data on the wire.
func TestOpenWrite(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	st, err := client.OpenWrite(t.Context(), []byte("header"))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := server.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(acc, buf); err != nil || string(buf) != "header" {
		t.Fatalf("accepted stream read %q, %v", buf, err)
	}
	if acc.ID() != st.ID() {
		t.Fatalf("accepted id %d, opened %d", acc.ID(), st.ID())
	}

	s, peer := newRawPeer(t, true, Config{})
	if _, err := s.OpenWrite(t.Context(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	open := peer.next(t, frameOpen)
	data := peer.next(t, frameData)
	if open.id != data.id || string(data.payload) != "hi" {
		t.Fatalf("OPEN id %d, DATA id %d payload %q", open.id, data.id, data.payload)
	}
}

// WriteTo into a socket: small frames the session reader writes straight
// to the socket while WriteTo waits arrive complete, in order, and are
// counted in WriteTo's total.
func TestWriteToSocketDirect(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		all, _ := io.ReadAll(c)
		got <- all
	}()
	sink, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	done := make(chan int64, 1)
	go func() {
		n, _ := b.WriteTo(sink)
		sink.Close()
		done <- n
	}()
	for i := range 2000 {
		msg := []byte(fmt.Sprintf("message %d;", i))
		want = append(want, msg...)
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // let WriteTo park, so the direct path is taken
		}
	}
	a.CloseWrite()
	if n := <-done; n != int64(len(want)) {
		t.Fatalf("WriteTo returned %d, want %d", n, len(want))
	}
	if all := <-got; string(all) != string(want) {
		t.Fatalf("socket received %d bytes, want %d identical", len(all), len(want))
	}
}
