package linux_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// drainBound bounds every wait of the drain tests. The gateways drain for
// up to a minute (--drain-timeout=1m), so one that exits within the bound
// exits because its streams were done, not because the drain timed out;
// the log line that ends its drain says which.
const drainBound = 30 * time.Second

// A real `skiff-router gateway` process gets SIGTERM while curl's request
// through it is in flight (a POST whose body curl streams from a pipe the
// test holds open): it turns unready, refuses new connections (east: its
// listener; west, the only site with the service: east can no longer open
// streams to it), the request completes with every byte echoed back, and
// the process exits 0 once it is done, with nothing reset. East is the
// gateway the client connects to and accepts the link; west dials east
// and delivers to skiff-echo.
func TestGatewayDrainOnSIGTERM(t *testing.T) {
	curl := testutil.RequireTool(t, "curl")[0]
	bin := buildRouter(t)
	echo := filepath.Join(filepath.Dir(bin), "skiff-echo")
	for _, which := range []string{"east", "west"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			port := func() int { return testutil.FreePort(t, "127.0.0.1") }
			linkPort, listenPort, echoPort := port(), port(), port()
			metrics := map[string]int{"east": port(), "west": port()}
			health := map[string]int{"east": port(), "west": port()}
			write(t, filepath.Join(dir, "east.yaml"), fmt.Sprintf(`name: east
dataDir: ./east-data
linkAccess:
  bind: 127.0.0.1:%d
listeners:
  - {address: echo, host: 127.0.0.1, port: %d}
`, linkPort, listenPort))
			if out, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, "east.yaml"), "--out", filepath.Join(dir, "west-token.yaml")).CombinedOutput(); err != nil {
				t.Fatalf("token issue: %v\n%s", err, out)
			}
			write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
connectors:
  - {address: echo, host: 127.0.0.1, port: %d}
`, echoPort))
			start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
			gateways := map[string]*proc{}
			for _, site := range []string{"east", "west"} {
				gateways[site] = start(t, bin, "gateway", "--site-file", filepath.Join(dir, site+".yaml"), "--drain-timeout=1m",
					fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics[site]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", health[site]))
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/", listenPort)
			get := func(url string, maxTime int) (string, int) {
				out, err := exec.Command(curl, "-sS", "--max-time", fmt.Sprint(maxTime), url).CombinedOutput()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return strings.TrimSpace(string(out)), ee.ExitCode()
				}
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(out)), 0
			}
			testutil.Eventually(t, drainBound, "echo in west reachable through east", func() error {
				if out, code := get(url, 3); code != 0 || out != "west" {
					return fmt.Errorf("curl exit %d: %q", code, out)
				}
				return nil
			})

			// The request in flight: curl has connected and sent its
			// headers; its body waits in the pipe.
			req := exec.Command(curl, "-sS", "--max-time", fmt.Sprint(int(drainBound.Seconds())), "-H", "Expect:", "-X", "POST", "-T", "-", url)
			stdin, err := req.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var reply, reqErr bytes.Buffer
			req.Stdout, req.Stderr = &reply, &reqErr
			if err := req.Start(); err != nil {
				t.Fatal(err)
			}
			reqDone := make(chan error, 1)
			go func() { reqDone <- req.Wait() }()
			t.Cleanup(func() {
				req.Process.Kill()
				<-reqDone
			})
			role := map[string]string{"east": "origin", "west": "delivery"}[which]
			active := fmt.Sprintf(`skiff_streams_active{address="echo",role=%q} 1`, role)
			testutil.Eventually(t, drainBound, "the request open at "+which, func() error {
				m, _ := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics[which]), 3)
				if !strings.Contains(m, active) {
					return fmt.Errorf("no %s", active)
				}
				return nil
			})

			g := gateways[which]
			if err := g.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, drainBound, which+" logs the drain's start", func() error {
				line := jsonLogLine(g.Output(), "drain started")
				if line == nil {
					return errors.New("not yet")
				}
				if line["openStreams"] != 1.0 {
					return fmt.Errorf("drain started with openStreams %v, want 1", line["openStreams"])
				}
				return nil
			})
			if out, code := get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health[which]), 3); code != 0 || out != "not ready: draining" {
				t.Errorf("%s's /readyz while draining: curl exit %d, %q", which, code, out)
			}
			if which == "east" {
				// curl's exit code 7: failed to connect.
				if out, code := get(url, 3); code != 7 {
					t.Errorf("a new request to east's listener: curl exit %d (%q), want 7 (connection refused)", code, out)
				}
			} else {
				// East waits a moment for a link to west that is not
				// draining, then gives up: the connection closes unanswered.
				if out, code := get(url, 10); code == 0 {
					t.Errorf("a new request to west while it drains answered %q", out)
				}
			}

			// Now the body: every byte goes out through the draining
			// gateway and comes back. (skiff-echo answers a POST with its
			// body as it reads it, but Go's HTTP/1 server stops reading a
			// body once the answer has begun, after 512 bytes: a longer
			// body would come back cut short with or without a drain.)
			body := bytes.Repeat([]byte("drain me gently\n"), 31) // 496 bytes
			if _, err := stdin.Write(body); err != nil {
				t.Fatal(err)
			}
			stdin.Close()
			select {
			case err := <-reqDone:
				reqDone <- err
				if err != nil {
					t.Fatalf("the request in flight failed: %v: %s", err, reqErr.String())
				}
			case <-time.After(drainBound):
				t.Fatal("the request in flight did not complete")
			}
			if !bytes.Equal(reply.Bytes(), body) {
				t.Errorf("the request in flight got %d bytes back, want the %d it sent", reply.Len(), len(body))
			}

			select {
			case <-g.Done():
			case <-time.After(drainBound):
				t.Fatalf("%s still running after its last stream ended (drain timeout 1m)", which)
			}
			if code := g.Cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s exited with %d, want 0", which, code)
			}
			end := jsonLogLine(g.Output(), "drain finished")
			if end == nil {
				t.Fatalf("%s logged no end of its drain", which)
			}
			if end["reason"] != "no open streams" || end["reset"] != 0.0 || end["finished"].(float64) < 1 {
				t.Errorf("%s's drain ended with %v, want reason 'no open streams', nothing reset", which, end)
			}
		})
	}
}

// jsonLogLine returns the first JSON log line of out whose msg is msg.
func jsonLogLine(out, msg string) map[string]any {
	for _, l := range strings.Split(out, "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}
