package linux_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// Links follow the site file without a restart: a link added to a running
// gateway's file is dialled, and a removed one is closed, while the
// gateway keeps serving (this is how a Kubernetes gateway follows the link
// Secrets the controller writes into its site file).
func TestLinksReloadWithoutRestart(t *testing.T) {
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, listenPort, echoPort := port(), port(), port()
	eastFile, westFile := filepath.Join(dir, "east.yaml"), filepath.Join(dir, "west.yaml")
	write(t, eastFile, fmt.Sprintf("name: east\ndataDir: ./east-data\nlinkAccess:\n  bind: 127.0.0.1:%d\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %d}\n", linkPort, listenPort))
	westBase := fmt.Sprintf("name: west\ndataDir: ./west-data\nconnectors:\n  - {address: echo, host: 127.0.0.1, port: %d}\n", echoPort)
	write(t, westFile, westBase)
	if out, err := runCmd(bin, "token", "issue", "--site-file", eastFile, "--out", filepath.Join(dir, "west-token.yaml")); err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
	start(t, bin, "gateway", "--site-file", eastFile, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	west := start(t, bin, "gateway", "--site-file", westFile, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	url := fmt.Sprintf("http://127.0.0.1:%d/", listenPort)
	if got, err := getOne(url); err == nil {
		t.Fatalf("reached west before any link: %q", got)
	}

	time.Sleep(1100 * time.Millisecond) // a new modification time for the reloader
	write(t, westFile, westBase+"links:\n  - token: west-token.yaml\n")
	testutil.Eventually(t, 20*time.Second, "west dials the added link", func() error {
		got, err := getOne(url)
		if err != nil || got != "west" {
			return fmt.Errorf("%q %v", got, err)
		}
		return nil
	})

	time.Sleep(1100 * time.Millisecond)
	write(t, westFile, westBase)
	testutil.Eventually(t, 20*time.Second, "the removed link is closed", func() error {
		if got, err := getOne(url); err == nil {
			return fmt.Errorf("still reached west: %q", got)
		}
		return nil
	})
	if out := west.Output(); !strings.Contains(out, `"msg":"links reloaded"`) {
		t.Errorf("west did not log the reload:\n%s", out)
	}
}
