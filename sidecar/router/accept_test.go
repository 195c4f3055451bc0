package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// acceptGuard bounds waits that only a bug makes long.
const acceptGuard = 10 * time.Second

// flakyListener is a real listener whose Accept first fails with errs, one
// per call, as the kernel's accept4 would.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	errs  []error
	calls int
}

func newFlakyListener(t *testing.T, errs ...error) *flakyListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &flakyListener{Listener: ln, errs: errs}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func (l *flakyListener) failuresLeft() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

// acceptErr is an accept error as net.TCPListener returns it.
func acceptErr(ln net.Listener, err error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: ln.Addr(), Err: err}
}

func repeat(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// timeoutErr is a net.Error that is a timeout.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// logLines collects the lines of a logr.Logger.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
	}, funcr.Options{})
}

// count returns how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestAcceptLoopRetries: accept errors that pass (file descriptors or
// memory run out, a queued connection aborted, a timeout) and errors of
// unknown kind do not stop the loop: it retries with backoff, serves the
// connection that waited in the kernel's queue meanwhile, and logs the
// failures rate-limited (3 lines for 5 failures, then "accepting again").
func TestAcceptLoopRetries(t *testing.T) {
	const failures = 5
	for _, tc := range []struct {
		name      string
		err       error
		transient bool
	}{
		{"EMFILE", os.NewSyscallError("accept4", syscall.EMFILE), true},
		{"ENFILE", os.NewSyscallError("accept4", syscall.ENFILE), true},
		{"ECONNABORTED", os.NewSyscallError("accept4", syscall.ECONNABORTED), true},
		{"ENOBUFS", os.NewSyscallError("accept4", syscall.ENOBUFS), true},
		{"ENOMEM", os.NewSyscallError("accept4", syscall.ENOMEM), true},
		{"EAGAIN", os.NewSyscallError("accept4", syscall.EAGAIN), true},
		{"timeout", timeoutErr{}, true},
		{"unknown", errors.New("something odd"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := newFlakyListener(t)
			ln.errs = repeat(acceptErr(ln, tc.err), failures)
			if got := transientAcceptError(ln.errs[0]); got != tc.transient {
				t.Errorf("transientAcceptError(%v) = %v, want %v", ln.errs[0], got, tc.transient)
			}
			var logs logLines
			accepted := make(chan net.Conn, 1)
			done := make(chan struct{})
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				defer close(done)
				acceptLoop(ctx, ln, logs.logger(), func(c net.Conn) { accepted <- c })
			}()
			defer func() { cancel(); <-done }()

			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			select {
			case c := <-accepted:
				c.Close()
			case <-done:
				t.Fatalf("acceptLoop returned after %v", tc.err)
			case <-time.After(acceptGuard):
				t.Fatalf("no connection accepted after %d failures", failures)
			}
			if n := ln.failuresLeft(); n != 0 {
				t.Errorf("%d failures not consumed", n)
			}
			if got := logs.count(`"msg"="accept failed, retrying"`); got != acceptLogBurst {
				t.Errorf("%d lines say the accept failed, want %d (rate-limited):\n%s", got, acceptLogBurst, &logs)
			}
			if got := logs.count(fmt.Sprintf(`"msg"="accepting again" "failedAccepts"=%d`, failures)); got != 1 {
				t.Errorf("%d lines say the listener recovered after %d failures, want 1:\n%s", got, failures, &logs)
			}
			if got, want := logs.count(`"error"=`), acceptLogBurst; got != want {
				t.Errorf("%d lines carry the error, want %d:\n%s", got, want, &logs)
			}

			// And the next connection is served too.
			client2, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client2.Close()
			select {
			case c := <-accepted:
				c.Close()
			case <-time.After(acceptGuard):
				t.Fatal("second connection not accepted")
			}
		})
	}
}

