package linux_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// A sidecar started in a pod whose redirect is not there yet (a node agent
// late or down): /readyz holds the pod back for --redirect-wait, then lets
// it start anyway with one log line and skiff_sidecar_redirect_verified 0;
// once the redirect is installed (here `skiff-router iptables-init`, as the
// skiff-init container runs it) the sidecar's background check sees it.
func TestSidecarRedirectWait(t *testing.T) {
	testutil.RequireRoot(t)
	tools := testutil.RequireTool(t, "ip", "nsenter", "setpriv", "curl")
	bin := buildRouter(t)
	ns := fmt.Sprintf("skiff-wait-%d", os.Getpid()%100000)
	run(t, tools[0], "netns", "add", ns)
	t.Cleanup(func() { exec.Command(tools[0], "netns", "del", ns).Run() })
	nsPath := "/run/netns/" + ns
	run(t, tools[1], "--net="+nsPath, tools[0], "link", "set", "lo", "up")

	// A site file without links or services: only the self-check matters.
	dir, err := os.MkdirTemp("", "skiff-wait-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	siteFile := filepath.Join(dir, "sidecar.yaml")
	os.WriteFile(siteFile, []byte("name: pod\ndataDir: data\n"), 0o600)
	run(t, "chown", "-R", "1337:1337", dir)

	const wait = 2 * time.Second
	started := time.Now()
	logs := start(t, tools[1], "--net="+nsPath, tools[2], "--reuid", "1337", "--regid", "1337", "--clear-groups",
		bin, "sidecar", "--site-file", siteFile, "--metrics-bind-address", "127.0.0.1:15090", "--health-probe-bind-address", "127.0.0.1:15021",
		"--redirect-wait="+wait.String(), "--redirect-recheck=200ms")
	curl := func(url string) (string, error) {
		out, err := exec.Command(tools[1], "--net="+nsPath, tools[3], "-sS", "--max-time", "5", url).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	verified := func() string {
		metrics, err := curl("http://127.0.0.1:15090/metrics")
		if err != nil {
			t.Fatalf("metrics: %v %s", err, metrics)
		}
		for _, l := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(l, "skiff_sidecar_redirect_verified "); ok {
				return v
			}
		}
		t.Fatalf("no skiff_sidecar_redirect_verified in\n%s", metrics)
		return ""
	}

	var first string
	testutil.Eventually(t, 10*time.Second, "sidecar answers /readyz", func() error {
		out, err := curl("http://127.0.0.1:15021/readyz")
		if err != nil {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		first = out
		return nil
	})
	if first != "not ready" && time.Since(started) < wait {
		t.Errorf("readyz without redirection = %q, want not ready", first)
	}
	testutil.Eventually(t, wait+10*time.Second, "sidecar ready once the wait is over", func() error {
		if out, err := curl("http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		return nil
	})
	if d := time.Since(started); d < wait {
		t.Errorf("ready after %v, before the wait of %v", d, wait)
	}
	const notInPlace = `"msg":"redirection not in place; traffic bypasses the sidecar through the gateway until the node agent attaches"`
	if n := strings.Count(logs.Output(), notInPlace); n != 1 {
		t.Errorf("logged %d times %s, want once:\n%s", n, notInPlace, logs.Output())
	}
	if v := verified(); v != "0" {
		t.Errorf("skiff_sidecar_redirect_verified %s without redirection, want 0", v)
	}
	if strings.Contains(logs.Output(), `"msg":"redirection verified"`) {
		t.Errorf("redirection verified without redirection:\n%s", logs.Output())
	}

	// The redirect arrives late; the check running in the background sees it.
	if out, err := exec.Command(tools[1], "--net="+nsPath, bin, "iptables-init").CombinedOutput(); err != nil {
		t.Fatalf("iptables-init: %v\n%s", err, out)
	}
	testutil.Eventually(t, 10*time.Second, "the sidecar verifies the late redirect", func() error {
		if v := verified(); v != "1" {
			return fmt.Errorf("skiff_sidecar_redirect_verified %s", v)
		}
		if !strings.Contains(logs.Output(), `"msg":"redirection verified"`) {
			return fmt.Errorf("no \"redirection verified\" line yet")
		}
		return nil
	})
	if out, err := curl("http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
		t.Errorf("readyz after the redirect: %q %v", out, err)
	}
	if strings.Contains(logs.Output(), `"level":"error"`) {
		t.Errorf("the sidecar logged errors:\n%s", logs.Output())
	}

	// The redirect goes away (the table deleted under the running pod):
	// the sidecar notices, says so once, and stays ready; the rules come
	// back and so does the metric.
	iptablesInit := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(tools[1], append([]string{"--net=" + nsPath, bin, "iptables-init"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables-init %v: %v\n%s", args, err, out)
		}
	}
	const lost, restored = `"msg":"redirection lost`, `"msg":"redirection restored`
	waitVerified := func(what, want string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, what, func() error {
			if v := verified(); v != want {
				return fmt.Errorf("skiff_sidecar_redirect_verified %s, want %s", v, want)
			}
			return nil
		})
	}
	iptablesInit("--remove")
	waitVerified("the sidecar notices the redirect is gone", "0")
	if n := strings.Count(logs.Output(), lost); n != 1 {
		t.Errorf("logged %d times %s, want once:\n%s", n, lost, logs.Output())
	}
	if out, err := curl("http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
		t.Errorf("readyz after the redirect was lost: %q %v, want ok", out, err)
	}
	iptablesInit()
	waitVerified("the sidecar sees the redirect back", "1")
	if n := strings.Count(logs.Output(), restored); n != 1 {
		t.Errorf("logged %d times %s, want once:\n%s", n, restored, logs.Output())
	}
}
