package linux_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildRouter builds skiff-router, skiff-controller and skiff-echo once per
// test binary.
func buildRouter(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "skiff-bin-")
		if buildErr != nil {
			return
		}
		buildErr = testutil.GoBuild(binDir, "github.com/skiff-io/skiff/sidecar/cmd/skiff-router", "github.com/skiff-io/skiff/xds/cmd/skiff-controller", "github.com/skiff-io/skiff/test/cmd/skiff-echo")
		os.Chmod(binDir, 0o755)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "skiff-router")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type proc = testutil.Proc

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return testutil.Start(t, exec.Command(name, args...))
}

// Two gateway processes started from site files with the token CLI; curl
// reaches a skiff-echo process in the other site; health, metrics and the
// JSON logs are served as documented.
func TestGatewayProcesses(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	linkPort, listenPort, echoPort := testutil.FreePort(t, "127.0.0.1"), testutil.FreePort(t, "127.0.0.1"), testutil.FreePort(t, "127.0.0.1")
	eastMetrics, eastHealth := testutil.FreePort(t, "127.0.0.1"), testutil.FreePort(t, "127.0.0.1")
	write(t, filepath.Join(dir, "east.yaml"), fmt.Sprintf(`name: east
dataDir: ./east-data
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: echo, host: 127.0.0.1, port: %d}
`, linkPort, listenPort))
	out, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, "east.yaml"), "--out", filepath.Join(dir, "west-token.yaml"), "--expires", "10m").CombinedOutput()
	if err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
    cost: 2
connectors:
  - {address: echo, host: 127.0.0.1, port: %d}
