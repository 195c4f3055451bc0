package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// notes records the notifications of a stream and what each read.
type notes struct {
	mu     sync.Mutex
	calls  int
	got    bytes.Buffer
	errs   []error
	laters int // work left for the burst's end that ran
	ch     chan struct{}
}

func newNotes() *notes { return &notes{ch: make(chan struct{}, 64)} }

// arm arms st's notification to read all it holds, and again until an
// error; false if st already held something (read at once then).
func (n *notes) arm(st *Stream) {
	var fn func(later func(func()))
	fn = func(later func(func())) {
		n.mu.Lock()
		n.calls++
		n.mu.Unlock()
		later(func() {
			n.mu.Lock()
			n.laters++
			n.mu.Unlock()
		})
		for !n.drain(st) {
			if !st.Notify(fn) {
				break
			}
		}
		n.ch <- struct{}{}
	}
	for !n.drain(st) {
		if !st.Notify(fn) {
			return
		}
	}
}

// drain reads what st holds; true once it failed (no more to wait for).
func (n *notes) drain(st *Stream) bool {
	var buf [5]byte // smaller than a message: TryRead is called again
	for {
		k, err := st.TryRead(buf[:])
		n.mu.Lock()
		n.got.Write(buf[:k])
		if err != nil {
			n.errs = append(n.errs, err)
		}
		n.mu.Unlock()
		if err != nil {
			return true
		}
		if k == 0 {
			return false
		}
	}
}

func (n *notes) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-n.ch:
	case <-time.After(guard):
		t.Fatalf("no notification: %s", what)
	}
}

func (n *notes) state() (calls, laters int, got string, errs []error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls, n.laters, n.got.String(), append([]error(nil), n.errs...)
}

// Data, the peer's FIN, and work left for the burst's end: a stream is
// read through Notify and TryRead with no goroutine waiting for it.
func TestNotifyReadsWithoutWaiting(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	if k, err := b.TryRead(make([]byte, 8)); k != 0 || err != nil {
		t.Fatalf("TryRead on an empty stream = %d, %v; want 0, nil", k, err)
	}
	n := newNotes()
	n.arm(b)
	if _, err := a.Write([]byte("first message;")); err != nil {
		t.Fatal(err)
	}
	n.wait(t, "the first message")
	if _, err := a.Write([]byte("second;")); err != nil {
		t.Fatal(err)
	}
	n.wait(t, "the second message")
	// The later work runs once the reader has read the frames at hand,
	// after the notification returned.
	deadline := time.Now().Add(guard)
	calls, laters, got, errs := n.state()
	for laters < calls && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		calls, laters, got, errs = n.state()
	}
	if got != "first message;second;" || len(errs) != 0 {
		t.Fatalf("read %q with errors %v", got, errs)
	}
	if calls < 2 || laters != calls {
		t.Fatalf("%d notifications, %d of their later work ran; want at least 2, all", calls, laters)
	}
	a.CloseWrite()
	n.wait(t, "the FIN")
	if _, _, _, errs := n.state(); len(errs) != 1 || errs[0] != io.EOF {
		t.Fatalf("errors after FIN %v, want [EOF]", errs)
	}
	// Data already held: Notify says so and arms nothing.
	c, d := openPair(t, client, server)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{})
	if !d.Notify(func(func(func())) { close(arrived) }) {
		select {
		case <-arrived:
		case <-time.After(guard):
			t.Fatal("the data never arrived")
		}
	}
	if !d.Notify(func(func(func())) { t.Error("a notification called though Notify reported data held") }) {
		t.Fatal("Notify armed though the stream holds data")
	}
	if k, err := d.TryRead(make([]byte, 8)); k != 4 || err != nil {
		t.Fatalf("TryRead = %d, %v; want 4, nil", k, err)
	}
	if _, err := c.Write([]byte("more")); err != nil { // must not call the first fn
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
}

// A notification armed when this end closes the stream, or the session
// ends, is called: whoever waits for the answer learns it never comes.
func TestNotifyOnCloseAndSessionEnd(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, _ := openPair(t, client, server)
	n := newNotes()
	n.arm(a)
	a.Close()
	n.wait(t, "this end's close")
	if _, _, _, errs := n.state(); len(errs) != 1 || !errors.Is(errs[0], net.ErrClosed) {
		t.Fatalf("errors %v, want a closed stream's", errs)
	}
	c, _ := openPair(t, client, server)
	m := newNotes()
	m.arm(c)
	server.Close()
	m.wait(t, "the session's end")
	if _, _, _, errs := m.state(); len(errs) != 1 || !errors.Is(errs[0], ErrSessionClosed) {
		t.Fatalf("errors %v, want the session's end", errs)
	}
}

// Messages of two streams written unflushed leave once the session is
// flushed, in order, and WriteUnflushed names the session to flush.
func TestWriteUnflushed(t *testing.T) {
	client, server := sessionPair(t, overTLS, Config{}, Config{})
	a, b := openPair(t, client, server)
	c, d := openPair(t, client, server)
	f1, n1, err1 := a.WriteUnflushed([]byte("to b;"))
	f2, n2, err2 := c.WriteUnflushed([]byte("to d;"))
	if err1 != nil || err2 != nil || n1 != 5 || n2 != 5 {
		t.Fatalf("WriteUnflushed = %d, %v and %d, %v", n1, err1, n2, err2)
	}
	if f1 != f2 || f1 != any(client) {
		t.Fatalf("flushers %v and %v, want the session", f1, f2)
	}
	f1.Flush()
	for _, s := range []struct {
		st   *Stream
		want string
	}{{b, "to b;"}, {d, "to d;"}} {
		buf := make([]byte, 16)
		within(t, "the unflushed message after Flush", func() {
			n, err := io.ReadAtLeast(s.st, buf, len(s.want))
			if err != nil || string(buf[:n]) != s.want {
				t.Errorf("read %q, %v; want %q", buf[:n], err, s.want)
			}
		})
	}
}
