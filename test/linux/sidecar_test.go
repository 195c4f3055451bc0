package linux_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/test/testutil"
)

// The sidecar in a "pod" (a network namespace whose outbound TCP is
// redirected by `skiff-router iptables-init`, the skiff-init container of the
// iptables mode, run with only NET_ADMIN and NET_RAW): curl's connections to
// a service VIP reach the sidecar, which reads SO_ORIGINAL_DST and routes
// them to the local site or a remote one through its gateway; a destination
// that is no service passes through the sidecar untouched; one on an
// excluded port or in an excluded CIDR goes direct even though the sidecar
// would take it for a service VIP. The redirect is in place before the
// sidecar starts, so its self-check succeeds at once.
func TestSidecarRedirect(t *testing.T) {
	testutil.RequireRoot(t)
	tools := testutil.RequireTool(t, "ip", "nft", "nsenter", "setpriv", "curl")
	bin := buildRouter(t)

	// The pod: a netns joined to the root netns by a veth pair. The host
	// end also has excludedIP, a destination in the excluded CIDR.
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	ns := "skiff-pod-" + id
	hostIf, podIf := "skh"+id, "skp"+id
	hostIP, podIP, excludedIP := "10.77.0.1", "10.77.0.2", "10.78.0.1"
	run(t, tools[0], "netns", "add", ns)
	t.Cleanup(func() { exec.Command(tools[0], "netns", "del", ns).Run() })
	nsPath := "/run/netns/" + ns
	run(t, tools[0], "link", "add", hostIf, "type", "veth", "peer", "name", podIf, "netns", ns)
	t.Cleanup(func() { exec.Command(tools[0], "link", "del", hostIf).Run() })
	run(t, tools[0], "addr", "add", hostIP+"/30", "dev", hostIf)
	run(t, tools[0], "addr", "add", excludedIP+"/32", "dev", hostIf)
	run(t, tools[0], "link", "set", hostIf, "up")
	inPod := func(args ...string) []string { return append([]string{tools[2], "--net=" + nsPath}, args...) }
	run(t, inPod(tools[0], "addr", "add", podIP+"/30", "dev", podIf)...)
	run(t, inPod(tools[0], "link", "set", podIf, "up")...)
	run(t, inPod(tools[0], "link", "set", "lo", "up")...)
	run(t, inPod(tools[0], "route", "add", "default", "via", hostIP)...)

	// Servers that the sidecar would route as service VIPs (its site file
	// below lists them), but that the redirect excludes.
	excludedPort := testutil.FreePort(t, hostIP)
	testutil.HTTPNameServer(t, fmt.Sprintf("%s:%d", hostIP, excludedPort), "excluded-port")
	testutil.HTTPNameServer(t, excludedIP+":80", "excluded-cidr")

	// The redirect, installed as the skiff-init container does: root with
	// only NET_ADMIN and NET_RAW. Installing twice gives the same ruleset,
	// the very one --dry-run prints.
	initArgs := []string{"iptables-init", "--outbound-port=15001", "--proxy-uid=1337",
		fmt.Sprintf("--exclude-outbound-ports=%d", excludedPort),
		"--exclude-outbound-cidrs=10.78.0.0/24,172.16.0.0/12,fd00::/8,2001:db8::/33"}
	initCmd := func(caps string) *exec.Cmd {
		args := inPod(append([]string{tools[3], "--bounding-set=" + caps, bin}, initArgs...)...)
		return exec.Command(args[0], args[1:]...)
	}
	nftList := func() string {
		out, err := exec.Command(tools[2], "--net="+nsPath, tools[1], "list", "table", "inet", "skiff").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table inet skiff: %v\n%s", err, out)
		}
		return string(out)
	}
	if out, err := initCmd("-all").CombinedOutput(); err == nil || !strings.Contains(string(out), "needs CAP_NET_ADMIN in the pod's network namespace") {
		t.Fatalf("iptables-init without NET_ADMIN: %v\n%s", err, out)
	}
	if out, err := initCmd("-all,+net_admin,+net_raw").CombinedOutput(); err != nil || !strings.Contains(string(out), `"msg":"rules installed"`) {
		t.Fatalf("iptables-init: %v\n%s", err, out)
	}
	ruleset := nftList()
	dryRun, err := exec.Command(bin, append(initArgs, "--dry-run")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ruleset, string(dryRun)); diff != "" {
		t.Errorf("nft list differs from iptables-init --dry-run (-got +want):\n%s", diff)
	}
	if !strings.Contains(ruleset, "redirect to :15001") {
		t.Errorf("nft list table inet skiff has no redirect:\n%s", ruleset)
	}
	if out, err := initCmd("-all,+net_admin,+net_raw").CombinedOutput(); err != nil {
		t.Fatalf("iptables-init again: %v\n%s", err, out)
	}
	if diff := cmp.Diff(nftList(), ruleset); diff != "" {
		t.Errorf("the second iptables-init changed the ruleset (-got +want):\n%s", diff)
	}

	// Sites east (the pod's) and west, in-process in the root netns.
	eastEcho, westEcho := testutil.HTTPNameServer(t, "127.0.0.1:0", "east"), testutil.HTTPNameServer(t, "127.0.0.1:0", "west")
	n := newNetwork(t,
		&siteSpec{name: "east", host: hostIP, accept: true, connectors: []string{"backend=" + eastEcho}},
		&siteSpec{name: "west", host: "127.0.0.2", links: []linkTo{{site: "east", cost: 1}}, connectors: []string{"remote=" + westEcho}},
	)
	n.waitEndpoints("east", "remote", "west")
	// Something that is not a network service, on the host side of the veth.
	plainLn, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	plain := plainLn.Addr().String()
	plainLn.Close()
	testutil.HTTPNameServer(t, plain, "plain")

	// The sidecar's site file and token, readable by UID 1337.
	dir := filepath.Join(n.dir, "pod")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token.yaml")
	if _, err := app.IssueToken(app.TokenOptions{SiteFile: n.siteFile("east"), Out: tok, Expires: time.Minute, Redemptions: 1, Member: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	siteFile := filepath.Join(dir, "sidecar.yaml")
	os.WriteFile(siteFile, []byte(`name: east
dataDir: data
links:
  - token: token.yaml
listeners:
  - {address: backend, host: 10.96.0.10, port: 80}
  - {address: remote, host: 10.96.0.11, port: 8080}
  - {address: backend, host: `+hostIP+`, port: `+strconv.Itoa(excludedPort)+`}
  - {address: backend, host: `+excludedIP+`, port: 80}
`), 0o600)
	run(t, "chown", "-R", "1337:1337", dir)
	os.Chmod(n.dir, 0o755)
	os.Chmod(filepath.Dir(n.dir), 0o755)

	logs := start(t, tools[2], "--net="+nsPath, "setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
		bin, "sidecar", "--site-file", siteFile, "--metrics-bind-address", "127.0.0.1:15090", "--health-probe-bind-address", "127.0.0.1:15021")
	curl := func(url string) (string, error) {
		out, err := exec.Command(tools[2], "--net="+nsPath, tools[4], "-sS", "--max-time", "5", url).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	testutil.Eventually(t, 15*time.Second, "sidecar ready with its gateway's view", func() error {
		if out, err := curl("http://127.0.0.1:15021/readyz"); err != nil || out != "ok" {
			return fmt.Errorf("readyz: %q %v", out, err)
		}
		out, err := curl("http://10.96.0.11:8080/")
		if err != nil || out != "west" {
			return fmt.Errorf("remote: %q %v", out, err)
		}
		return nil
	})
	for range 10 {
		if out, err := curl("http://10.96.0.10/"); err != nil || out != "east" {
			t.Fatalf("backend VIP through the sidecar: %q %v", out, err)
		}
		if out, err := curl("http://10.96.0.11:8080/"); err != nil || out != "west" {
			t.Fatalf("remote VIP through the sidecar: %q %v", out, err)
		}
	}
	if out, err := curl("http://" + plain + "/"); err != nil || out != "plain" {
		t.Fatalf("passthrough destination: %q %v", out, err)
	}
	// Excluded: straight to the server, not to the sidecar's backend.
	if out, err := curl(fmt.Sprintf("http://%s:%d/", hostIP, excludedPort)); err != nil || out != "excluded-port" {
		t.Fatalf("excluded port: %q %v", out, err)
	}
	if out, err := curl("http://" + excludedIP + "/"); err != nil || out != "excluded-cidr" {
		t.Fatalf("excluded CIDR: %q %v", out, err)
	}
	metrics, err := curl("http://127.0.0.1:15090/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`skiff_streams_opened_total{address="backend",role="sidecar"} 10`,
		`skiff_sidecar_passthrough_total 1`,
		`skiff_routing_decisions_total{address="remote",pattern="balanced",site="west"}`,
		"\nskiff_sidecar_redirect_verified 1\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("sidecar metrics lack %q", want)
		}
	}
	for _, want := range []string{`"msg":"link up"`, `"msg":"redirection verified"`} {
		if !strings.Contains(logs.Output(), want) {
			t.Errorf("sidecar logged no JSON %s line", want)
		}
	}

	// --remove deletes the table, and does nothing the second time.
	for range 2 {
		args := inPod(bin, "iptables-init", "--remove")
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("iptables-init --remove: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(tools[2], "--net="+nsPath, tools[1], "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), "skiff") {
		t.Errorf("after --remove, nft list tables: %v\n%s", err, out)
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
