package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

// Two sites in one cluster, each with its node agent on the same node (one
// apiserver, one cgroup tree, one bpf filesystem): each agent attaches its
// own site's injected pods, in its own pin dir, with its own site's
// services, and arms its own self-check; a pod of its namespace whose
// sidecar is another site's is refused; a pod of a third site, which runs
// no agent, is attached by none (its sidecar's self-check fails, as it
// must). Each pod's connections to its site's services reach its sidecar,
// those to the other site's go where they were headed. The uninstall of
// one site (its agent exits and cleans up) removes its pins only: the
// other site's pods stay redirected.
func TestDaemonSites(t *testing.T) {
	envs := newAgentEnvs(t, siteNS{"east", "east"}, siteNS{"west", "west"})
	east, west := envs[0], envs[1]
	host := hostIPv4(t)
	eastSvc, westSvc := directServer(t, host, "direct-east"), directServer(t, host, "direct-west")
	east.xds.Update(tablePort("east", int(eastSvc.Port()), host))
	west.xds.Update(tablePort("west", int(westSvc.Port()), host))

	stopEast := east.startDaemon(t)
	west.startDaemon(t)
	sidecar := func(site string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: contract.SidecarContainerName, Image: "example.local/skiff-router:v1",
				Env: []corev1.EnvVar{{Name: contract.EnvSite, Value: site}}})
		}
	}
	injected := map[string]string{contract.StatusAnnotation: "{}"}
	eastPod := east.createPod(t, "app", injected, "node-a", sidecar("east"))
	westPod := west.createPod(t, "app", injected, "node-a", sidecar("west"))
	stray := east.createPod(t, "stray", injected, "node-a", sidecar("west"))
	// A site without a node agent: its namespace is no agent's.
	lone := &agentEnv{t: t, c: east.c, ns: "north", cgRoot: east.cgRoot}
	if err := lone.c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "north"}}); err != nil {
		t.Fatal(err)
	}
	lonePod := lone.createPod(t, "app", injected, "node-a", sidecar("north"))
	eastCg, westCg, strayCg, loneCg := east.podCgroup(t, eastPod), west.podCgroup(t, westPod), east.podCgroup(t, stray), lone.podCgroup(t, lonePod)
	startSidecar(t, filepath.Join(eastCg, "sidecar"), fmt.Sprintf("127.0.0.1:%d", east.opts.SidecarPort))
	startSidecar(t, filepath.Join(westCg, "sidecar"), fmt.Sprintf("127.0.0.1:%d", west.opts.SidecarPort))

	t.Run("each agent attaches its own site's pods, in its own pin dir", func(t *testing.T) {
		east.waitAttached(t, eastCg, true)
		west.waitAttached(t, westCg, true)
		for _, e := range envs {
			want := map[string]bool{map[string]string{"east": eastCg, "west": westCg}[e.site]: true}
			got := map[string]bool{}
			for _, a := range e.attachments(t) {
				got[a.Path] = len(a.Programs) == 4
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%s's attachments (-got +want)\n%s", e.site, diff)
			}
		}
	})

	t.Run("a pod whose sidecar is another site's is refused", func(t *testing.T) {
		waitEvent(t, east, stray.Name, "its sidecar is site west's")
		if got := east.metric(t, `skiff_node_agent_attach_failures_total{reason="other_site"}`); got != 1 {
			t.Errorf("other_site failures: %v, want 1", got)
		}
		for _, e := range envs {
			if e.isAttached(t, strayCg) || e.isAttached(t, loneCg) {
				t.Errorf("%s attached the stray pod (%v) or the pod of a site without an agent (%v)", e.site, e.isAttached(t, strayCg), e.isAttached(t, loneCg))
			}
		}
	})

	t.Run("each pod is redirected for its own site's services", func(t *testing.T) {
		east.waitServices(t, eastSvc.String())
		west.waitServices(t, westSvc.String())
		east.mustReachSidecar(t, eastCg, eastSvc.String())
		mustReachDirect(t, eastCg, westSvc.String(), "direct-west")
		west.mustReachSidecar(t, westCg, westSvc.String())
		mustReachDirect(t, westCg, eastSvc.String(), "direct-east")
		// The pod of the site without an agent bypasses everything.
		mustReachDirect(t, loneCg, eastSvc.String(), "direct-east")
	})

	t.Run("each site's self-check is armed and names its site", func(t *testing.T) {
		for _, e := range envs {
			cg := map[string]string{"east": eastCg, "west": westCg}[e.site]
			e.waitProbe(t, cg)
		}
		if out, err := dialFrom(filepath.Join(loneCg, "app"), probeAddr()); err == nil {
			t.Errorf("the self-check of a pod no agent attached reached something: %q", out)
		}
	})

	t.Run("uninstalling one site leaves the other redirected", func(t *testing.T) {
		stopEast()
		east.opts.CleanupOnExit = true // what an agent does when its DaemonSet is deleted
		stopEast = east.startDaemon(t)
		stopEast()
		if _, err := os.Stat(east.pinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("east's pin dir after its uninstall: %v", err)
		}
		if !west.isAttached(t, westCg) {
			t.Fatal("west's pod was detached by east's uninstall")
		}
		west.mustReachSidecar(t, westCg, westSvc.String())
		west.waitProbe(t, westCg)
		mustReachDirect(t, eastCg, eastSvc.String(), "direct-east")
	})
}

