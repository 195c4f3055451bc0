package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/test/testutil/kubetest"
	"github.com/skiff-io/skiff/xds/server"
)

// agentEnv is what TestDaemon works with: a real apiserver, a real xDS
// server, a cgroup tree of its own in which the test plays kubelet, and a
// pin directory of its own.
type agentEnv struct {
	t         *testing.T
	c         client.Client
	site      string
	ns        string
	cgRoot    string // <cgroup2>/skiff-agent-test-<rand>
	bpffs     string // /sys/fs/bpf/skiff-agent-test-<rand>, the node's bpffs to the agents
	pinDir    string // the site's: <bpffs>/skiff/sites/<site>
	opts      DaemonOptions
	xds       *server.Server
	stopXDS   func()
	metrics   string // http://host:port/metrics
	readyz    string
	bpfConfig bpf.Config
}

// The DaemonSet mode against a real apiserver (envtest, the test playing
// kubelet: it makes the pods' cgroups) and a real xDS server, with the
// real programs: an injected pod's cgroup is attached with its exclusions
// and a process in it reaches the sidecar through a service VIP; other
// pods are left alone; a malformed annotation and a host-network pod are
// refused and recorded; annotating, de-annotating and terminating attach
// and detach; a restart keeps the links (same ids, redirection through
// the gap) and removes the stale one of a pod deleted meanwhile; the
// services map follows the controller and keeps its content while the
// controller is away; deleting the pod detaches it; --cleanup-on-exit
// removes every pin. The self-check is armed with the site's address once
// the controller's table is in the services map.
func TestDaemon(t *testing.T) {
	e := newAgentEnv(t)
	ctx := t.Context()
	const vip = "10.96.77.10"

	stop := e.startDaemon(t)
	plain := e.createPod(t, "plain", nil, "node-a")
	web := e.createPod(t, "web", map[string]string{
		contract.StatusAnnotation:                     "{}",
		contract.ConfigExcludeOutboundPortsAnnotation: "15090",
		contract.ConfigExcludeOutboundCIDRsAnnotation: "10.200.0.0/16",
		// The injector's business, not the agent's: never a reason to
		// refuse, even when this agent does not know them.
		contract.ConfigProxyCPUAnnotation:       "100m",
		"config.skiff.io/from-a-newer-injector": "x",
	}, "node-a")
	bad := e.createPod(t, "bad", map[string]string{contract.StatusAnnotation: "{}", contract.ConfigExcludeOutboundPortsAnnotation: "http"}, "node-a")
	elsewhere := e.createPod(t, "elsewhere", map[string]string{contract.StatusAnnotation: "{}"}, "node-b")
	hostnet := e.createPod(t, "hostnet", map[string]string{contract.StatusAnnotation: "{}"}, "node-a", func(p *corev1.Pod) { p.Spec.HostNetwork = true })
	// kubelet makes the cgroups after the pods exist: the agent waits.
	plainCg, webCg, badCg, elsewhereCg, hostnetCg := e.podCgroup(t, plain), e.podCgroup(t, web), e.podCgroup(t, bad), e.podCgroup(t, elsewhere), e.podCgroup(t, hostnet)

	t.Run("the injected pod is attached with its exclusions", func(t *testing.T) {
		e.waitAttached(t, webCg, true)
		got := map[string]bool{}
		for _, a := range e.attachments(t) {
			got[a.Path] = len(a.Programs) == 4
		}
		if diff := cmp.Diff(got, map[string]bool{webCg: true}); diff != "" {
			t.Errorf("attached cgroups (-got +want): only the injected pod of this node\n%s", diff)
		}
		want := bpf.Exclusions{Ports: []uint16{15090}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}}
		if diff := cmp.Diff(e.exclusions(t, webCg), want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("exclusions (-got +want)\n%s", diff)
		}
	})

	t.Run("a malformed exclusion annotation or host network is refused and recorded", func(t *testing.T) {
		for pod, note := range map[string]string{
			"bad":     `annotation config.skiff.io/exclude-outbound-ports: "http"`,
			"hostnet": "host network",
		} {
			testutil.Eventually(t, 30*time.Second, "a RedirectRefused event on pod "+pod, func() error {
				var evs eventsv1.EventList
				if err := e.c.List(ctx, &evs, client.InNamespace(e.ns)); err != nil {
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
		for _, reason := range []string{"invalid_annotation", "host_network"} {
			if got := e.metric(t, `skiff_node_agent_attach_failures_total{reason="`+reason+`"}`); got != 1 {
				t.Errorf("%s failures: %v, want 1", reason, got)
			}
		}
		for name, cg := range map[string]string{"bad": badCg, "plain": plainCg, "elsewhere": elsewhereCg, "hostnet": hostnetCg} {
			if e.isAttached(t, cg) {
				t.Errorf("pod %s is attached", name)
			}
		}
	})

	t.Run("the services map follows the controller", func(t *testing.T) {
		e.waitServices(t, vip+":80")
	})

	t.Run("a process in the pod reaches the sidecar through a VIP", func(t *testing.T) {
		startSidecar(e.t, filepath.Join(webCg, "sidecar"), fmt.Sprintf("127.0.0.1:%d", e.opts.SidecarPort))
		e.mustReachSidecar(t, webCg, vip+":80")
		if got := e.metric(t, `skiff_node_agent_bpf_events_total{program="connect4",result="redirected"}`); got < 1 {
			t.Errorf("connect4 redirected: %v, want at least 1", got)
		}
	})

	t.Run("the self-check is armed with the site's address", func(t *testing.T) {
		e.waitProbe(t, webCg)
	})

	t.Run("annotating attaches, removing the annotation detaches", func(t *testing.T) {
		e.annotate(t, plain, map[string]string{contract.StatusAnnotation: "{}"})
		e.waitAttached(t, plainCg, true)
		e.annotate(t, plain, map[string]string{contract.StatusAnnotation: ""})
		e.waitAttached(t, plainCg, false)
	})

	t.Run("a terminated pod is detached", func(t *testing.T) {
		e.annotate(t, plain, map[string]string{contract.StatusAnnotation: "{}"})
		e.waitAttached(t, plainCg, true)
		var p corev1.Pod
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(plain), &p); err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodSucceeded
		if err := e.c.Status().Update(ctx, &p); err != nil {
			t.Fatal(err)
		}
		e.waitAttached(t, plainCg, false)
	})

	t.Run("exclusions follow the annotations; a malformed edit keeps the last valid ones", func(t *testing.T) {
		e.annotate(t, web, map[string]string{contract.ConfigExcludeOutboundPortsAnnotation: "9090,15090"})
		want := bpf.Exclusions{Ports: []uint16{9090, 15090}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}}
		testutil.Eventually(t, 30*time.Second, "exclusions updated", func() error {
			if diff := cmp.Diff(e.exclusions(t, webCg), want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				return fmt.Errorf("(-got +want)\n%s", diff)
			}
			return nil
		})
		e.annotate(t, web, map[string]string{contract.ConfigExcludeOutboundCIDRsAnnotation: "10.200.0.0/99"})
		testutil.Eventually(t, 30*time.Second, "the malformed edit counted", func() error {
			if got := e.metric(t, `skiff_node_agent_attach_failures_total{reason="invalid_annotation"}`); got != 2 {
				return fmt.Errorf("invalid_annotation failures: %v, want 2", got)
			}
			return nil
		})
		if diff := cmp.Diff(e.exclusions(t, webCg), want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" || !e.isAttached(t, webCg) {
			t.Errorf("after a malformed edit: attached %v, exclusions (-got +want)\n%s", e.isAttached(t, webCg), diff)
		}
		e.annotate(t, web, map[string]string{contract.ConfigExcludeOutboundCIDRsAnnotation: "10.200.0.0/16"})
	})

	t.Run("metrics", func(t *testing.T) {
		for series, want := range map[string]float64{
			"skiff_node_agent_pods_attached": 1,
			"skiff_node_agent_services":      1,
			"skiff_xds_connected":            1,
		} {
			testutil.Eventually(t, 30*time.Second, series, func() error {
				if got := e.metric(t, series); got != want {
					return fmt.Errorf("%s = %v, want %v", series, got, want)
				}
				return nil
			})
		}
	})

	t.Run("a restart keeps the links and removes stale ones", func(t *testing.T) {
		gone := e.createPod(t, "gone", map[string]string{contract.StatusAnnotation: "{}"}, "node-a")
		goneCg := e.podCgroup(t, gone)
		e.waitAttached(t, goneCg, true)
		before := e.linkIDs(t, webCg)
		stop()
		// No agent: the pins keep redirecting.
		if got := e.linkIDs(t, webCg); !cmp.Equal(got, before) {
			t.Fatalf("links with the agent stopped: %v, want %v", got, before)
		}
		e.mustReachSidecar(t, webCg, vip+":80")
		// Deleted while no agent runs; its cgroup (and so its links) stay
		// until the agent sweeps them.
		e.deletePod(t, gone)
		if !e.isAttached(t, goneCg) {
			t.Fatal("the deleted pod's links went before the agent restarted")
		}
		stop = e.startDaemon(t) // ready means swept
		if e.isAttached(t, goneCg) {
			t.Errorf("the pod deleted while the agent was down is still attached")
		}
		if got := e.linkIDs(t, webCg); !cmp.Equal(got, before) {
			t.Errorf("links after the restart: %v, want the same %v (never detached)", got, before)
		}
		testutil.Eventually(t, 30*time.Second, "the restarted agent knows the pod", func() error {
			if got := e.metric(t, "skiff_node_agent_pods_attached"); got != 1 {
				return fmt.Errorf("pods attached: %v, want 1", got)
			}
			return nil
		})
		e.mustReachSidecar(t, webCg, vip+":80")
	})

	t.Run("the services map keeps its content while the controller is away", func(t *testing.T) {
		e.xds.Update(table(e.site, vip, "10.96.77.11"))
		e.waitServices(t, vip+":80", "10.96.77.11:80")
		e.stopXDS()
		testutil.Eventually(t, 30*time.Second, "disconnected", func() error {
			if got := e.metric(t, "skiff_xds_connected"); got != 0 {
				return fmt.Errorf("skiff_xds_connected %v", got)
			}
			return nil
		})
		e.waitServices(t, vip+":80", "10.96.77.11:80")
		e.mustReachSidecar(t, webCg, "10.96.77.11:80")
	})

	t.Run("deleting the pod detaches it", func(t *testing.T) {
		e.deletePod(t, web)
		e.waitAttached(t, webCg, false)
		testutil.Eventually(t, 30*time.Second, "no pod attached", func() error {
			if got := e.metric(t, "skiff_node_agent_pods_attached"); got != 0 {
				return fmt.Errorf("pods attached: %v, want 0", got)
			}
			return nil
		})
	})
	stop()

	t.Run("--cleanup-on-exit removes every pin", func(t *testing.T) {
		e.annotate(t, bad, map[string]string{contract.ConfigExcludeOutboundPortsAnnotation: "8080"})
		opts := e.opts
		e.opts.CleanupOnExit = true
		defer func() { e.opts = opts }()
		stop := e.startDaemon(t)
		e.waitAttached(t, badCg, true)
		stop()
		if _, err := os.Stat(e.pinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir after the agent exited with --cleanup-on-exit: %v", err)
		}
	})
}

func newAgentEnv(t *testing.T) *agentEnv {
	return newAgentEnvs(t, siteNS{"east", "shop"})[0]
}

// siteNS is a site and its namespace.
type siteNS struct{ site, ns string }

// newAgentEnvs makes one apiserver, one cgroup tree and one stand-in for
// the node's bpf filesystem, and an environment per site on them: its
// namespace, its xDS server (with the table of table(site, ...)), its
// agent's options (own pin dir SitePinDir(<bpffs>, site), sidecar port,
// admin ports).
func newAgentEnvs(t *testing.T, sites ...siteNS) []*agentEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged tier (envtest, cgroups, eBPF): not run with -short")
	}
	testutil.RequireRoot(t)
	testutil.RequireEnvtest(t)
	mnt, err := bpf.Cgroup2Mount()
	testutil.Require(t, err == nil, "cgroup v2: %v", err)
	var b [4]byte
	rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	cgRoot := filepath.Join(mnt, "skiff-agent-test-"+suffix)
	bpffs := "/sys/fs/bpf/skiff-agent-test-" + suffix
	if err := os.Mkdir(cgRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveCgroupTree(t, cgRoot) })
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(bpffs); err != nil {
			t.Errorf("remove %s: %v", bpffs, err)
		}
	})

	cfg := kubetest.StartEnvtest(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	var envs []*agentEnv
	for _, sn := range sites {
		pinDir, err := bpf.SitePinDir(bpffs, sn.site)
		if err != nil {
			t.Fatal(err)
		}
		e := &agentEnv{t: t, c: c, site: sn.site, ns: sn.ns, cgRoot: cgRoot, bpffs: bpffs, pinDir: pinDir}
		e.bpfConfig = bpf.Config{Site: sn.site, PinDir: pinDir, SidecarPort: uint16(port())}
		// Probe the kernel: a missing feature is a missing prerequisite.
		r, err := bpf.Load(e.bpfConfig)
		if err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				t.Fatalf("verifier: %+v", ve)
			}
			testutil.Require(t, !errors.Is(err, ebpf.ErrNotSupported), "kernel support: %v", err)
			t.Fatal(err)
		}
		r.Close()
		t.Cleanup(func() {
			if err := bpf.Uninstall(pinDir); err != nil {
				t.Errorf("uninstall: %v", err)
			}
		})
		if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sn.ns}}); err != nil {
			t.Fatal(err)
		}

		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.xds = server.New(server.Options{Log: testr.New(t).WithName("controller-" + sn.site), Debounce: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
		e.xds.Update(table(sn.site, "10.96.77.10"))
		xctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- e.xds.Serve(xctx, lis) }()
		stopped := false
		e.stopXDS = func() {
			if !stopped {
				stopped = true
				cancel()
				if err := <-served; err != nil {
					t.Errorf("xds server: %v", err)
				}
			}
		}
		t.Cleanup(e.stopXDS)

		metricsAddr, healthAddr := fmt.Sprintf("127.0.0.1:%d", port()), fmt.Sprintf("127.0.0.1:%d", port())
		e.metrics, e.readyz = "http://"+metricsAddr+"/metrics", "http://"+healthAddr+"/readyz"
		e.opts = DaemonOptions{
			NodeName: "node-a", Site: sn.site, Namespace: sn.ns, Controller: lis.Addr().String(),
			CgroupRoot: cgRoot, BPFFS: bpffs,
			MetricsBindAddress: metricsAddr, HealthProbeBindAddress: healthAddr,
			RESTConfig: cfg, SidecarPort: e.bpfConfig.SidecarPort,
		}
		envs = append(envs, e)
	}
	return envs
}

