package linux_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// A gateway out of file descriptors keeps its listeners (issue 12: one
// EMFILE from accept4 stopped the link port and the listeners for good).
// east runs with RLIMIT_NOFILE 64; idle connections from several
// addresses to its link port exhaust it, and a client of its listener
// arrives meanwhile, so both accept loops see EMFILE. Once the flood
// ends, a new site's link comes up and the listener serves again.
func TestGatewayOutOfFileDescriptors(t *testing.T) {
	const nofile = 64
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	linkPort, listenPort, echoPort, eastMetrics := port(), port(), port(), port()
	write(t, filepath.Join(dir, "east.yaml"), fmt.Sprintf(`name: east
dataDir: ./east-data
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: echo, host: 127.0.0.1, port: %d}
`, linkPort, listenPort))
	for _, site := range []string{"west", "north"} {
		out, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, "east.yaml"), "--out", filepath.Join(dir, site+"-token.yaml"), "--expires", "10m").CombinedOutput()
		if err != nil {
			t.Fatalf("token issue: %v\n%s", err, out)
		}
	}
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
connectors:
  - {address: echo, host: 127.0.0.1, port: %d}
`, echoPort))
	write(t, filepath.Join(dir, "north.yaml"), "name: north\ndataDir: ./north-data\nlinks:\n  - token: north-token.yaml\n")

	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
	// The shell's ulimit sets the soft and the hard limit, so Go's
	// runtime cannot raise it again at start.
	east := testutil.Start(t, exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, nofile), "sh",
		bin, "gateway", "--site-file", filepath.Join(dir, "east.yaml"),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", eastMetrics), "--health-probe-bind-address", "0"))
	start(t, bin, "gateway", "--site-file", filepath.Join(dir, "west.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0")

	echoURL := fmt.Sprintf("http://127.0.0.1:%d/", listenPort)
	testutil.Eventually(t, 20*time.Second, "echo in west reachable through east's listener", func() error {
		out, err := getOne(echoURL)
		if err != nil || out != "west" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", east.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limits), fmt.Sprintf("Max open files            %d                   %d", nofile, nofile)) {
		t.Fatalf("east does not run with RLIMIT_NOFILE %d:\n%s", nofile, limits)
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", east.Cmd.Process.Pid)); err == nil {
		t.Logf("east holds %d file descriptors of %d before the flood", len(fds), nofile)
	}

	// The flood: idle TCP connections to the link port, at most 15 per
	// source address (127.0.0.2 and up) so that all are let in to their
	// handshake, three times as many as east has descriptors.
	var flood []net.Conn
	closeFlood := func() {
		for _, c := range flood {
			c.Close()
		}
		flood = nil
	}
	defer closeFlood()
	linkAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: linkPort}
	for i := range 3 * nofile {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/15))}}
		c, err := d.Dial("tcp", linkAddr.String())
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		flood = append(flood, c)
	}
	testutil.Eventually(t, 10*time.Second, "east's link port to hit EMFILE", func() error {
		return acceptEMFILE(east.Output(), linkPort)
	})
	// A client of the listener while no descriptor is free: its accept
	// fails too.
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", listenPort), 2*time.Second)
		if err != nil {
			t.Fatalf("listener client during the flood: %v", err)
		}
		clients = append(clients, c)
	}
	testutil.Eventually(t, 10*time.Second, "east's listener to hit EMFILE", func() error {
		return acceptEMFILE(east.Output(), listenPort)
	})

	closeFlood()
	for _, c := range clients {
		c.Close()
	}
	clients = nil

	// A new link: north dials east for the first time.
	start(t, bin, "gateway", "--site-file", filepath.Join(dir, "north.yaml"), "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", eastMetrics)
	testutil.Eventually(t, 30*time.Second, "north's link to east up after the flood", func() error {
		m, err := httpGet(metricsURL)
		if err != nil {
			return err
		}
		if want := `skiff_links_up{direction="incoming",peer="north"} 1`; !strings.Contains(m, want) {
			return fmt.Errorf("east's metrics lack %s", want)
		}
		return nil
	})
	// And the listener serves again.
	testutil.Eventually(t, 20*time.Second, "east's listener serves after the flood", func() error {
		out, err := getOne(echoURL)
		if err != nil || out != "west" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	for _, want := range []string{`"listener":"links"`, `"address":"echo"`} {
		if err := logLine(east.Output(), "accepting again", want); err != nil {
			t.Error(err)
		}
	}
	select {
	case <-east.Done():
		t.Fatal("east exited")
	default:
	}
}

// acceptEMFILE returns nil if the log out says that an accept on port
// failed with EMFILE.
func acceptEMFILE(out string, port int) error {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, fmt.Sprintf("accept tcp 127.0.0.1:%d: accept4: too many open files", port)) {
			return nil
		}
	}
	return fmt.Errorf("no EMFILE from accept on port %d in the log", port)
}

// logLine returns nil if a line of out has msg and every one of want.
func logLine(out, msg string, want ...string) error {
lines:
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue lines
			}
		}
		return nil
	}
	return fmt.Errorf("no %q line with %q in the log", msg, want)
}

func httpGet(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
