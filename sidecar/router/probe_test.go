package router

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

func TestIsProbe(t *testing.T) {
	for _, tc := range []struct {
		dst  *net.TCPAddr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 15002}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15002}, true},    // 16-byte form
		{&net.TCPAddr{IP: net.IPv4(127, 182, 8, 64), Port: 15002}, true}, // a site's (east's)
		{&net.TCPAddr{IP: net.IPv4(127, 128, 0, 0), Port: 15002}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 15002}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 127, 255, 255), Port: 15002}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15001}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 182, 8, 64), Port: 15001}, false},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 15002}, false},
		{&net.TCPAddr{IP: net.IPv4(10, 96, 0, 10), Port: 15002}, false},
	} {
		if got := isProbe(tc.dst); got != tc.want {
			t.Errorf("isProbe(%s) = %v, want %v", tc.dst, got, tc.want)
		}
	}
}

// One attempt of the self-check against stand-ins for what may be at the
// address: the sidecar's answer, something else, silence, nobody.
func TestProbeRedirect(t *testing.T) {
	serve := func(t *testing.T, answer func(net.Conn)) string {
		ln := listenAnswer(t, "127.0.0.1:0", answer)
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	t.Run("the sidecar answers", func(t *testing.T) {
		if err := probeRedirect(t.Context(), serve(t, answerProbe), "east"); err != nil {
			t.Errorf("probeRedirect = %v, want nil", err)
		}
	})
	t.Run("something else answers", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH_9.2p1\r\n")); c.Close() })
		if err := probeRedirect(t.Context(), addr, "east"); !errors.Is(err, errWrongAnswer) {
			t.Errorf("probeRedirect = %v, want errWrongAnswer", err)
		}
	})
	t.Run("an endless answer", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) { c.Write([]byte(strings.Repeat("skiff-redirect-ok", 100))); c.Close() })
		if err := probeRedirect(t.Context(), addr, "east"); !errors.Is(err, errWrongAnswer) {
			t.Errorf("probeRedirect = %v, want errWrongAnswer", err)
		}
	})
	t.Run("silence", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) { time.Sleep(time.Second); c.Close() })
		start := time.Now()
		if err := probeRedirect(t.Context(), addr, "east"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("probeRedirect = %v, want a deadline error", err)
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("probeRedirect took %v, want about %v", d, probeTimeout)
		}
	})
	t.Run("nobody listens", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if err := probeRedirect(t.Context(), addr, "east"); err == nil {
			t.Error("probeRedirect to a closed port = nil, want an error")
		}
	})
}

// The answer judged by how the self-check got to the sidecar: through NAT
// (the socket's peer is what it dialled: the pod's own nftables rules) the
// answer is enough; through an eBPF connect rewrite (the peer is the
// sidecar's port) it must name the site's own self-check address.
func TestCheckProbeAnswer(t *testing.T) {
	dialled := netip.MustParseAddrPort("127.0.0.1:15002")
	nat := netip.MustParseAddrPort("127.0.0.1:15002")
	rewritten := netip.MustParseAddrPort("127.0.0.1:15001")
	east, west := contract.RedirectProbeSiteAddr("east").String(), contract.RedirectProbeSiteAddr("west").String()
	for _, tc := range []struct {
		name   string
		peer   netip.AddrPort
		answer string
		want   error // nil, errWrongAnswer or errOtherSite
	}{
		{"nftables", nat, "skiff-redirect-ok 127.0.0.1:15002\n", nil},
		{"nftables, no original destination", nat, "skiff-redirect-ok\n", nil},
		{"this site's programs", rewritten, "skiff-redirect-ok " + east + "\n", nil},
		{"this site's programs, IPv4-mapped peer", netip.MustParseAddrPort("[::ffff:127.0.0.1]:15001"), "skiff-redirect-ok " + east + "\n", nil},
		{"another site's programs", rewritten, "skiff-redirect-ok " + west + "\n", errOtherSite},
		{"an older agent's programs", rewritten, "skiff-redirect-ok 127.0.0.1:15002\n", errOtherSite},
		{"rewritten, no original destination", rewritten, "skiff-redirect-ok\n", errOtherSite},
		{"an older sidecar's answer is still an answer", nat, "skiff-redirect-ok\n", nil},
		{"not the sidecar", nat, "HTTP/1.1 400 Bad Request\r\n", errWrongAnswer},
		{"extra words", rewritten, "skiff-redirect-ok " + east + " and more\n", errWrongAnswer},
		{"no end of line", rewritten, "skiff-redirect-ok " + east, errWrongAnswer},
		{"empty", nat, "", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConn{Reader: strings.NewReader(tc.answer), remote: net.TCPAddrFromAddrPort(tc.peer)}
			err := checkProbeAnswer(c, dialled, "east")
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("checkProbeAnswer = %v, want %v", err, tc.want)
			}
		})
	}
	err := checkProbeAnswer(&fakeConn{Reader: strings.NewReader("skiff-redirect-ok " + west + "\n"), remote: net.TCPAddrFromAddrPort(rewritten)}, dialled, "east")
	if want := "came back as " + west + ", site east's is " + east; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to say %q", err, want)
	}
}