`, echoPort))
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
	east := start(t, bin, "gateway", "--site-file", filepath.Join(dir, "east.yaml"),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", eastMetrics), "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", eastHealth))
	west := start(t, bin, "gateway", "--site-file", filepath.Join(dir, "west.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0")

	get := func(url string) (string, error) {
		out, err := exec.Command(curl, "-sS", "--max-time", "3", url).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	testutil.Eventually(t, 15*time.Second, "echo in west reachable from east", func() error {
		out, err := get(fmt.Sprintf("http://127.0.0.1:%d/", listenPort))
		if err != nil || out != "west" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	if out, err := get(fmt.Sprintf("http://127.0.0.1:%d/readyz", eastHealth)); err != nil || out != "ok" {
		t.Fatalf("readyz: %q %v", out, err)
	}
	metrics, err := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", eastMetrics))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`skiff_links_up{direction="incoming",peer="west"} 1`, `skiff_streams_opened_total{address="echo",role="origin"}`, `skiff_sites_reachable 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("east metrics lack %q", want)
		}
	}
	// Every log line is JSON with a message and the site.
	time.Sleep(100 * time.Millisecond)
	for name, p := range map[string]*proc{"east": east, "west": west} {
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		lines := 0
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("%s log line is not JSON: %q", name, sc.Text())
				continue
			}
			if line["msg"] == nil || line["level"] == nil {
				t.Errorf("%s log line lacks msg or level: %q", name, sc.Text())
			}
			if line["level"] == "error" {
				t.Errorf("%s logged an error on the happy path: %q", name, sc.Text())
			}
			lines++
		}
		if lines == 0 {
			t.Errorf("%s logged nothing", name)
		}
	}
	// The dialing site survives a restart of the site it dialed: the token
	// was redeemed, so it may reconnect.
	east.Stop(t)
	start(t, bin, "gateway", "--site-file", filepath.Join(dir, "east.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	testutil.Eventually(t, 20*time.Second, "west reconnects to the restarted east", func() error {
		out, err := get(fmt.Sprintf("http://127.0.0.1:%d/", listenPort))
		if err != nil || out != "west" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
}

// Bad tokens and site files stop the gateway with a message that says what
// is wrong.
func TestGatewayRefusesBadInput(t *testing.T) {
	bin := buildRouter(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "east.yaml"), "name: east\ndataDir: east-data\nlinkAccess:\n  bind: 127.0.0.1:1\n")
	write(t, filepath.Join(dir, "other.yaml"), "name: other\ndataDir: other-data\nlinkAccess:\n  bind: 127.0.0.1:2\n")
	issue := func(site, out, expires string) string {
		t.Helper()
		p := filepath.Join(dir, out)
		if b, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, site), "--out", p, "--expires", expires).CombinedOutput(); err != nil {
			t.Fatalf("token issue: %v\n%s", err, b)
		}
		b, _ := os.ReadFile(p)
		return string(b)
	}
	good := issue("east.yaml", "good.yaml", "10m")
	issue("east.yaml", "expired.yaml", "1ms")
	time.Sleep(10 * time.Millisecond)
	write(t, filepath.Join(dir, "tampered.yaml"), strings.Replace(good, "endpoint: 127.0.0.1:1", "endpoint: 127.0.0.1:9", 1))
	other := issue("other.yaml", "other-token.yaml", "10m")
	write(t, filepath.Join(dir, "foreign.yaml"), replaceField(good, "cert", other))

	cases := []struct {
		name, siteFile, want string
	}{
		{"tampered token", "links:\n  - token: tampered.yaml\n", "tampered"},
		{"foreign CA", "links:\n  - token: foreign.yaml\n", "foreign CA"},
		{"missing token", "links:\n  - token: nope.yaml\n", "nope.yaml"},
		{"unknown key", "listeners:\n  - {address: echo, host: 127.0.0.1, port: 80, colour: red}\n", "west.yaml:4"},
		{"bad cost", "links:\n  - token: good.yaml\n    cost: 0\n", "cost"},
		{"multicast", "routing:\n  echo: multicast\n", "multicast"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			write(t, filepath.Join(dir, "west.yaml"), "name: west\ndataDir: west-data\n"+tc.siteFile)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "gateway", "--site-file", filepath.Join(dir, "west.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0").CombinedOutput()
			if err == nil {
				t.Fatalf("gateway accepted a bad site file:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("error does not say %q:\n%s", tc.want, out)
			}
			t.Logf("%s", strings.TrimSpace(string(out)))
		})
	}

	// An expired token is no reason to stop: the peer may know this site
	// (it redeemed the token before and lost its link certificate), and
	// says why when it does not. The gateway runs and says so.
	t.Run("expired token", func(t *testing.T) {
		write(t, filepath.Join(dir, "west.yaml"), "name: west\ndataDir: west-data\nlinks:\n  - token: expired.yaml\n")
		p := testutil.Start(t, exec.Command(bin, "gateway", "--site-file", filepath.Join(dir, "west.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0"))
		defer p.Stop(t)
		testutil.Eventually(t, 20*time.Second, "the gateway says the token expired and dials anyway", func() error {
			select {
			case <-p.Done():
				return fmt.Errorf("the gateway exited:\n%s", p.Output())
			default:
			}
			if !strings.Contains(p.Output(), "dialling anyway") || !strings.Contains(p.Output(), "link dial failed") {
				return fmt.Errorf("not yet:\n%s", p.Output())
			}
			return nil
		})
	})
}

// replaceField swaps one top-level block field (ca/cert/key) of a token with
// the same field of another token.
func replaceField(tok, field, from string) string {
	get := func(s string) (int, int) {
		start := strings.Index(s, "\n"+field+": ")
		if start < 0 {
			return -1, -1
		}
		start++
		end := start + 1
		for {
			nl := strings.IndexByte(s[end:], '\n')
			if nl < 0 {
				return start, len(s)
			}
			end += nl + 1
			if end >= len(s) || (s[end] != ' ' && s[end] != '\t') {
				return start, end
			}
		}
	}
	a, b := get(tok)
	c, d := get(from)
	if a < 0 || c < 0 {
		return tok
	}
	return tok[:a] + from[c:d] + tok[b:]
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