// Before sites had their own pin dirs, the one node agent of a cluster
// pinned everything in <bpffs>/skiff and attached every site's pods. Each
// site's new agent takes its own pods over (attached by its programs,
// then their legacy links detached), drops the legacy links of cgroups
// that are gone, and leaves the other sites' alone; the last one to take
// its pods over removes the legacy maps.
func TestDaemonTakesOverLegacy(t *testing.T) {
	envs := newAgentEnvs(t, siteNS{"east", "east"}, siteNS{"west", "west"})
	east, west := envs[0], envs[1]
	injected := map[string]string{contract.StatusAnnotation: "{}"}
	eastPod := east.createPod(t, "app", injected, "node-a")
	westPod := west.createPod(t, "app", injected, "node-a")
	eastCg, westCg := east.podCgroup(t, eastPod), west.podCgroup(t, westPod)
	goneCg := filepath.Join(east.cgRoot, "gone")
	if err := os.Mkdir(goneCg, 0o755); err != nil {
		t.Fatal(err)
	}
	// The old agent's pins (this version's programs stand in for it).
	legacy := bpf.LegacyPinDir(east.bpffs)
	old, err := bpf.Load(bpf.Config{PinDir: legacy})
	if err != nil {
		t.Fatal(err)
	}
	for _, cg := range []string{eastCg, westCg, goneCg} {
		if _, err := old.Attach(cg); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	t.Cleanup(func() { bpf.Uninstall(legacy) })
	legacyPaths := func() []string {
		as, err := bpf.LegacyAttachments(legacy)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.Path)
		}
		return out
	}
	if err := os.Remove(goneCg); err != nil {
		t.Fatal(err)
	}
	// The kernel severs the gone cgroup's links a moment after rmdir.
	testutil.Eventually(t, 10*time.Second, "the gone cgroup's legacy links severed", func() error {
		if got := legacyPaths(); len(got) != 3 || !slices.Contains(got, "") {
			return fmt.Errorf("legacy attachments %q", got)
		}
		return nil
	})

	east.startDaemon(t) // ready: swept
	east.waitAttached(t, eastCg, true)
	testutil.Eventually(t, 30*time.Second, "east's pod taken over, west's left alone", func() error {
		if got := legacyPaths(); !cmp.Equal(got, []string{westCg}) {
			return fmt.Errorf("legacy attachments %q, want only west's pod", got)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(legacy, "settings")); err != nil {
		t.Errorf("the legacy maps went while west's pod still uses them: %v", err)
	}

	stopWest := west.startDaemon(t)
	west.waitAttached(t, westCg, true)
	testutil.Eventually(t, 30*time.Second, "west's pod taken over", func() error {
		if got := legacyPaths(); len(got) != 0 {
			return fmt.Errorf("legacy attachments %q", got)
		}
		return nil
	})
	// The next sweep (a restart sweeps at once) removes the legacy maps.
	stopWest()
	west.startDaemon(t)
	for _, name := range []string{"settings", "services", "links"} {
		if _, err := os.Stat(filepath.Join(legacy, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("legacy %s after every pod was taken over: %v", name, err)
		}
	}
	if _, err := os.Stat(west.pinDir); err != nil {
		t.Errorf("west's pin dir: %v", err)
	}
}

// waitProbe waits until a connect from the pod's cgroup cg to the
// self-check address reaches the sidecar stand-in as the site's own
// self-check address.
func (e *agentEnv) waitProbe(t testing.TB, cg string) {
	t.Helper()
	want := "orig=" + contract.RedirectProbeSiteAddr(e.site).String()
	testutil.Eventually(t, 30*time.Second, e.site+"'s self-check", func() error {
		if got, err := dialFrom(filepath.Join(cg, "app"), probeAddr()); err != nil || got != want {
			return fmt.Errorf("self-check: %q (%v), want %q", got, err, want)
		}
		return nil
	})
}

func probeAddr() string {
	return net.JoinHostPort(contract.RedirectProbeHost, strconv.Itoa(contract.RedirectProbePort))
}

// waitEvent waits for a RedirectRefused Warning Event on pod whose note
// contains note.
func waitEvent(t testing.TB, e *agentEnv, pod, note string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "a RedirectRefused event on pod "+pod, func() error {
		var evs eventsv1.EventList
		if err := e.c.List(t.Context(), &evs, client.InNamespace(e.ns)); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Name == pod && ev.Reason == eventReasonRefused && ev.Type == corev1.EventTypeWarning {
				if !strings.Contains(ev.Note, note) {
					return fmt.Errorf("event note %q lacks %q", ev.Note, note)
				}
				return nil
			}
		}
		return errors.New("no event yet")
	})
}

// mustReachDirect dials addr from the pod's app cgroup: the server itself
// must answer (the connect was not redirected).
func mustReachDirect(t testing.TB, cg, addr, want string) {
	t.Helper()
	if got, err := dialFrom(filepath.Join(cg, "app"), addr); err != nil || got != want {
		t.Fatalf("dial %s from the pod: %q (%v), want %q from the server itself", addr, got, err, want)
	}
}

// directServer listens on host at a free port and answers every
// connection with name; it returns the address.
func directServer(t testing.TB, host, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// hostIPv4 returns an IPv4 address of this host that is not loopback:
// connections to it stay on the host, and the programs redirect them when
// they are services (loopback destinations they never redirect).
func hostIPv4(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Fatal("this host has no IPv4 address but loopback")
	return ""
}