// fakeConn is a connection that reads from Reader and has remote as its
// peer.
type fakeConn struct {
	net.Conn
	io.Reader
	remote net.Addr
}

func (c *fakeConn) Read(b []byte) (int, error) { return c.Reader.Read(b) }
func (c *fakeConn) RemoteAddr() net.Addr       { return c.remote }

// A sidecar with a RedirectWait and no redirection (an unprivileged test
// has none): not ready until the wait is over, then ready, the metric 0
// and the line logged once. A gateway, or a sidecar without a wait, is
// ready at once.
func TestRedirectWait(t *testing.T) {
	const wait = time.Second
	type logLine struct{ msg, kv string }
	lines := make(chan logLine, 100)
	log := funcr.New(func(prefix, args string) {
		select {
		case lines <- logLine{prefix, args}:
		default:
		}
	}, funcr.Options{})
	newRouter := func(t *testing.T, role Role, redirectWait time.Duration) (*Router, *prometheus.Registry, *redirectReports) {
		reg := prometheus.NewRegistry()
		m := NewMetrics(reg)
		reports := &redirectReports{}
		cfg := Config{Site: "pod", Role: role, SidecarListen: "127.0.0.1:0", RedirectWait: redirectWait, Metrics: m, Log: log, OnRedirect: reports.add}
		if role == RoleGateway {
			cfg.SiteKey = newMallory(t).key
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(t.Context()) }()
		t.Cleanup(func() {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		return r, reg, reports
	}
	waitRunning := func(t *testing.T, r *Router) {
		deadline := time.Now().Add(5 * time.Second)
		for !r.ready.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the router did not start")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("sidecar", func(t *testing.T) {
		start := time.Now()
		r, reg, reports := newRouter(t, RoleSidecar, wait)
		waitRunning(t, r)
		if r.Ready() && time.Since(start) < wait {
			t.Fatal("ready before the redirect wait is over")
		}
		for !r.Ready() {
			if time.Since(start) > wait+5*time.Second {
				t.Fatal("not ready long after the redirect wait")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d := time.Since(start); d < wait {
			t.Errorf("ready after %v, before the wait of %v", d, wait)
		}
		if r.RedirectVerified() {
			t.Error("RedirectVerified() = true without redirection")
		}
		if v, ok := gaugeValue(t, reg, "skiff_sidecar_redirect_verified"); !ok || v != 0 {
			t.Errorf("skiff_sidecar_redirect_verified = %v (exported: %v), want 0", v, ok)
		}
		time.Sleep(1500 * time.Millisecond) // more attempts: still one line
		n := 0
		for len(lines) > 0 {
			if l := <-lines; strings.Contains(l.kv, "redirection not in place") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("logged %q %d times, want once", "redirection not in place", n)
		}
		if got := reports.got(); !slices.Equal(got, []model.Redirect{model.RedirectLost}) {
			t.Errorf("reported %v, want the redirect lost once the wait ran out", got)
		}
	})
	t.Run("sidecar without a wait", func(t *testing.T) {
		r, _, reports := newRouter(t, RoleSidecar, 0)
		waitRunning(t, r)
		if !r.Ready() {
			t.Error("a sidecar without a redirect wait is not ready once running")
		}
		if got := reports.got(); len(got) != 0 {
			t.Errorf("a sidecar without a redirect wait reported %v", got)
		}
	})
	t.Run("gateway", func(t *testing.T) {
		r, _, _ := newRouter(t, RoleGateway, wait)
		waitRunning(t, r)
		if !r.Ready() {
			t.Error("a gateway waits for redirection")
		}
	})
}

// A verified sidecar goes on checking: with the redirect gone (here, the
// stand-in for the sidecar's answer at the self-check address stops
// listening) it logs the loss once after probeLossAfter failures and sets
// the metric to 0, staying ready; when the answer is back, it logs that and
// sets the metric to 1 again.
func TestRedirectRecheck(t *testing.T) {
	var logMu sync.Mutex
	var logged []string
	log := funcr.New(func(prefix, args string) {
		logMu.Lock()
		logged = append(logged, args)
		logMu.Unlock()
	}, funcr.Options{})
	count := func(msg string) int {
		logMu.Lock()
		defer logMu.Unlock()
		n := 0
		for _, l := range logged {
			if strings.Contains(l, msg) {
				n++
			}
		}
		return n
	}
	ln := listenAnswer(t, "127.0.0.1:0", answerProbe)
	addr := ln.Addr().String()

	reg := prometheus.NewRegistry()
	reports := &redirectReports{}
	r, err := New(Config{Site: "pod", Role: RoleSidecar, SidecarListen: "127.0.0.1:0", RedirectWait: time.Minute,
		RedirectRecheck: 50 * time.Millisecond, Metrics: NewMetrics(reg), Log: log, OnRedirect: reports.add})
	if err != nil {
		t.Fatal(err)
	}
	r.probeAddr = addr
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	metric := func() float64 {
		v, _ := gaugeValue(t, reg, "skiff_sidecar_redirect_verified")
		return v
	}

	tu.Until(t, 5*time.Second, "verified", func() bool { return r.Ready() && r.RedirectVerified() })
	if m := metric(); m != 1 {
		t.Errorf("verified: metric %v, want 1", m)
	}

	ln.Close()
	tu.Until(t, 5*time.Second, "the loss to be noticed", func() bool { return !r.RedirectVerified() })
	if m := metric(); m != 0 {
		t.Errorf("lost: metric %v, want 0", m)
	}
	if !r.Ready() {
		t.Error("not ready after the redirect was lost; readiness should stay")
	}
	time.Sleep(300 * time.Millisecond) // more failed checks: still one line
	if n := count("redirection lost"); n != 1 {
		t.Errorf("logged %q %d times, want once", "redirection lost", n)
	}

	ln = listenAnswer(t, addr, answerProbe)
	defer ln.Close()
	tu.Until(t, 5*time.Second, "the redirect to be restored", func() bool { return r.RedirectVerified() })
	if m := metric(); m != 1 {
		t.Errorf("restored: metric %v, want 1", m)
	}
	if n := count("redirection restored"); n != 1 {
		t.Errorf("logged %q %d times, want once", "redirection restored", n)
	}
	if n := count("redirection verified"); n != 1 {
		t.Errorf("logged %q %d times, want once", "redirection verified", n)
	}
	if got, want := reports.got(), []model.Redirect{model.RedirectVerified, model.RedirectLost, model.RedirectVerified}; !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
}

// redirectReports records what a router tells Config.OnRedirect.
type redirectReports struct {
	mu sync.Mutex
	rs []model.Redirect
}

func (r *redirectReports) add(s model.Redirect) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs = append(r.rs, s)
}

func (r *redirectReports) got() []model.Redirect {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rs)
}

// listenAnswer listens on addr and hands each connection to answer, in a
// goroutine of its own, until the listener is closed.
func listenAnswer(t *testing.T, addr string, answer func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answer(c)
		}
	}()
	return ln
}

func TestConfigValidateRedirect(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative wait", Config{Site: "s", Role: RoleSidecar, RedirectWait: -time.Second, Metrics: m}, "redirect wait must be >= 0"},
		{"negative recheck", Config{Site: "s", Role: RoleSidecar, RedirectRecheck: -time.Second, Metrics: m}, "redirect recheck interval must be >= 0"},
		{"listen on the probe port", Config{Site: "s", Role: RoleSidecar, SidecarListen: "127.0.0.1:15002", Metrics: m}, "port 15002 is the redirect self-check's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// gaugeValue reads an unlabelled gauge from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 && mf.GetMetric()[0].Gauge != nil {
			return mf.GetMetric()[0].Gauge.GetValue(), true
		}
	}
	return 0, false
}
