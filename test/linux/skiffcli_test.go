package linux_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/cli/app"
	"github.com/skiff-io/skiff/test/testutil"
)

// The skiff CLI on Linux sites (--site-file, --admin): two gateway
// processes, west linked to east; status, network status and link list
// read each site's gateway view, and the Kubernetes-only commands say
// what to do instead.
func TestSkiffCLIOnLinuxSites(t *testing.T) {
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, eastAdmin, westAdmin, westEcho := port(), port(), port(), port()
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", westEcho), "--name", "west")
	eastFile, westFile := filepath.Join(dir, "east.yaml"), filepath.Join(dir, "west.yaml")
	write(t, eastFile, fmt.Sprintf("name: east\ndataDir: ./east-data\nlinkAccess:\n  bind: 127.0.0.1:%d\n", linkPort))
	tok := filepath.Join(dir, "west-token.yaml")
	if out, err := runCmd(bin, "token", "issue", "--site-file", eastFile, "--out", tok); err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	write(t, westFile, fmt.Sprintf("name: west\ndataDir: ./west-data\nlinks:\n  - {token: west-token.yaml, cost: 2}\nconnectors:\n  - {address: web, host: 127.0.0.1, port: %d, protocol: http}\nrouting:\n  web: closest\n", westEcho))
	for file, admin := range map[string]int{eastFile: eastAdmin, westFile: westAdmin} {
		start(t, bin, "gateway", "--site-file", file, "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", admin), "--health-probe-bind-address", "0")
	}
	skiff := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		if code := app.Main(t.Context(), "skiff", args, &out, &errOut); code != 0 {
			return out.String(), fmt.Errorf("exit %d: %s", code, errOut.String())
		}
		return out.String(), nil
	}
	east := []string{"--site-file", eastFile, "--admin", fmt.Sprintf("127.0.0.1:%d", eastAdmin)}
	west := []string{"--site-file", westFile, "--admin", fmt.Sprintf("127.0.0.1:%d", westAdmin)}
	testutil.Eventually(t, 20*time.Second, "east's network status shows west and web", func() error {
		out, err := skiff(append([]string{"network", "status"}, east...)...)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "east (this site)   0      west (cost 2)") || !strings.Contains(out, "web       http       closest   west (1)") {
			return fmt.Errorf("network status:\n%s", out)
		}
		return nil
	})
	out, err := skiff(append([]string{"link", "list"}, west...)...)
	if err != nil || !strings.Contains(out, "east   2      up") {
		t.Errorf("west's link list: %v\n%s", err, out)
	}
	out, err = skiff(append([]string{"status"}, west...)...)
	if err != nil || !strings.Contains(out, "Site west (a Linux site)") || !strings.Contains(out, "east   2      up      west") || !strings.Contains(out, "web       http       closest   1") ||
		!hasSizes(out, "east   2      up") {
		t.Errorf("west's status: %v\n%s", err, out)
	}
	// --admin of the other site's gateway: refused, not shown as this one.
	if _, err := skiff("status", "--site-file", westFile, "--admin", fmt.Sprintf("127.0.0.1:%d", eastAdmin)); err == nil || !strings.Contains(err.Error(), `is site "east"'s, not "west"'s`) {
		t.Errorf("status of west with east's admin address: %v", err)
	}
	if _, err := skiff(append([]string{"token", "create", filepath.Join(dir, "t.yaml")}, east...)...); err == nil || !strings.Contains(err.Error(), "skiff-router token issue") {
		t.Errorf("token create on a Linux site: %v", err)
	}
}

// hasSizes says whether the line of out that begins with prefix ends with
// two byte counts (the link's sent and received columns).
func hasSizes(out, prefix string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if strings.HasPrefix(line, prefix) && len(f) >= 4 && strings.HasSuffix(f[len(f)-1], "B") && strings.HasSuffix(f[len(f)-3], "B") {
			return true
		}
	}
	return false
}
