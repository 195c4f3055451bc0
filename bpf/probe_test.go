package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

// The C programs and the sidecar agree on the self-check's address.
func TestProbeAddressIsTheContracts(t *testing.T) {
	src, err := os.ReadFile("redirect.c")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#define\s+PROBE_PORT\s+(\d+)\s*$`).FindSubmatch(src)
	if m == nil {
		t.Fatal("redirect.c has no #define PROBE_PORT <number>")
	}
	if got, _ := strconv.Atoi(string(m[1])); got != contract.RedirectProbePort {
		t.Errorf("redirect.c: PROBE_PORT %d, contract.RedirectProbePort %d", got, contract.RedirectProbePort)
	}
	m = regexp.MustCompile(`(?m)^#define\s+PROBE_ADDR\s+0x([0-9a-fA-F]{8})\b`).FindSubmatch(src)
	if m == nil {
		t.Fatal("redirect.c has no #define PROBE_ADDR 0x<8 hex digits>")
	}
	v, _ := strconv.ParseUint(string(m[1]), 16, 32)
	got := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	if want := netip.MustParseAddr(contract.RedirectProbeHost); got != want {
		t.Errorf("redirect.c: PROBE_ADDR %s, contract.RedirectProbeHost %s", got, want)
	}
}

// Once armed, a connect to 127.0.0.1:RedirectProbePort is redirected
// whatever the UID, the sidecar's included, and reads back as the site's
// self-check address; nothing else of the sidecar's UID is, and no other
// loopback address or port. Before it is armed, it is not redirected.
func TestRedirectProbe(t *testing.T) {
	e := requireEnv(t)
	r := e.load(t)
	p := e.newPod(t, "probe", 3)
	h4 := p.hostIP4
	testutil.HTTPNameServer(t, h4+":8080", "direct")
	vip := "http://" + h4 + ":8080/"
	if err := r.SetServices([]netip.AddrPort{netip.MustParseAddrPort(h4 + ":8080")}); err != nil {
		t.Fatal(err)
	}
	p.startOrigDst(t, "127.0.0.1:15001")
	probe := "127.0.0.1:" + strconv.Itoa(contract.RedirectProbePort)
	wantBody := "body orig=" + contract.RedirectProbeSiteAddr(testSite).String()

	// Before the attach nothing listens there.
	if out, err := p.clientAs(1337, probe); err == nil || !strings.Contains(out, "connection refused") {
		t.Fatalf("self-check before the attach: %v\n%s", err, out)
	}
	if _, err := r.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	// Attached, not armed: the agent has not vouched for its services yet.
	if out, err := p.clientAs(1337, probe); err == nil || !strings.Contains(out, "connection refused") {
		t.Fatalf("self-check before it is armed: %v\n%s", err, out)
	}
	if _, armed, err := r.Probe(); err != nil || armed {
		t.Fatalf("Probe() before ArmProbe: armed %v, %v", armed, err)
	}
	if err := r.ArmProbe(); err != nil {
		t.Fatal(err)
	}
	if got, armed, err := r.Probe(); err != nil || !armed || got != contract.RedirectProbeSiteAddr(testSite) {
		t.Fatalf("Probe() = %s, %v, %v; want %s, armed", got, armed, err, contract.RedirectProbeSiteAddr(testSite))
	}

	t.Run("the sidecar's UID reaches the sidecar", func(t *testing.T) {
		before := mustStats(t, r)
		out, err := p.clientAs(1337, probe)
		if err != nil || !strings.Contains(out, wantBody) {
			t.Fatalf("self-check as uid 1337: %v\n%s, want %q", err, out, wantBody)
		}
		if !strings.Contains(out, " 127.0.0.1:15001\n") {
			t.Errorf("the client's socket was not rewritten to 127.0.0.1:15001:\n%s", out)
		}
		s := mustStats(t, r)
		// Passed: the sidecar stand-in's own connect, none.
		if got := sub(s.Connect4, before.Connect4); got != (Counters{Redirected: 1}) {
			t.Errorf("connect4 counters changed by %+v, want one redirected", got)
		}
		if got := sub(s.Getsockopt, before.Getsockopt); got != (Counters{Redirected: 1}) {
			t.Errorf("getsockopt counters changed by %+v, want one answered", got)
		}
	})

	t.Run("IPv4-mapped, and other UIDs", func(t *testing.T) {
		for _, c := range []struct {
			uid  int
			addr string
		}{
			{1337, "[::ffff:127.0.0.1]:" + strconv.Itoa(contract.RedirectProbePort)},
			{0, probe},
			{1000, probe},
		} {
			if out, err := p.clientAs(c.uid, c.addr); err != nil || !strings.Contains(out, wantBody) {
				t.Errorf("self-check to %s as uid %d: %v\n%s, want %q", c.addr, c.uid, err, out, wantBody)
			}
		}
	})

	t.Run("the sidecar's UID to a service still goes direct", func(t *testing.T) {
		before := mustStats(t, r)
		p.mustCurl(t, 1337, vip, "direct")
		p.mustCurl(t, 0, vip, "orig="+h4+":8080")
		if got := sub(mustStats(t, r).Connect4, before.Connect4); got != (Counters{Redirected: 1, Passed: 1}) {
			t.Errorf("connect4 counters changed by %+v, want one redirected (root), one passed (1337)", got)
		}
	})

	t.Run("only 127.0.0.1 at the self-check port", func(t *testing.T) {
		before := mustStats(t, r)
		for _, addr := range []string{
			"127.0.0.2:" + strconv.Itoa(contract.RedirectProbePort),
			"[::1]:" + strconv.Itoa(contract.RedirectProbePort),
			fmt.Sprintf("127.0.0.1:%d", contract.RedirectProbePort+1),
		} {
			if out, err := p.clientAs(1337, addr); err == nil || !strings.Contains(out, "connection refused") {
				t.Errorf("connect to %s as uid 1337 was not refused: %v\n%s", addr, err, out)
			}
		}
		s := mustStats(t, r)
		if got := sub(s.Connect4, before.Connect4); got != (Counters{Passed: 2}) {
			t.Errorf("connect4 counters changed by %+v, want two passed", got)
		}
		if got := sub(s.Connect6, before.Connect6); got != (Counters{Passed: 1}) {
			t.Errorf("connect6 counters changed by %+v, want one passed", got)
		}
	})
}

