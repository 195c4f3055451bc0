package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/skiff-io/skiff/test/testutil"
)

// env is what the privileged tests share: tool paths, a cgroup directory
// of their own below the cgroup2 mount, and a pin directory of their own.
type env struct {
	ip, nsenter, setpriv, curl string
	cgroupRoot                 string // <cgroup2>/skiff-test-<pid>
	pinDir                     string // /sys/fs/bpf/skiff-test-<pid>
	dir                        string // readable by UID 1337: binaries, site files
	helper                     string // a copy of this test binary in dir
}

// requireEnv skips (fails in CI) unless the tests can build pods: root,
// the tools, a cgroup2 mount, and a kernel that loads the programs.
func requireEnv(t testing.TB) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged tier (netns, cgroups, eBPF): not run with -short")
	}
	testutil.RequireRoot(t)
	tools := testutil.RequireTool(t, "ip", "nsenter", "setpriv", "curl")
	e := &env{ip: tools[0], nsenter: tools[1], setpriv: tools[2], curl: tools[3]}
	mnt, err := Cgroup2Mount()
	testutil.Require(t, err == nil, "cgroup v2: %v", err)
	e.cgroupRoot = filepath.Join(mnt, fmt.Sprintf("skiff-test-%d", os.Getpid()))
	e.pinDir = fmt.Sprintf("/sys/fs/bpf/skiff-test-%d", os.Getpid())
	if err := os.MkdirAll(e.cgroupRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	// The go test work dir is private to root; UID 1337 runs helpers from
	// a copy.
	e.dir = fmt.Sprintf("/tmp/skiff-bpf-test-%d", os.Getpid())
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(e.dir) })
	e.helper = filepath.Join(e.dir, "helper")
	mustRun(t, "cp", os.Args[0], e.helper)
	t.Cleanup(func() { testutil.RemoveCgroupTree(t, e.cgroupRoot) })
	// Probe the kernel once: a load that fails for want of a feature is a
	// missing prerequisite, any other failure is a test failure.
	r, err := Load(Config{PinDir: e.pinDir})
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
		if err := Uninstall(e.pinDir); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	return e
}

// testSite is the site of the tests' pods: their sidecars' site files
// name it, and load gives it to the Redirector.
const testSite = "pod"