// table is site's controller's table: service backend:80 at the VIPs.
func table(site string, vips ...string) *model.Table { return tablePort(site, 80, vips...) }

// tablePort is table with the service at port.
func tablePort(site string, port int, vips ...string) *model.Table {
	t := &model.Table{Site: site, Sites: []model.Site{{Name: site}}, Services: []model.Service{{
		Address: "backend", Port: port, Protocol: model.TCP, Routing: model.Balanced, VIPs: vips,
		Endpoints: []model.Endpoint{{IP: "10.244.0.7", Port: 8080, Ready: true, Name: "shop/backend-0"}},
	}}}
	t.Normalize()
	return t
}

// startDaemon runs the daemon until the returned stop; it returns once
// the daemon is ready.
func (e *agentEnv) startDaemon(t testing.TB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Logs and cleanup belong to the whole test: a daemon started in a
	// subtest outlives it.
	log := testr.NewWithOptions(e.t, testr.Options{Verbosity: 1}).WithName("node-agent")
	go func() { done <- RunDaemon(ctx, e.opts, log) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("daemon: %v", err)
		}
	}
	e.t.Cleanup(stop)
	testutil.Eventually(t, 60*time.Second, "daemon ready", func() error {
		select {
		case err := <-done:
			once = true
			t.Fatalf("daemon stopped: %v", err)
		default:
		}
		resp, err := http.Get(e.readyz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	return stop
}

// createPod creates a pod scheduled to node; the apiserver computes its
// QoS class (BestEffort: no resources), the test marks it Running.
func (e *agentEnv) createPod(t testing.TB, name string, annotations map[string]string, node string, mod ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Annotations: annotations},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "example.local/app:v1"}}},
	}
	for _, f := range mod {
		f(pod)
	}
	if err := e.c.Create(t.Context(), pod); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	if pod.Status.QOSClass == "" {
		pod.Status.QOSClass = corev1.PodQOSBestEffort
	}
	pod.Status.Phase = corev1.PodRunning
	if err := e.c.Status().Update(t.Context(), pod); err != nil {
		t.Fatalf("update status of pod %s: %v", name, err)
	}
	if pod.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Fatalf("pod %s: QoS class %s, want BestEffort", name, pod.Status.QOSClass)
	}
	return pod
}

