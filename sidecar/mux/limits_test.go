package mux

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// TestMaxIncomingStreams: a peer that opens far more streams than
// MaxIncomingStreams gets the extra ones refused with RST REFUSED, each
// counted through OnRefuse; the session lives on, and an application that
// runs a goroutine per accepted stream (as the router does) runs at most
// MaxIncomingStreams of them.
func TestMaxIncomingStreams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   int // Config.MaxIncomingStreams
		limit int // what it means
		opens int
	}{
		{"one", 1, 1, 3},
		{"sixteen", 16, 16, 100},
		{"default, a flood of 100k", 0, DefaultMaxIncomingStreams, 100_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			var refused [RefusedGoingAway + 1]atomic.Int64
			s, peer := newRawPeer(t, false, Config{
				MaxIncomingStreams: tc.cfg,
				OnRefuse:           func(r RefuseReason) { refused[r].Add(1) },
			})

			// The application: one goroutine per accepted stream, held
			// until the stream ends. Beyond the limit the stream is
			// closed at once, so that the old behaviour fails the test
			// without a goroutine per OPEN.
			var live, accepted, over atomic.Int64
			var handlers sync.WaitGroup
			held := make(chan *Stream, tc.limit)
			acceptorDone := make(chan struct{})
			go func() {
				defer close(acceptorDone)
				for {
					st, err := s.Accept()
					if err != nil {
						return
					}
					accepted.Add(1)
					if live.Add(1) > int64(tc.limit) {
						over.Add(1)
						live.Add(-1)
						st.Close()
						continue
					}
					select {
					case held <- st:
					default:
					}
					handlers.Go(func() {
						defer live.Add(-1)
						st.Read(make([]byte, 1)) // until reset or the session ends
					})
				}
			}()
			t.Cleanup(func() {
				s.Close()
				<-acceptorDone
				handlers.Wait()
			})

			peer.send(settingsFrame(initialWindow, initialFrameSize))
			var batch []byte
			for i := range tc.opens {
				batch = append(batch, frameBytes(frameOpen, uint32(2*i+1), 0, nil)...)
				if len(batch) >= 64<<10 || i == tc.opens-1 {
					peer.send(batch)
					batch = batch[:0]
				}
			}
			total := func() int64 {
				return accepted.Load() + refused[RefusedStreamLimit].Load() + refused[RefusedBacklog].Load()
			}
			testutil.Until(t, guard, "every OPEN to be accepted or refused", func() bool {
				return total() >= int64(tc.opens) || s.Err() != nil
			})
			if err := s.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
			if n := over.Load(); n > 0 {
				t.Fatalf("%d streams accepted beyond the limit of %d", n, tc.limit)
			}
			if got, want := accepted.Load(), int64(tc.limit); got != want {
				t.Errorf("accepted %d streams, want %d", got, want)
			}
			if got, want := refused[RefusedStreamLimit].Load(), int64(tc.opens-tc.limit); got != want {
				t.Errorf("OnRefuse(stream limit) called %d times, want %d", got, want)
			}
			if n := refused[RefusedBacklog].Load() + refused[RefusedGoingAway].Load(); n != 0 {
				t.Errorf("%d refusals for another reason", n)
			}
			testutil.Until(t, guard, "a handler per accepted stream", func() bool { return live.Load() == int64(tc.limit) })
			// The session's three, the raw peer's reader, the acceptor:
			// the rest are the handlers, one per open stream.
			if grown := runtime.NumGoroutine() - base; grown > tc.limit+8 {
				t.Errorf("%d more goroutines after %d OPENs, want at most %d + 8", grown, tc.opens, tc.limit)
			}
			if n := s.NumStreams(); n != tc.limit {
				t.Errorf("NumStreams = %d, want %d", n, tc.limit)
			}

			// The cap is on streams open at once: once one ends, the
			// peer may open another.
			first := <-held
			peer.send(frameBytes(frameRst, first.ID(), rstCancel, nil))
			testutil.Until(t, guard, "the reset stream's handler to end", func() bool { return live.Load() == int64(tc.limit)-1 })
			testutil.Until(t, guard, "the reset stream to be forgotten", func() bool { return s.NumStreams() == tc.limit-1 })
			peer.send(frameBytes(frameOpen, uint32(2*tc.opens+1), 0, nil))
			testutil.Until(t, guard, "the next OPEN to be accepted", func() bool { return accepted.Load() == int64(tc.limit)+1 })
			peer.send(frameBytes(frameOpen, uint32(2*tc.opens+3), 0, nil))
			testutil.Until(t, guard, "the OPEN after it to be refused", func() bool {
				return refused[RefusedStreamLimit].Load() == int64(tc.opens-tc.limit+1)
			})
			if err := s.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
		})
	}
}

// TestStreamLimitRefusal: the opener of a stream beyond the peer's limit
// sees RST REFUSED on that stream alone (ErrStreamReset), and streams
// already open carry on both ways.
func TestStreamLimitRefusal(t *testing.T) {
	var refusals atomic.Int64
	client, server := sessionPair(t, overPipe, Config{}, Config{
		MaxIncomingStreams: 2,
		OnRefuse:           func(RefuseReason) { refusals.Add(1) },
	})
	c1, s1 := openPair(t, client, server)
	openPair(t, client, server)
	extra, err := client.Open(t.Context())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	extra.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard: the RST comes at once
	_, err = extra.Read(make([]byte, 1))
	if !errors.Is(err, ErrStreamReset) || !strings.Contains(err.Error(), "refused by peer") {
		t.Fatalf("read on the stream beyond the limit: %v, want a refusal (ErrStreamReset)", err)
	}
	if n := refusals.Load(); n != 1 {
		t.Errorf("OnRefuse called %d times, want 1", n)
	}
	if _, err := c1.Write([]byte("ping")); err != nil {
		t.Fatalf("write on an open stream: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := s1.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read on an open stream: %q, %v", buf, err)
	}
	// Streams this end opens do not count against the peer's limit.
	if _, err := server.Open(t.Context()); err != nil {
		t.Fatalf("server open: %v", err)
	}
	if err := errors.Join(client.Err(), server.Err()); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}