// The real sidecar with its default self-check, started before the pod is
// attached (as a node agent late to a new pod leaves it): /readyz answers
// 503 and the metric is 0 until the attach and the arming of the
// self-check (the agent arms it once its services map holds the site's
// table), then the self-check comes back through the programs and the
// sidecar is ready.
func TestSidecarWaitsForRedirect(t *testing.T) {
	e := requireEnv(t)
	bin := e.buildRouter(t)
	r := e.load(t)
	p := e.newPod(t, "wait", 0)
	sc := p.runSidecar(t, bin, "name: pod\ndataDir: data\n")
	readyz := "http://127.0.0.1:15021/readyz"
	testutil.Eventually(t, 15*time.Second, "the sidecar serves /readyz", func() error {
		select {
		case <-sc.Done():
			t.Fatalf("sidecar exited:\n%s", sc.Output())
		default:
		}
		out, err := p.curl(0, readyz)
		if err != nil {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		if out != "not ready" {
			t.Fatalf("readyz before the attach = %q, want not ready", out)
		}
		return nil
	})
	time.Sleep(time.Second) // a few more attempts, all refused
	if out, _ := p.curl(0, readyz); out != "not ready" {
		t.Fatalf("readyz before the attach = %q, want not ready", out)
	}
	if m, _ := p.curl(0, "http://127.0.0.1:15090/metrics"); !strings.Contains(m, "\nskiff_sidecar_redirect_verified 0\n") {
		t.Errorf("metrics before the attach:\n%s", grepLines(m, "redirect"))
	}

	if _, err := r.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // attached, not armed: more attempts, all refused
	if out, _ := p.curl(0, readyz); out != "not ready" {
		t.Fatalf("readyz attached but not armed = %q, want not ready", out)
	}
	before := mustStats(t, r)
	armed := time.Now()
	if err := r.ArmProbe(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the sidecar is ready once armed", func() error {
		if out, err := p.curl(0, readyz); err != nil || out != "ok" {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		return nil
	})
	t.Logf("ready %v after the arming", time.Since(armed).Round(time.Millisecond))
	if m, _ := p.curl(0, "http://127.0.0.1:15090/metrics"); !strings.Contains(m, "\nskiff_sidecar_redirect_verified 1\n") {
		t.Errorf("metrics after the attach:\n%s", grepLines(m, "redirect"))
	}
	if !strings.Contains(sc.Output(), `"msg":"redirection verified"`) {
		t.Errorf("the sidecar did not log \"redirection verified\":\n%s", sc.Output())
	}
	// One self-check came back, then the sidecar stopped checking.
	time.Sleep(500 * time.Millisecond)
	s := mustStats(t, r)
	if got := sub(s.Connect4, before.Connect4).Redirected; got != 1 {
		t.Errorf("connect4 redirected %d connections, want the one self-check", got)
	}
	// Two answers: the sidecar's handler reads the destination, its
	// self-check answer reads it again.
	if got := sub(s.Getsockopt, before.Getsockopt); got != (Counters{Redirected: 2}) {
		t.Errorf("getsockopt counters changed by %+v, want two answered", got)
	}
}