// TestAcceptLoopBackoff: the pauses between failed accepts double from
// 5 ms and stop at 1 s; a success resets them.
func TestAcceptLoopBackoff(t *testing.T) {
	var pauses []time.Duration
	var pause time.Duration
	for range 10 {
		pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
		pauses = append(pauses, pause)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if pauses[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", pauses, want)
		}
	}
	// 5 failures take 5+10+20+40+80 ms: the loop really waits.
	ln := newFlakyListener(t)
	ln.errs = repeat(acceptErr(ln, os.NewSyscallError("accept4", syscall.EMFILE)), 5)
	accepted := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		acceptLoop(ctx, ln, logr.Discard(), func(c net.Conn) { c.Close(); accepted <- time.Now() })
	}()
	defer func() { cancel(); <-done }()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	select {
	case at := <-accepted:
		if d := at.Sub(start); d < 155*time.Millisecond {
			t.Errorf("accepted %v after 5 failures, want at least 155ms of backoff", d)
		}
	case <-time.After(acceptGuard):
		t.Fatal("no connection accepted")
	}
}

// TestAcceptLoopStops: the loop returns when the listener is closed, and
// when ctx ends, whether it waits in Accept or in a backoff pause; it
// closes the listener then.
func TestAcceptLoopStops(t *testing.T) {
	run := func(t *testing.T, ln net.Listener, ctx context.Context) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			acceptLoop(ctx, ln, logr.Discard(), func(c net.Conn) { c.Close() })
		}()
		return done
	}
	wait := func(t *testing.T, done chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(acceptGuard):
			t.Fatal("acceptLoop did not return")
		}
	}
	t.Run("listener closed", func(t *testing.T) {
		ln := newFlakyListener(t)
		done := run(t, ln, t.Context())
		ln.Close()
		wait(t, done)
	})
	t.Run("context ends in Accept", func(t *testing.T) {
		ln := newFlakyListener(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := run(t, ln, ctx)
		cancel()
		wait(t, done)
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Error("the listener still accepts after the loop returned")
		}
	})
	t.Run("context ends in backoff", func(t *testing.T) {
		ln := newFlakyListener(t)
		ln.errs = repeat(acceptErr(ln, os.NewSyscallError("accept4", syscall.EMFILE)), 1000)
		ctx, cancel := context.WithCancel(t.Context())
		done := run(t, ln, ctx)
		for ln.failuresLeft() > 996 { // in the pauses
			time.Sleep(time.Millisecond)
		}
		cancel()
		wait(t, done)
	})
}

// TestServeListenerSurvivesEMFILE: a gateway listener keeps accepting
// after its accept failed with EMFILE (issue 12: it returned for good).
// With no endpoint for the address, each connection it serves is closed
// and counted as a connect failure.
func TestServeListenerSurvivesEMFILE(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs logLines
	r, err := New(Config{Site: "pod", Role: RoleSidecar, Metrics: m, Log: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	ln := newFlakyListener(t)
	ln.errs = repeat(acceptErr(ln, os.NewSyscallError("accept4", syscall.EMFILE)), 3)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serveListener(ctx, &boundListener{ln: ln, address: "backend", port: 8080})
	}()
	defer func() { cancel(); <-done }()
	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(acceptGuard))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: read %v, want EOF (served and closed: no endpoint)", i, err)
		}
	}
	select {
	case <-done:
		t.Fatal("serveListener returned")
	default:
	}
	var failures dto.Metric
	if err := m.ConnectFailures.WithLabelValues("backend", "no_endpoint").Write(&failures); err != nil {
		t.Fatal(err)
	}
	if got := failures.GetCounter().GetValue(); got != 2 {
		t.Errorf("connect failures = %v, want 2", got)
	}
	if logs.count(`"msg"="accept failed, retrying"`) == 0 {
		t.Errorf("the failed accepts were not logged:\n%s", &logs)
	}
}