func (e *env) load(t testing.TB) *Redirector {
	t.Helper()
	r, err := Load(Config{PinDir: e.pinDir, Site: testSite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// pod is a network namespace and a cgroup; processes run in child cgroups
// (app, sidecar) as containers do in a Kubernetes pod's cgroup.
type pod struct {
	e       *env
	t       testing.TB
	name    string
	netns   string // /run/netns/<name>
	cgroup  string
	hostIP4 string // the root netns end of the veth, if any
	hostIP6 string
}

// newPod makes a pod. With n > 0 it gets a veth to the root netns:
// 10.78.n.1/30 and fd78:n::1/64 on the host side, .2 and ::2 in the pod,
// and a default route through the host.
func (e *env) newPod(t testing.TB, name string, n int) *pod {
	t.Helper()
	full := fmt.Sprintf("sk%d-%s", os.Getpid()%100000, name)
	p := &pod{e: e, t: t, name: full, netns: "/run/netns/" + full, cgroup: filepath.Join(e.cgroupRoot, name)}
	mustRun(t, e.ip, "netns", "add", full)
	t.Cleanup(func() { exec.Command(e.ip, "netns", "del", full).Run() })
	p.nsRun(e.ip, "link", "set", "lo", "up")
	if n > 0 {
		hostIf, podIf := fmt.Sprintf("skh%d%s", os.Getpid()%10000, name), fmt.Sprintf("skp%d%s", os.Getpid()%10000, name)
		p.hostIP4, p.hostIP6 = fmt.Sprintf("10.78.%d.1", n), fmt.Sprintf("fd78:%d::1", n)
		mustRun(t, e.ip, "link", "add", hostIf, "type", "veth", "peer", "name", podIf, "netns", full)
		t.Cleanup(func() { exec.Command(e.ip, "link", "del", hostIf).Run() })
		mustRun(t, e.ip, "addr", "add", p.hostIP4+"/30", "dev", hostIf)
		mustRun(t, e.ip, "-6", "addr", "add", p.hostIP6+"/64", "dev", hostIf, "nodad")
		mustRun(t, e.ip, "link", "set", hostIf, "up")
		p.nsRun(e.ip, "addr", "add", fmt.Sprintf("10.78.%d.2/30", n), "dev", podIf)
		p.nsRun(e.ip, "-6", "addr", "add", fmt.Sprintf("fd78:%d::2/64", n), "dev", podIf, "nodad")
		p.nsRun(e.ip, "link", "set", podIf, "up")
		p.nsRun(e.ip, "route", "add", "default", "via", p.hostIP4)
		p.nsRun(e.ip, "-6", "route", "add", "default", "via", p.hostIP6)
	}
	for _, c := range []string{"", "app", "sidecar"} {
		if err := os.MkdirAll(filepath.Join(p.cgroup, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// nsRun runs a command in the pod's netns (not its cgroup).
func (p *pod) nsRun(args ...string) {
	p.t.Helper()
	mustRun(p.t, append([]string{p.e.nsenter, "--net=" + p.netns}, args...)...)
}

// command returns a command that runs in the pod: in its netns, in the
// child cgroup sub, as uid when uid > 0. It enters the cgroup itself
// before exec, so not one connect escapes the programs. nsenter --net
// keeps /sys as it is (ip netns exec would remount it).
func (p *pod) command(sub string, uid int, args ...string) *exec.Cmd {
	procs := filepath.Join(p.cgroup, sub, "cgroup.procs")
	argv := []string{"-c", `echo $$ > "$0" && exec "$@"`, procs, p.e.nsenter, "--net=" + p.netns}
	if uid > 0 {
		argv = append(argv, p.e.setpriv, "--reuid", fmt.Sprint(uid), "--regid", fmt.Sprint(uid), "--clear-groups")
	}
	return exec.Command("/bin/sh", append(argv, args...)...)
}

// curl fetches url from the pod's app cgroup as uid, returning the body.
func (p *pod) curl(uid int, url string) (string, error) {
	out, err := p.command("app", uid, p.e.curl, "-gsS", "--max-time", "5", url).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mustCurl is curl that fails the test unless the body is want.
func (p *pod) mustCurl(t testing.TB, uid int, url, want string) {
	t.Helper()
	got, err := p.curl(uid, url)
	if err != nil || got != want {
		t.Fatalf("curl %s as uid %d in pod %s: got %q (%v), want %q", url, uid, p.name, got, err, want)
	}
}

// client runs the raw-socket client helper in the app cgroup.
func (p *pod) client(args ...string) (string, error) { return p.clientAs(0, args...) }

// clientAs runs the raw-socket client helper in the app cgroup as uid.
func (p *pod) clientAs(uid int, args ...string) (string, error) {
	cmd := p.command("app", uid, append([]string{p.e.helper}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=client")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// proc is a background process of a test, killed at cleanup.
type proc = testutil.Proc

// start runs cmd in the background until the test ends.
func start(t testing.TB, cmd *exec.Cmd) *proc { return testutil.Start(t, cmd) }

// startOrigDst runs the stand-in sidecar in the pod's sidecar cgroup as
// UID 1337.
func (p *pod) startOrigDst(t testing.TB, listen string) {
	t.Helper()
	cmd := p.command("sidecar", 1337, p.e.helper, listen)
	cmd.Env = append(os.Environ(), helperEnv+"=origdst")
	r, w := io.Pipe()
	cmd.Stdout = w
	start(t, cmd)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err == nil && line != "listening\n" {
			err = fmt.Errorf("origdst said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, r)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("origdst helper did not start")
	}
}

func mustRun(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
