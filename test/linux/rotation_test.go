package linux_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/test/testutil"
)

// rotationBound bounds every wait of the CA rotation test.
const rotationBound = 30 * time.Second

// Both sites of a running network rotate their CA, then finish the
// rotation, under a steady load (about 100 requests/s) and without a
// failed request. East runs two gateway processes (siblings); west dials
// east-1 with a token that expires in 5 s and delivers to skiff-echo; the
// load enters at east-2, so it crosses the sibling link and west's link.
//   - east rotates: both east gateways take the new CA, and west takes
//     east's CA bundle (both CAs) and a link certificate from the new CA;
//   - west rotates: east issues west a link certificate for its new key;
//   - both finish: every gateway takes the finished CA, and west takes
//     east's bundle again (the new CA alone), which it keeps in its data
//     dir;
//   - all three gateways stop (SIGTERM) and start again: they link with
//     what they saved, the previous CAs gone, west without redeeming its
//     (long expired) token again.
//
// No gateway logs an error throughout.
func TestLinuxCARotation(t *testing.T) {
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
	tokenFile := filepath.Join(dir, "west-token.yaml")
	if out, err := exec.Command(bin, "token", "issue", "--site-file", filepath.Join(dir, "east-1.yaml"), "--out", tokenFile, "--expires", "5s").CombinedOutput(); err != nil {
		t.Fatalf("token issue: %v\n%s", err, out)
	}
	tok, err := token.Load(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf(`name: west
dataDir: ./west-data
links:
  - token: west-token.yaml
connectors:
  - {address: echo, host: 127.0.0.1, port: %d}
`, echoPort))
	start(t, echo, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", echoPort), "--name", "west")
	gw := func(site, name string) *proc {
		return start(t, bin, "gateway", "--site-file", filepath.Join(dir, site+".yaml"), "--name", name, "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	}
	gateways := map[string]*proc{}
	for _, g := range []struct{ site, name string }{{"east-1", "east-1"}, {"east-2", "east-2"}, {"west", "west-1"}} {
		gateways[g.site] = gw(g.site, g.name)
	}
	reaches := func(listen int) func() error {
		return func() error {
			if out, err := getOne(fmt.Sprintf("http://127.0.0.1:%d/", listen)); err != nil || out != "west" {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		}
	}
	testutil.Eventually(t, rotationBound, "a request through east-1 (west's link) reaches west", reaches(listen1))
	testutil.Eventually(t, rotationBound, "a request through east-2 reaches west through its sibling east-1", reaches(listen2))

	// ca runs `skiff-router ca rotate|finish` on a site file (either of
	// east's: they share the data dir).
	ca := func(step, file string) {
		t.Helper()
		out, err := exec.Command(bin, "ca", step, "--site-file", filepath.Join(dir, file)).CombinedOutput()
		if err != nil {
			t.Fatalf("ca %s --site-file %s: %v\n%s", step, file, err, out)
		}
		t.Logf("ca %s --site-file %s: %s", step, file, bytes.TrimSpace(out))
	}
	logs := func(sites ...string) string {
		var b strings.Builder
		for _, s := range sites {
			b.WriteString(gateways[s].Output())
		}
		return b.String()
	}
	// tookCA checks that each of sites logged the site CA change n times,
	// the last one with rotating.
	tookCA := func(n int, rotating bool, sites ...string) error {
		for _, s := range sites {
			out := gateways[s].Output()
			if got := strings.Count(out, `"msg":"site CA changed"`); got < n {
				return fmt.Errorf("%s took the site CA %d times, want %d", s, got, n)
			}
			if err := logLine(out, "site CA changed", fmt.Sprintf(`"rotating":%t`, rotating)); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	}
	const bundleTaken = "peer's CA bundle taken: the peer is verified with it from now on"

	// The load runs from before the rotation starts until it has finished.
	load := startLoad(t, echo, fmt.Sprintf("http://127.0.0.1:%d/", listen2))
	time.Sleep(time.Second)
	began := time.Now()

	ca("rotate", "east-1.yaml")
	testutil.Eventually(t, rotationBound, "east rotated: both its gateways take the new CA, west takes east's bundle and a new link certificate", func() error {
		if err := tookCA(1, true, "east-1", "east-2"); err != nil {
			return err
		}
		west := logs("west")
		if err := logLine(west, bundleTaken, `"peerSite":"east"`, `"certificates":2`); err != nil {
			return err
		}
		return logLine(west, "link certificate renewed by the peer", `"peerSite":"east"`)
	})
	ca("rotate", "west.yaml")
	testutil.Eventually(t, rotationBound, "west rotated: it takes the new CA, east issues it a link certificate for its new key", func() error {
		if err := tookCA(1, true, "west"); err != nil {
			return err
		}
		return logLine(logs("east-1", "east-2"), "linked site rotated its key: link certificate issued for the new key", `"peerSite":"west"`)
	})
	ca("finish", "east-1.yaml")
	ca("finish", "west.yaml")
	testutil.Eventually(t, rotationBound, "both finished: every gateway takes the finished CA, west takes east's bundle again", func() error {
		if err := tookCA(2, false, "east-1", "east-2", "west"); err != nil {
			return err
		}
		west := logs("west")
		if n := strings.Count(west, `"msg":"`+bundleTaken+`"`); n < 2 {
			return fmt.Errorf("west took east's CA bundle %d times, want 2", n)
		}
		return logLine(west, bundleTaken, `"peerSite":"east"`, `"certificates":1`)
	})
	t.Logf("rotation of both sites, start to finish: %.1fs", time.Since(began).Seconds())

	answers := load.stop(t)
	sent := 0
	for _, n := range answers.counts {
		sent += n
	}
	failed := sent - answers.counts["west"]
	t.Logf("load through east-2 during the rotation: %d of %d requests failed (%v)", failed, sent, answers.counts)
	if failed > 0 {
		t.Errorf("%d of %d requests failed during the CA rotation; skiff-echo get reported:\n%s", failed, sent, strings.Join(answers.failures, "\n"))
	}
	if answers.counts["west"] == 0 {
		t.Errorf("the load got no answer at all")
	}

	// The data dirs: east's previous CA is gone, and west keeps east's
	// bundle, the new CA alone.
	for _, f := range []string{"ca-previous.crt", "ca-previous.key"} {
		if _, err := os.Stat(filepath.Join(dir, "east-data", f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("east-data/%s after the rotation finished: %v", f, err)
		}
	}
	eastCA := pemCerts(t, filepath.Join(dir, "east-data", "ca.crt"))
	bundle := pemCerts(t, filepath.Join(dir, "west-data", "links", tok.ID+".ca"))
	if len(eastCA) != 1 || len(bundle) != 1 || !bytes.Equal(eastCA[0], bundle[0]) {
		t.Errorf("west-data/links/%s.ca holds %d certificates, want exactly east's current CA (east-data/ca.crt, %d certificates)", tok.ID, len(bundle), len(eastCA))
	}

	// Every gateway stops and starts again, long after the token expired:
	// the new CAs and the link certificates they issued are all it takes.
	time.Sleep(time.Until(tok.Expires.Add(time.Second)))
	for _, p := range gateways {
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	stopped := time.After(rotationBound)
	for site, p := range gateways {
		select {
		case <-p.Done():
		case <-stopped:
			t.Fatalf("%s did not stop on SIGTERM", site)
		}
		if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited with %d on SIGTERM, want 0", site, code)
		}
		noErrors(t, site, p.Output())
	}
	gateways["east-1"] = gw("east-1", "east-1")
	gateways["east-2"] = gw("east-2", "east-2")
	gateways["west"] = gw("west", "west-1")
	testutil.Eventually(t, rotationBound, "after a restart, a request through east-1 reaches west", reaches(listen1))
	testutil.Eventually(t, rotationBound, "after a restart, a request through east-2 reaches west", reaches(listen2))
	if strings.Contains(logs("west"), "redeeming the token again") {
		t.Errorf("the restarted west did not use its saved link certificate:\n%s", logs("west"))
	}
	for site, p := range gateways {
		noErrors(t, site+" (restarted)", p.Output())
	}
}

// noErrors fails the test for each error logged in a gateway's JSON log.
func noErrors(t *testing.T, name, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"level":"error"`) {
			t.Errorf("%s logged an error: %s", name, line)
		}
	}
}

// echoLoad is a steady stream of requests that skiff-echo get sends in
// batches (about 100 requests/s, 2 s a batch) until stop.
type echoLoad struct {
	quit chan struct{}
	done chan loadResult
}

type loadResult struct {
	counts   map[string]int // answers by name; "error": failed requests
	failures []string       // skiff-echo get's report of each batch with a failure
}

func startLoad(t *testing.T, echo, url string) *echoLoad {
	t.Helper()
	l := &echoLoad{quit: make(chan struct{}), done: make(chan loadResult, 1)}
	go func() {
		res := loadResult{counts: map[string]int{}}
		defer func() { l.done <- res }()
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			// Each request is bounded by --timeout, so a batch ends within
			// 2 s + 5 s.
			out, err := exec.Command(echo, "get", "--url", url, "--count", "200", "--interval", "10ms", "--timeout", "5s").CombinedOutput()
			if err != nil {
				res.counts["error"]++
				res.failures = append(res.failures, fmt.Sprintf("skiff-echo get: %v: %s", err, out))
				continue
			}
			report := strings.TrimSpace(string(out))
			for _, f := range strings.Fields(report) {
				name, v, ok := strings.Cut(f, "=")
				if !ok || name == "firstError" || name == "lastError" {
					continue
				}
				var n int
				fmt.Sscan(v, &n)
				res.counts[name] += n
			}
			if f := strings.Fields(report); len(f) != 1 || !strings.HasPrefix(f[0], "west=") {
				res.failures = append(res.failures, report)
			}
		}
	}()
	return l
}

// stop ends the load after its current batch and returns the answers.
func (l *echoLoad) stop(t *testing.T) loadResult {
	t.Helper()
	close(l.quit)
	select {
	case res := <-l.done:
		return res
	case <-time.After(rotationBound):
		t.Fatal("the load did not end")
		return loadResult{}
	}
}

// pemCerts returns the DER of each certificate in the PEM file at path.
func pemCerts(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ders [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return ders
		}
		if block.Type == "CERTIFICATE" {
			ders = append(ders, block.Bytes)
		}
	}
}
