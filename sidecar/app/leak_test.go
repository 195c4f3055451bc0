package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"go.uber.org/goleak"

	"github.com/skiff-io/skiff/test/testutil"
)

// A gateway and a sidecar linked to it, each with its admin endpoints,
// the sidecar with an xDS client (to a controller that is not there),
// the gateway with its site-file and CA watches, a connection through
// the gateway and a /view long poll open: once their contexts end and
// Run has returned, not one goroutine they started is left.
func TestRunLeavesNoGoroutine(t *testing.T) {
	echo := testutil.EchoServer(t) // the test's: before the snapshot
	ignore := goleak.IgnoreCurrent()

	dir := t.TempDir()
	port := func() string { return strconv.Itoa(testutil.FreePort(t, "127.0.0.1")) }
	listen, linkPort := port(), port()
	gwMetrics, gwHealth := "127.0.0.1:"+port(), "127.0.0.1:"+port()
	host, echoPort, _ := net.SplitHostPort(echo)
	siteFile := filepath.Join(dir, "east.yaml")
	yaml := fmt.Sprintf("name: east\ndataDir: east-data\nlinkAccess:\n  bind: 127.0.0.1:%s\nconnectors:\n  - {address: echo, host: %s, port: %s}\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %s}\n",
		linkPort, host, echoPort, listen)
	if err := os.WriteFile(siteFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "creds")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueToken(TokenOptions{SiteFile: siteFile, Out: filepath.Join(creds, "token.yaml"), Expires: time.Hour, Redemptions: 1, Member: true}, time.Now()); err != nil {
		t.Fatal(err)
	}

	gateway := testutil.RunOwned(t, "gateway", func(ctx context.Context) error {
		return RunGateway(ctx, ServeOptions{SiteFile: siteFile, MetricsBindAddress: gwMetrics, HealthBindAddress: gwHealth, DrainTimeout: time.Minute}, testr.New(t))
	})
	scMetrics, scHealth := "127.0.0.1:"+port(), "127.0.0.1:"+port()
	sidecar := testutil.RunOwned(t, "sidecar", func(ctx context.Context) error {
		return RunSidecar(ctx, ServeOptions{CredentialsDir: creds, Controller: "127.0.0.1:" + port(), Name: "east/client-1",
			OutboundBindAddress: "127.0.0.1:" + port(), MetricsBindAddress: scMetrics, HealthBindAddress: scHealth}, testr.New(t))
	})

	// No keep-alive: the test's client leaves no connection behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testutil.Eventually(t, 20*time.Second, "the sidecar linked to its gateway", func() error {
		resp, err := client.Get("http://" + scMetrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "skiff_links_up{") && strings.HasSuffix(l, " 1") {
				return nil
			}
		}
		return fmt.Errorf("no link up in\n%s", b)
	})
	c, err := net.Dial("tcp", "127.0.0.1:"+listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(c).ReadString('\n'); got != "hello\n" || err != nil {
		t.Fatalf("through the gateway: %q, %v", got, err)
	}
	c.Close()
	// A controller's long poll of the gateway's view, open when it stops.
	polled := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + gwMetrics + "/view?since=" + viewVersion(t, client, gwMetrics) + "&wait=30s")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		polled <- err
	}()
	time.Sleep(100 * time.Millisecond)

	sidecar()
	gateway()
	select {
	case <-polled:
	case <-time.After(10 * time.Second):
		t.Error("the /view long poll still open 10 s after the gateway stopped")
	}
	goleak.VerifyNone(t, ignore)
}

// A gateway whose health port is taken fails, and stops everything it
// had started (the router, the metrics endpoint, the watches) before
// Run returns.
func TestFailedRunLeavesNoGoroutine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ignore := goleak.IgnoreCurrent()

	dir := t.TempDir()
	siteFile := filepath.Join(dir, "east.yaml")
	yaml := fmt.Sprintf("name: east\ndataDir: east-data\nlinkAccess:\n  bind: 127.0.0.1:%d\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %d}\n",
		testutil.FreePort(t, "127.0.0.1"), testutil.FreePort(t, "127.0.0.1"))
	if err := os.WriteFile(siteFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	running, err := testutil.RunLabelled(t.Context(), "gateway", func(ctx context.Context) error {
		return RunGateway(ctx, ServeOptions{SiteFile: siteFile, MetricsBindAddress: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1")),
			HealthBindAddress: taken.Addr().String()}, testr.New(t))
	})
	if err == nil || !strings.Contains(err.Error(), "listen for health") {
		t.Fatalf("RunGateway() error = %v, want the health port's", err)
	}
	for _, g := range running {
		t.Errorf("RunGateway returned with a goroutine it started still running:\n%s", g)
	}
	goleak.VerifyNone(t, ignore)
}

// viewVersion returns the version of the gateway's view at metrics.
func viewVersion(t *testing.T, client *http.Client, metrics string) string {
	t.Helper()
	resp, err := client.Get("http://" + metrics + "/view")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Version
}