// podCgroup makes the pod's cgroup as kubelet's cgroupfs driver does, with
// a child per container.
func (e *agentEnv) podCgroup(t testing.TB, pod *corev1.Pod) string {
	dir := filepath.Join(e.cgRoot, "kubepods", "besteffort", "pod"+string(pod.UID))
	for _, c := range []string{"app", "sidecar"} {
		if err := os.MkdirAll(filepath.Join(dir, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// annotate sets annotations; an empty value removes the key.
func (e *agentEnv) annotate(t testing.TB, pod *corev1.Pod, ann map[string]string) {
	t.Helper()
	var p corev1.Pod
	if err := e.c.Get(t.Context(), client.ObjectKeyFromObject(pod), &p); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	for k, v := range ann {
		if v == "" {
			delete(p.Annotations, k)
		} else {
			p.Annotations[k] = v
		}
	}
	if err := e.c.Patch(t.Context(), &p, patch); err != nil {
		t.Fatalf("annotate pod %s: %v", pod.Name, err)
	}
}

// deletePod deletes the pod at once, as kubelet's final delete does.
func (e *agentEnv) deletePod(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	if err := e.c.Delete(t.Context(), pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "pod "+pod.Name+" gone", func() error {
		err := e.c.Get(t.Context(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
}

// observe loads a Redirector of its own on the test's pins (with the same
// config, so it changes nothing) for f.
func (e *agentEnv) observe(t testing.TB, f func(r *bpf.Redirector)) {
	r, err := bpf.Load(e.bpfConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f(r)
}

func (e *agentEnv) attachments(t testing.TB) (as []bpf.Attachment) {
	e.observe(t, func(r *bpf.Redirector) {
		var err error
		if as, err = r.Attachments(); err != nil {
			t.Fatal(err)
		}
	})
	return as
}

func (e *agentEnv) exclusions(t testing.TB, cg string) (ex bpf.Exclusions) {
	e.observe(t, func(r *bpf.Redirector) {
		var err error
		if ex, err = r.Exclusions(cg); err != nil {
			t.Fatal(err)
		}
	})
	return ex
}

// isAttached reads the pins: all four links of the cgroup are there.
func (e *agentEnv) isAttached(t testing.TB, cg string) bool {
	return len(e.linkIDs(t, cg)) == 4
}

func (e *agentEnv) waitAttached(t testing.TB, cg string, want bool) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%s attached: %v", cg, want), func() error {
		if got := e.isAttached(t, cg); got != want {
			return fmt.Errorf("attached: %v", got)
		}
		return nil
	})
}

// linkIDs returns the kernel's ids of the links pinned for cgroup cg, by
// program.
func (e *agentEnv) linkIDs(t testing.TB, cg string) map[string]link.ID {
	id, err := bpf.CgroupID(cg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.pinDir, "links", strconv.FormatUint(id, 10))
	ents, _ := os.ReadDir(dir)
	ids := map[string]link.ID{}
	for _, ent := range ents {
		l, err := link.LoadPinnedLink(filepath.Join(dir, ent.Name()), nil)
		if err != nil {
			continue // being unpinned
		}
		if info, err := l.Info(); err == nil {
			ids[ent.Name()] = info.ID
		}
		l.Close()
	}
	return ids
}

func (e *agentEnv) waitServices(t testing.TB, want ...string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "services map", func() (err error) {
		var got []netip.AddrPort
		e.observe(t, func(r *bpf.Redirector) { got, err = r.Services() })
		if err != nil {
			return err
		}
		if s := fmt.Sprint(got); s != fmt.Sprint(want) {
			return fmt.Errorf("services %s, want %v", s, want)
		}
		return nil
	})
}

// mustReachSidecar dials addr from the pod's app cgroup: the sidecar
// helper must answer with addr as the original destination.
func (e *agentEnv) mustReachSidecar(t testing.TB, cg, addr string) {
	t.Helper()
	got, err := dialFrom(filepath.Join(cg, "app"), addr)
	if want := "orig=" + addr; err != nil || got != want {
		t.Fatalf("dial %s from the pod: %q (%v), want %q", addr, got, err, want)
	}
}

// metric returns the value of one series (name{labels} as exposed), or
// -1 when it is not exposed.
func (e *agentEnv) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := http.Get(e.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}
