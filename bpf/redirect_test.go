package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// buildRouter builds skiff-router where UID 1337 can run it.
func (e *env) buildRouter(t testing.TB) string {
	t.Helper()
	testutil.RequireTool(t, "go")
	if err := testutil.GoBuild(e.dir, "github.com/skiff-io/skiff/sidecar/cmd/skiff-router"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(e.dir, "skiff-router")
}

// runSidecar runs the real `skiff-router sidecar` in the pod's sidecar
// cgroup as UID 1337, with a site file that has no link: its listeners
// are the service VIPs and its connectors the servers it dials directly.
func (p *pod) runSidecar(t testing.TB, bin, siteFile string, args ...string) *proc {
	t.Helper()
	dir := filepath.Join(p.e.dir, p.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(file, []byte(siteFile), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "-R", "1337:1337", dir)
	return start(t, p.command("sidecar", 1337, append([]string{bin, "sidecar", "--site-file", file,
		"--metrics-bind-address", "127.0.0.1:15090", "--health-probe-bind-address", "127.0.0.1:15021"}, args...)...))
}

// startSidecar is runSidecar without the redirect self-check (the tests
// start it before they attach the pod, and count the programs' runs), and
// waits until it is ready.
func (p *pod) startSidecar(t testing.TB, bin, siteFile string) *proc {
	t.Helper()
	sc := p.runSidecar(t, bin, siteFile, "--redirect-wait=0")
	testutil.Eventually(t, 15*time.Second, "sidecar ready", func() error {
		select {
		case <-sc.Done():
			return fmt.Errorf("sidecar exited:\n%s", sc.Output())
		default:
		}
		if out, err := p.curl(0, "http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		return nil
	})
	return sc
}

func mustStats(t *testing.T, r *Redirector) Stats {
	t.Helper()
	s, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sub(a, b Counters) Counters {
	return Counters{Redirected: a.Redirected - b.Redirected, Passed: a.Passed - b.Passed, Errors: a.Errors - b.Errors}
}

// A pod (netns + cgroup with app and sidecar child cgroups) and the real
// sidecar: curl's connects to a service VIP reach the sidecar, which reads
// SO_ORIGINAL_DST from the getsockopt program and routes to the server.
// The cases run in order on the same pod and end with the loader's
// restart and the detach.
func TestRedirect(t *testing.T) {
	e := requireEnv(t)
	bin := e.buildRouter(t)
	r := e.load(t)
	p := e.newPod(t, "a", 1)
	h4, h6 := p.hostIP4, p.hostIP6
	// The VIP is a real address with a real server behind it, so that
	// whatever is not redirected shows as "direct".
	testutil.HTTPNameServer(t, h4+":8080", "direct")
	testutil.HTTPNameServer(t, h4+":9090", "backend")
	testutil.HTTPNameServer(t, "["+h6+"]:9090", "backend6")
	testutil.HTTPNameServer(t, h4+":7070", "plain")
	testutil.HTTPNameServer(t, "["+h6+"]:8080", "direct6")
	testutil.HTTPNameServer(t, "["+h6+"]:7070", "plain6")
	vip4 := "http://" + h4 + ":8080/"
	vip6 := "http://[" + h6 + "]:8080/"
	mapped := "http://[::ffff:" + h4 + "]:8080/"
	if err := r.SetServices([]netip.AddrPort{
		netip.MustParseAddrPort(h4 + ":8080"),
		netip.MustParseAddrPort("[" + h6 + "]:8080"),
	}); err != nil {
		t.Fatal(err)
	}
	p.startSidecar(t, bin, fmt.Sprintf(`name: pod
dataDir: data
listeners:
  - {address: backend, host: %s, port: 8080}
  - {address: backend6, host: %s, port: 8080}
connectors:
  - {address: backend, host: %s, port: 9090}
  - {address: backend6, host: %s, port: 9090}
`, h4, h6, h4, h6))
	// IPv6 services go to the sidecar's [::1]:15001 listener.

	// Before attaching, nothing is redirected.
	p.mustCurl(t, 0, vip4, "direct")
	if _, err := r.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	parent := t

	t.Run("service VIP reaches the sidecar and its server", func(t *testing.T) {
		before := mustStats(t, r)
		for range 5 {
			p.mustCurl(t, 0, vip4, "backend")
		}
		d := mustStats(t, r)
		// Passed: the sidecar's own 5 connections to the server.
		for _, c := range []struct {
			name      string
			got, want Counters
		}{
			{"connect4", sub(d.Connect4, before.Connect4), Counters{Redirected: 5, Passed: 5}},
			{"sockops", sub(d.Sockops, before.Sockops), Counters{Redirected: 5, Passed: 5}},
			{"getsockopt", sub(d.Getsockopt, before.Getsockopt), Counters{Redirected: 5}},
		} {
			if c.got != c.want {
				t.Errorf("%s counters changed by %+v, want %+v", c.name, c.got, c.want)
			}
		}
		metrics, err := p.curl(0, "http://127.0.0.1:15090/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(metrics, `skiff_streams_opened_total{address="backend",role="sidecar"} 5`) {
			t.Errorf("the sidecar did not route 5 connections to backend:\n%s", grepLines(metrics, "skiff_"))
		}
	})

	t.Run("the sidecar's UID is not redirected", func(t *testing.T) {
		before := mustStats(t, r)
		p.mustCurl(t, 1337, vip4, "direct")
		if got := sub(mustStats(t, r).Connect4, before.Connect4); got != (Counters{Passed: 1}) {
			t.Errorf("connect4 counters changed by %+v, want one passed", got)
		}
	})

	t.Run("a destination that is no service passes untouched", func(t *testing.T) {
		before := mustStats(t, r)
		p.mustCurl(t, 0, "http://"+h4+":7070/", "plain")
		p.mustCurl(t, 0, "http://["+h6+"]:7070/", "plain6")
		s := mustStats(t, r)
		if got := sub(s.Connect4, before.Connect4); got != (Counters{Passed: 1}) {
			t.Errorf("connect4 counters changed by %+v, want one passed", got)
		}
		if got := sub(s.Connect6, before.Connect6); got != (Counters{Passed: 1}) {
			t.Errorf("connect6 counters changed by %+v, want one passed", got)
		}
	})

	t.Run("loopback is never redirected", func(t *testing.T) {
		// Even when it is listed: SetServices refuses it.
		if err := r.SetServices([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:15021")}); err == nil {
			t.Error("SetServices accepted a loopback service")
		}
		p.mustCurl(t, 0, "http://127.0.0.1:15021/readyz", "ok")
		p.mustCurl(t, 0, "http://[::ffff:127.0.0.1]:15021/readyz", "ok")
	})

	t.Run("IPv4-mapped destination of a dual-stack socket", func(t *testing.T) {
		before := mustStats(t, r)
		// curl makes an AF_INET6 socket for an IPv6 literal.
		p.mustCurl(t, 0, mapped, "backend")
		// So does the raw client; Go's own net.Dial would pick AF_INET.
		out, err := p.client("[::ffff:" + h4 + "]:8080")
		if err != nil || !strings.Contains(out, "body backend") {
			t.Fatalf("raw dual-stack client: %v\n%s", err, out)
		}
		if !strings.Contains(out, "connected [::ffff:127.0.0.1]:") || !strings.Contains(out, " [::ffff:127.0.0.1]:15001") {
			t.Errorf("the client's socket was not rewritten to ::ffff:127.0.0.1:15001:\n%s", out)
		}
		s := mustStats(t, r)
		if got := sub(s.Connect6, before.Connect6); got != (Counters{Redirected: 2}) {
			t.Errorf("connect6 counters changed by %+v, want two redirected", got)
		}
		if got := sub(s.Getsockopt, before.Getsockopt); got != (Counters{Redirected: 2}) {
			t.Errorf("getsockopt counters changed by %+v, want two answered", got)
		}
	})

	t.Run("IPv6 service", func(t *testing.T) {
		p.mustCurl(t, 0, vip6, "backend6")
		out, err := p.client("[" + h6 + "]:8080")
		if err != nil || !strings.Contains(out, "body backend6") || !strings.Contains(out, " [::1]:15001") {
			t.Fatalf("raw IPv6 client: %v\n%s", err, out)
		}
		p.mustCurl(t, 1337, vip6, "direct6")
	})

	t.Run("per-pod excluded ports and CIDRs", func(t *testing.T) {
		// Keyed by the pod's cgroup; the app runs in a child cgroup.
		for _, c := range []struct {
			name string
			ex   Exclusions
			want [3]string // vip4, mapped, vip6
		}{
			{"port", Exclusions{Ports: []uint16{8080}}, [3]string{"direct", "direct", "direct6"}},
			{"other port", Exclusions{Ports: []uint16{8081}}, [3]string{"backend", "backend", "backend6"}},
			{"IPv4 CIDR", Exclusions{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.78.0.0/16")}}, [3]string{"direct", "direct", "backend6"}},
			{"IPv6 CIDR", Exclusions{CIDRs: []netip.Prefix{netip.MustParsePrefix("fd78::/16")}}, [3]string{"backend", "backend", "direct6"}},
			{"host route", Exclusions{CIDRs: []netip.Prefix{netip.MustParsePrefix(h4 + "/32")}}, [3]string{"direct", "direct", "backend6"}},
			{"none", Exclusions{}, [3]string{"backend", "backend", "backend6"}},
		} {
			if err := r.SetExclusions(p.cgroup, c.ex); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got, err := r.Exclusions(p.cgroup)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.ex) {
				t.Errorf("%s: read back %+v, want %+v", c.name, got, c.ex)
			}
			for i, url := range []string{vip4, mapped, vip6} {
				if body, err := p.curl(0, url); body != c.want[i] {
					t.Errorf("%s: curl %s = %q (%v), want %q", c.name, url, body, err, c.want[i])
				}
			}
		}
	})

	t.Run("the loader restarts and redirection holds", func(t *testing.T) {
		before := mustStats(t, r)
		r.Close()
		// No loader at all: the pinned links and maps carry on.
		p.mustCurl(t, 0, vip4, "backend")
		r = e.load(parent)
		as, err := r.Attachments()
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 1 || as[0].Path != p.cgroup || len(as[0].Programs) != 4 {
			t.Errorf("attachments after restart: %+v, want %s with 4 programs", as, p.cgroup)
		}
		svcs, err := r.Services()
		if err != nil || len(svcs) != 2 {
			t.Errorf("services after restart: %v %v", svcs, err)
		}
		p.mustCurl(t, 0, vip4, "backend")
		p.mustCurl(t, 0, mapped, "backend")
		if got := sub(mustStats(t, r).Connect4, before.Connect4); got.Redirected != 2 {
			t.Errorf("counters after restart changed by %+v, want 2 redirected (the pinned map counts on)", got)
		}
	})

	t.Run("detach restores direct connections", func(t *testing.T) {
		// By path, with the Redirector of the restarted loader.
		if err := r.Detach(p.cgroup); err != nil {
			t.Fatal(err)
		}
		before := mustStats(t, r)
		p.mustCurl(t, 0, vip4, "direct")
		p.mustCurl(t, 0, mapped, "direct")
		p.mustCurl(t, 0, vip6, "direct6")
		if s := mustStats(t, r); s != before {
			t.Errorf("programs ran after detach: %+v -> %+v", before, s)
		}
		if as, _ := r.Attachments(); len(as) != 0 {
			t.Errorf("attachments after detach: %+v", as)
		}
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
