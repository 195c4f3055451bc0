package linux_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

// Two sites' pods on one machine, with the real binaries: each pod (a
// network namespace and a cgroup, app and sidecar in child cgroups) runs
// the real `skiff-router sidecar` of its site, whose self-check gates
// readiness; `skiff-node-agent` attaches the pods site by site, each site
// in its own pin dir. What the real cluster showed (issue 13: a pod of a
// site without a node agent, attached by another site's agent, bypassed
// its sidecar while its self-check passed) must not pass here:
//
//   - alpha's agent attaches alpha's pod: alpha's sidecar verifies and
//     carries alpha's service; beta has no agent: beta's pod bypasses its
//     sidecar and its self-check says so;
//   - alpha's agent attaches beta's pod too (what node agents did before
//     each site had its own programs): the self-check reaches beta's
//     sidecar but through alpha's programs, and is refused; beta's service
//     still bypasses the sidecar;
//   - beta's agent attaches beta's pod: both verified, each pod's service
//     through its own sidecar (counted in its streams), the other site's
//     service direct;
//   - alpha uninstalls: alpha's sidecar reports the redirect lost, beta's
//     stays verified and redirected.
func TestNodeAgentSites(t *testing.T) {
	testutil.RequireRoot(t)
	tools := testutil.RequireTool(t, "ip", "nsenter", "setpriv", "curl")
	ipT, nsenter, setpriv, curlT := tools[0], tools[1], tools[2], tools[3]
	router := buildRouter(t)
	agentBin := buildNodeAgent(t)
	mnt, err := bpf.Cgroup2Mount()
	testutil.Require(t, err == nil, "cgroup v2: %v", err)
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	cgRoot := filepath.Join(mnt, "skiff-sites-"+id)
	if err := os.Mkdir(cgRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveCgroupTree(t, cgRoot) })
	bpffs := "/sys/fs/bpf/skiff-sites-" + id
	t.Cleanup(func() { os.RemoveAll(bpffs) })
	dir, err := os.MkdirTemp("", "skiff-sites-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)

	// The service of each site: a VIP on the host with a server of its own
	// behind it (so what bypasses the sidecar answers "direct-..."), and
	// the endpoint the sidecar routes it to.
	const hostIP = "10.79.0.1"
	type site struct {
		name, ns, cgroup, podIP string
		vip, endpoint           string
		sidecar                 *proc
	}
	sites := []*site{
		{name: "alpha", podIP: "10.79.1.2", vip: hostIP + ":8080", endpoint: hostIP + ":9080"},
		{name: "beta", podIP: "10.79.2.2", vip: hostIP + ":8081", endpoint: hostIP + ":9081"},
	}
	for i, s := range sites {
		s.ns = fmt.Sprintf("skiff-%s-%s", s.name, id)
		hostIf, podIf := fmt.Sprintf("sk%dh%s", i, id), fmt.Sprintf("sk%dp%s", i, id)
		gw := fmt.Sprintf("10.79.%d.1", i+1)
		run(t, ipT, "netns", "add", s.ns)
		t.Cleanup(func() { exec.Command(ipT, "netns", "del", s.ns).Run() })
		run(t, ipT, "link", "add", hostIf, "type", "veth", "peer", "name", podIf, "netns", s.ns)
		t.Cleanup(func() { exec.Command(ipT, "link", "del", hostIf).Run() })
		run(t, ipT, "addr", "add", gw+"/30", "dev", hostIf)
		if i == 0 { // the services' host, which every pod reaches through its default route
			run(t, ipT, "addr", "add", hostIP+"/32", "dev", hostIf)
		}
		run(t, ipT, "link", "set", hostIf, "up")
		inNS := func(args ...string) []string { return append([]string{nsenter, "--net=/run/netns/" + s.ns}, args...) }
		run(t, inNS(ipT, "addr", "add", s.podIP+"/30", "dev", podIf)...)
		run(t, inNS(ipT, "link", "set", podIf, "up")...)
		run(t, inNS(ipT, "link", "set", "lo", "up")...)
		run(t, inNS(ipT, "route", "add", "default", "via", gw)...)
		s.cgroup = filepath.Join(cgRoot, s.name)
		for _, c := range []string{"app", "sidecar"} {
			if err := os.MkdirAll(filepath.Join(s.cgroup, c), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range sites {
		testutil.HTTPNameServer(t, s.vip, "direct-"+s.name)
		testutil.HTTPNameServer(t, s.endpoint, "backend-"+s.name)
	}
	// inPod returns a command run in the pod's netns and its child cgroup
	// sub, as uid when uid > 0 (it enters the cgroup before it execs).
	inPod := func(s *site, sub string, uid int, args ...string) *exec.Cmd {
		argv := []string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(s.cgroup, sub, "cgroup.procs"), nsenter, "--net=/run/netns/" + s.ns}
		if uid > 0 {
			argv = append(argv, setpriv, "--reuid", fmt.Sprint(uid), "--regid", fmt.Sprint(uid), "--clear-groups")
		}
		return exec.Command("/bin/sh", append(argv, args...)...)
	}
	curl := func(s *site, url string) string {
		out, _ := inPod(s, "app", 0, curlT, "-sS", "--max-time", "5", url).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	metrics := func(s *site) string { return curl(s, "http://127.0.0.1:15090/metrics") }
	verified := func(s *site) string {
		for _, l := range strings.Split(metrics(s), "\n") {
			if v, ok := strings.CutPrefix(l, "skiff_sidecar_redirect_verified "); ok {
				return v
			}
		}
		return "?"
	}
	streams := func(s *site) string {
		var out []string
		for _, l := range strings.Split(metrics(s), "\n") {
			if strings.HasPrefix(l, "skiff_streams_opened_total{") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	waitVerified := func(s *site, want string) {
		t.Helper()
		testutil.Eventually(t, 15*time.Second, s.name+"'s self-check "+want, func() error {
			if v := verified(s); v != want {
				return fmt.Errorf("skiff_sidecar_redirect_verified %s", v)
			}
			return nil
		})
	}
	const wait = 2 * time.Second
	for _, s := range sites {
		sdir := filepath.Join(dir, s.name)
		os.MkdirAll(sdir, 0o755)
		file := filepath.Join(sdir, "site.yaml")
		os.WriteFile(file, []byte(fmt.Sprintf("name: %s\ndataDir: data\nlisteners:\n  - {address: svc-%s, host: %s, port: %s}\nconnectors:\n  - {address: svc-%s, host: %s, port: %s}\n",
			s.name, s.name, hostIP, port(s.vip), s.name, hostIP, port(s.endpoint))), 0o600)
		run(t, "chown", "-R", "1337:1337", sdir)
		s.sidecar = testutil.Start(t, inPod(s, "sidecar", contract.SidecarUID, router, "sidecar", "--site-file", file,
			"--metrics-bind-address", "127.0.0.1:15090", "--health-probe-bind-address", "127.0.0.1:15021",
			"--redirect-wait="+wait.String(), "--redirect-recheck=200ms"))
	}
	alpha, beta := sites[0], sites[1]
	pinDir := func(s *site) string {
		d, err := bpf.SitePinDir(bpffs, s.name)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	agent := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(agentBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("skiff-node-agent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	attach := func(agentOf, pod *site) {
		t.Helper()
		agent("attach", "--site", agentOf.name, "--pin-dir", pinDir(agentOf), "--cgroup", pod.cgroup, "--service", agentOf.vip)
	}
	redirected := func(s *site) uint64 {
		t.Helper()
		var st struct {
			Counters bpf.Stats `json:"counters"`
		}
		if err := json.Unmarshal([]byte(agent("status", "--pin-dir", pinDir(s))), &st); err != nil {
			t.Fatal(err)
		}
		return st.Counters.Connect4.Redirected
	}
	t.Cleanup(func() {
		for _, s := range sites {
			bpf.Uninstall(pinDir(s))
		}
	})

	t.Run("a site without a node agent bypasses its sidecar, and its self-check says so", func(t *testing.T) {
		attach(alpha, alpha)
		waitVerified(alpha, "1")
		if got := curl(alpha, "http://"+alpha.vip+"/"); got != "backend-alpha" {
			t.Errorf("alpha's pod to its service: %q, want it through its sidecar", got)
		}
		if got := curl(beta, "http://"+beta.vip+"/"); got != "direct-beta" {
			t.Errorf("beta's pod to its service: %q, want direct (no agent)", got)
		}
		testutil.Eventually(t, wait+15*time.Second, "beta's sidecar ready once the wait is over", func() error {
			if out := curl(beta, "http://127.0.0.1:15021/readyz"); out != "ok" {
				return fmt.Errorf("readyz %q", out)
			}
			return nil
		})
		if v := verified(beta); v != "0" {
			t.Errorf("beta's self-check without an agent: %s, want 0", v)
		}
	})

	t.Run("another site's agent attaching the pod does not pass the self-check", func(t *testing.T) {
		before := redirected(alpha)
		attach(alpha, beta)
		// Its self-checks now reach its sidecar, through alpha's programs.
		testutil.Eventually(t, 15*time.Second, "beta's self-checks redirected by alpha's programs", func() error {
			if n := redirected(alpha) - before; n < 5 {
				return fmt.Errorf("%d connects redirected", n)
			}
			return nil
		})
		if v := verified(beta); v != "0" {
			t.Errorf("beta's self-check through alpha's programs: %s, want 0", v)
		}
		if strings.Contains(beta.sidecar.Output(), `"msg":"redirection verified"`) {
			t.Errorf("beta's sidecar verified alpha's programs:\n%s", beta.sidecar.Output())
		}
		if got := curl(beta, "http://"+beta.vip+"/"); got != "direct-beta" {
			t.Errorf("beta's pod to its service: %q, want direct (alpha's map lacks it)", got)
		}
		agent("detach", "--pin-dir", pinDir(alpha), "--cgroup", beta.cgroup)
	})

	t.Run("each site's agent redirects its own pods for its own services", func(t *testing.T) {
		attach(beta, beta)
		waitVerified(beta, "1")
		waitVerified(alpha, "1")
		for _, s := range sites {
			if got := curl(s, "http://"+s.vip+"/"); got != "backend-"+s.name {
				t.Errorf("%s's pod to its service: %q, want it through its sidecar", s.name, got)
			}
			if !strings.Contains(streams(s), `address="svc-`+s.name+`"`) {
				t.Errorf("%s's sidecar counted no stream of its service:\n%s", s.name, streams(s))
			}
		}
		if got := curl(beta, "http://"+alpha.vip+"/"); got != "direct-alpha" {
			t.Errorf("beta's pod to alpha's service: %q, want direct", got)
		}
		if got := curl(alpha, "http://"+beta.vip+"/"); got != "direct-beta" {
			t.Errorf("alpha's pod to beta's service: %q, want direct", got)
		}
	})

	t.Run("one site's uninstall leaves the other redirected", func(t *testing.T) {
		agent("uninstall", "--pin-dir", pinDir(alpha))
		waitVerified(alpha, "0")
		if !strings.Contains(alpha.sidecar.Output(), `"msg":"redirection lost`) {
			t.Errorf("alpha's sidecar did not report the redirect lost:\n%s", alpha.sidecar.Output())
		}
		if v := verified(beta); v != "1" {
			t.Errorf("beta's self-check after alpha's uninstall: %s, want 1", v)
		}
		if got := curl(beta, "http://"+beta.vip+"/"); got != "backend-beta" {
			t.Errorf("beta's pod to its service after alpha's uninstall: %q", got)
		}
		if got := curl(alpha, "http://"+alpha.vip+"/"); got != "direct-alpha" {
			t.Errorf("alpha's pod to its service after its uninstall: %q, want direct", got)
		}
	})
}

var (
	agentOnce sync.Once
	agentDir  string
	agentErr  error
)

// buildNodeAgent builds skiff-node-agent once per test binary.
func buildNodeAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		if agentDir, agentErr = os.MkdirTemp("", "skiff-agent-bin-"); agentErr == nil {
			agentErr = testutil.GoBuild(agentDir, "github.com/skiff-io/skiff/bpf/cmd/skiff-node-agent")
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return filepath.Join(agentDir, "skiff-node-agent")
}

// port returns the port of host:port.
func port(hostPort string) string {
	_, p, _ := strings.Cut(hostPort, ":")
	return p
}
