package linux_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// A Linux site run as two gateway processes (one site file each, one data
// dir, distinct --name), and a site that dials one of them with a token
// that expires in 3 s:
//   - the two gateways of east link to each other (siblings), and curl
//     through the gateway west did not dial reaches west's echo through
//     the one it did;
//   - after the token expired, west's gateway process is restarted: it
//     links again with the link certificate in its data dir.
func TestLinuxGatewaysHAAndRestartAfterExpiry(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	link1, link2, listen1, listen2, echoPort := port(), port(), port(), port(), port()
	for i, p := range []struct{ link, listen int }{{link1, listen1}, {link2, listen2}} {
		write(t, filepath.Join(dir, fmt.Sprintf("east-%d.yaml", i+1)), fmt.Sprintf(`name: east
dataDir: ./east-data
siblings: ["127.0.0.1:%d", "127.0.0.1:%d"]
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: echo, host: 127.0.0.1, port: %d}
`, link1, link2, p.link, p.listen))
	}
	out, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, "east-1.yaml"), "--out", filepath.Join(dir, "west-token.yaml"), "--expires", "3s").CombinedOutput()
	if err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	issued := time.Now()
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
connectors:
  - {address: echo, host: 127.0.0.1, port: %d}
`, echoPort))
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
	gw := func(file, name string) *proc {
		return start(t, bin, "gateway", "--site-file", filepath.Join(dir, file), "--name", name, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	}
	east1 := gw("east-1.yaml", "east-1")
	east2 := gw("east-2.yaml", "east-2")
	west := gw("west.yaml", "west-1")
	get := func(listen int) func() error {
		return func() error {
			out, err := exec.Command(curl, "-sS", "--max-time", "3", fmt.Sprintf("http://127.0.0.1:%d/", listen)).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "west" {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		}
	}
	testutil.Eventually(t, 20*time.Second, "curl through east-1 (west's link) reaches west", get(listen1))
	testutil.Eventually(t, 20*time.Second, "curl through east-2 reaches west through its sibling east-1", get(listen2))
	for name, p := range map[string]*proc{"east-1": east1, "east-2": east2} {
		if !strings.Contains(p.Output(), `"msg":"link up"`) || !strings.Contains(p.Output(), `"peerSite":"east"`) {
			t.Errorf("%s logged no sibling link:\n%s", name, p.Output())
		}
	}

	// The token expires; west's gateway restarts and links again.
	time.Sleep(time.Until(issued.Add(4 * time.Second)))
	west.Stop(t)
	gw("west.yaml", "west-1")
	testutil.Eventually(t, 20*time.Second, "after the token expired, a restarted west links again (its link certificate)", get(listen2))
}
