package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

// sitesBPFFS returns a directory on bpffs that stands for the node's bpf
// filesystem in a test of several sites: their pin dirs are
// SitePinDir(root, site), the legacy dir LegacyPinDir(root).
func (e *env) sitesBPFFS(t testing.TB) string {
	t.Helper()
	root := e.pinDir + "-sites"
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove %s: %v", root, err)
		}
	})
	return root
}

// loadSite loads the programs of site, pinned in its own directory under
// bpffs, sending redirected connections to port, with services and the
// self-check armed, as that site's node agent does.
func loadSite(t testing.TB, bpffs, site string, port uint16, services ...string) *Redirector {
	t.Helper()
	dir, err := SitePinDir(bpffs, site)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(Config{Site: site, PinDir: dir, SidecarPort: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var svcs []netip.AddrPort
	for _, s := range services {
		svcs = append(svcs, netip.MustParseAddrPort(s))
	}
	if err := r.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	if err := r.ArmProbe(); err != nil {
		t.Fatal(err)
	}
	return r
}

// Two sites on one node, each with its own programs, maps and links in
// its own pin dir, each attached to its own pods: a pod's connections to
// its site's services reach its sidecar (on its site's port), those to
// the other site's services go where they were headed, and its
// self-check reads back as its site's address. A pod attached by the
// other site's programs (what a node agent of one site did to every
// site's pods before) gets the other site's address back, which its
// sidecar refuses, and its own site's services bypass it. Uninstalling
// one site removes its pins only: the other site's pods stay redirected.
func TestSitesSideBySide(t *testing.T) {
	e := requireEnv(t)
	bpffs := e.sitesBPFFS(t)
	east := e.newPod(t, "east", 21)
	west := e.newPod(t, "west", 22)
	host := east.hostIP4 // both pods reach it through their default route
	eastSvc, westSvc := host+":8080", host+":9090"
	testutil.HTTPNameServer(t, eastSvc, "direct-8080")
	testutil.HTTPNameServer(t, westSvc, "direct-9090")
	const eastPort, westPort = 15001, 15006
	re := loadSite(t, bpffs, "east", eastPort, eastSvc)
	rw := loadSite(t, bpffs, "west", westPort, westSvc)
	east.startOrigDst(t, fmt.Sprintf("127.0.0.1:%d", eastPort))
	west.startOrigDst(t, fmt.Sprintf("127.0.0.1:%d", westPort))
	if _, err := re.Attach(east.cgroup); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Attach(west.cgroup); err != nil {
		t.Fatal(err)
	}
	probe := fmt.Sprintf("127.0.0.1:%d", contract.RedirectProbePort)
	selfCheck := func(t *testing.T, p *pod, want string) {
		t.Helper()
		out, err := p.clientAs(contract.SidecarUID, probe)
		if want := "body orig=" + want; err != nil || !strings.Contains(out, want) {
			t.Errorf("self-check of pod %s: %v\n%s, want %q", p.name, err, out, want)
		}
	}
	eastAddr, westAddr := contract.RedirectProbeSiteAddr("east").String(), contract.RedirectProbeSiteAddr("west").String()

	t.Run("each pod is redirected for its own site's services", func(t *testing.T) {
		eBefore, wBefore := mustStats(t, re), mustStats(t, rw)
		east.mustCurl(t, 0, "http://"+eastSvc+"/", "orig="+eastSvc)
		east.mustCurl(t, 0, "http://"+westSvc+"/", "direct-9090")
		west.mustCurl(t, 0, "http://"+westSvc+"/", "orig="+westSvc)
		west.mustCurl(t, 0, "http://"+eastSvc+"/", "direct-8080")
		// Each site's programs ran for its own pod only.
		if got := sub(mustStats(t, re).Connect4, eBefore.Connect4); got != (Counters{Redirected: 1, Passed: 1}) {
			t.Errorf("east's connect4 changed by %+v, want one redirected, one passed", got)
		}
		if got := sub(mustStats(t, rw).Connect4, wBefore.Connect4); got != (Counters{Redirected: 1, Passed: 1}) {
			t.Errorf("west's connect4 changed by %+v, want one redirected, one passed", got)
		}
	})

	t.Run("each self-check names its site", func(t *testing.T) {
		selfCheck(t, east, eastAddr)
		selfCheck(t, west, westAddr)
	})

	t.Run("a pod attached by another site's programs is caught", func(t *testing.T) {
		lost := e.newPod(t, "lost", 23) // a pod of west's, attached by east's programs
		lost.startOrigDst(t, fmt.Sprintf("127.0.0.1:%d", eastPort))
		if _, err := re.Attach(lost.cgroup); err != nil {
			t.Fatal(err)
		}
		selfCheck(t, lost, eastAddr) // not west's: the sidecar says so
		lost.mustCurl(t, 0, "http://"+westSvc+"/", "direct-9090")
		if err := re.Detach(lost.cgroup); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("another site's pin dir is refused", func(t *testing.T) {
		_, err := Load(Config{Site: "west", PinDir: re.Config().PinDir})
		if err == nil || !strings.Contains(err.Error(), "holds the programs of another site") {
			t.Errorf("Load of west on east's pin dir: %v, want a refusal", err)
		}
	})

	t.Run("uninstalling one site leaves the other redirected", func(t *testing.T) {
		re.Close()
		if err := Uninstall(re.Config().PinDir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(re.Config().PinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("east's pin dir after its uninstall: %v", err)
		}
		if as, err := rw.Attachments(); err != nil || len(as) != 1 || as[0].Path != west.cgroup {
			t.Errorf("west's attachments after east's uninstall: %+v, %v", as, err)
		}
		west.mustCurl(t, 0, "http://"+westSvc+"/", "orig="+westSvc)
		selfCheck(t, west, westAddr)
		// The programs a loader has open live on; the links went with
		// the pins, so east's pod is no longer redirected.
		testutil.Eventually(t, 5*time.Second, "east's pod goes direct", func() error {
			if got, err := east.curl(0, "http://"+eastSvc+"/"); err != nil || got != "direct-8080" {
				return fmt.Errorf("curl %s: %q %v", eastSvc, got, err)
			}
			return nil
		})
		// A west restart finds its pins as they were.
		r, err := Load(Config{Site: "west", PinDir: rw.Config().PinDir, SidecarPort: westPort})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, armed, err := r.Probe(); err != nil || !armed || got.String() != westAddr {
			t.Errorf("west's self-check after a reload: %s armed %v %v", got, armed, err)
		}
	})

	t.Run("the last site's uninstall leaves nothing of skiff's", func(t *testing.T) {
		if _, err := os.Stat(LegacyPinDir(bpffs)); err != nil {
			t.Fatalf("<bpffs>/skiff with west's pins in it: %v", err)
		}
		rw.Close()
		if err := Uninstall(rw.Config().PinDir); err != nil {
			t.Fatal(err)
		}
		if ents, err := os.ReadDir(bpffs); err != nil || len(ents) != 0 {
			t.Errorf("the bpffs after both sites' uninstall: %v %v, want it empty", ents, err)
		}
	})
}

// The issue this guards against, with the real sidecar: a pod of site
// "pod" whose node runs no agent of its site, only another site's, which
// (as node agents did before sites had their own programs) attached it.
// The pod's connections reach its sidecar, but through programs with the
// other site's services: the self-check must not pass. The sidecar stays
// unverified (ready after --redirect-wait, saying why) until its own
// site's programs redirect it.
func TestSidecarRefusesAnotherSitesRedirect(t *testing.T) {
	e := requireEnv(t)
	bin := e.buildRouter(t)
	bpffs := e.sitesBPFFS(t)
	other := loadSite(t, bpffs, "other", contract.SidecarOutboundPort)
	p := e.newPod(t, "foreign", 0)
	if _, err := other.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	const wait = 2 * time.Second
	sc := p.runSidecar(t, bin, "name: "+testSite+"\ndataDir: data\n", "--redirect-wait="+wait.String(), "--redirect-recheck=200ms")
	metric := func() string {
		m, _ := p.curl(0, "http://127.0.0.1:15090/metrics")
		return grepLines(m, "skiff_sidecar_redirect_verified ")
	}
	testutil.Eventually(t, wait+15*time.Second, "the sidecar ready once the wait is over", func() error {
		select {
		case <-sc.Done():
			t.Fatalf("sidecar exited:\n%s", sc.Output())
		default:
		}
		if out, err := p.curl(0, "http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		return nil
	})
	if m := metric(); m != "skiff_sidecar_redirect_verified 0" {
		t.Errorf("metrics with another site's programs: %q, want 0", m)
	}
	out := sc.Output()
	if !strings.Contains(out, `"msg":"redirection not in place`) || !strings.Contains(out, "redirected by the eBPF programs of another site") ||
		!strings.Contains(out, contract.RedirectProbeSiteAddr("other").String()) {
		t.Errorf("the sidecar did not say that another site's programs redirect it:\n%s", out)
	}
	if strings.Contains(out, "redirection verified") {
		t.Errorf("the sidecar verified another site's redirect:\n%s", out)
	}
	if s := mustStats(t, other); s.Connect4.Redirected == 0 {
		t.Errorf("the other site's programs redirected nothing (%+v): the self-check never reached the sidecar", s.Connect4)
	}

	// Its own site's agent takes over.
	if err := other.Detach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	own := loadSite(t, bpffs, testSite, contract.SidecarOutboundPort)
	if _, err := own.Attach(p.cgroup); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "verified through its own site's programs", func() error {
		if m := metric(); m != "skiff_sidecar_redirect_verified 1" {
			return fmt.Errorf("metrics: %q", m)
		}
		return nil
	})
	if !strings.Contains(sc.Output(), `"msg":"redirection verified"`) {
		t.Errorf("the sidecar did not log \"redirection verified\":\n%s", sc.Output())
	}
}