// TestHandshakeLimiter: connections waiting for their handshake are
// capped in all and per address; release gives a slot back once, however
// often it is called.
func TestHandshakeLimiter(t *testing.T) {
	addr := func(s string) net.Addr {
		ap, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	type step struct {
		acquire string // remote address to acquire for; "" releases
		release int    // with acquire "": index of the step whose slot to release
		want    error
	}
	for _, tc := range []struct {
		name          string
		global, perIP int
		steps         []step
	}{
		{"per address", 10, 2, []step{
			{acquire: "10.0.0.1:1000"},
			{acquire: "10.0.0.1:1001"},
			{acquire: "10.0.0.1:1002", want: errPendingLimitIP},
			{acquire: "10.0.0.2:1000"},
			{release: 0},
			{acquire: "10.0.0.1:1003"},
			{acquire: "10.0.0.1:1004", want: errPendingLimitIP},
		}},
		{"global", 3, 2, []step{
			{acquire: "10.0.0.1:1"},
			{acquire: "10.0.0.2:1"},
			{acquire: "10.0.0.3:1"},
			{acquire: "10.0.0.4:1", want: errPendingLimit},
			{release: 1},
			{acquire: "10.0.0.4:1"},
		}},
		{"release twice counts once", 3, 2, []step{
			{acquire: "10.0.0.1:1"},
			{acquire: "10.0.0.1:2"},
			{release: 0},
			{release: 0},
			{acquire: "10.0.0.1:3"},
			{acquire: "10.0.0.1:4", want: errPendingLimitIP},
		}},
		{"an IPv6 /64 is one address", 10, 2, []step{
			{acquire: "[2001:db8:1:2::1]:1"},
			{acquire: "[2001:db8:1:2:ffff::9]:1"},
			{acquire: "[2001:db8:1:2::77]:1", want: errPendingLimitIP},
			{acquire: "[2001:db8:1:3::1]:1"},
		}},
		{"IPv4-mapped IPv6 is the IPv4 address", 10, 1, []step{
			{acquire: "10.0.0.1:1"},
			{acquire: "[::ffff:10.0.0.1]:2", want: errPendingLimitIP},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandshakeLimiter(tc.global, tc.perIP)
			releases := make([]func(), len(tc.steps))
			for i, s := range tc.steps {
				if s.acquire == "" {
					releases[s.release]()
					continue
				}
				release, err := h.acquire(addr(s.acquire))
				if !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
					t.Fatalf("step %d: acquire(%s) = %v, want %v", i, s.acquire, err, s.want)
				}
				if err == nil {
					releases[i] = release
				} else if release != nil {
					t.Fatalf("step %d: a refusal returned a release func", i)
				}
			}
			for _, release := range releases {
				if release != nil {
					release()
				}
			}
			if total, _ := h.pending(nil); total != 0 || len(h.byIP) != 0 {
				t.Errorf("after every release: %d pending, %d addresses tracked; want none", total, len(h.byIP))
			}
		})
	}
}

// TestLinkAdmission: beyond the per-address cap, connections to the link
// port are closed at once (the client reads EOF without sending a byte)
// and logged rate-limited; those admitted stay open until released.
func TestLinkAdmission(t *testing.T) {
	var logs logLines
	a := newLinkAdmission(logs.logger())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const conns = maxPendingHandshakesPerIP + 20
	var releases []func()
	refused := map[string]int{}
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		release, reason := a.admit(s)
		if reason != "" {
			refused[reason]++
			continue
		}
		releases = append(releases, release)
		defer s.Close()
	}
	if len(releases) != maxPendingHandshakesPerIP || refused["pending_limit_ip"] != 20 {
		t.Fatalf("admitted %d, refused %v; want %d admitted, 20 refused per address", len(releases), refused, maxPendingHandshakesPerIP)
	}
	for i, c := range clients[maxPendingHandshakesPerIP:] {
		c.SetReadDeadline(time.Now().Add(acceptGuard))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("refused connection %d: read %v, want EOF", maxPendingHandshakesPerIP+i, err)
		}
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for i, c := range clients[:maxPendingHandshakesPerIP] {
		c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("admitted connection %d: read %v, want it open", i, err)
		}
	}
	if got := logs.count(`"msg"="link connection refused"`); got != admissionLogBurst {
		t.Errorf("%d refusals logged, want %d (rate-limited):\n%s", got, admissionLogBurst, &logs)
	}
	// Released slots admit again.
	releases[0]()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, reason := a.admit(s); reason != "" {
		t.Errorf("after a release: refused (%s)", reason)
	}
}
