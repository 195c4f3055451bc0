package app

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/test/testutil"
)

func TestServeOptionsDrainTimeoutFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, router.DefaultDrainTimeout},
		{[]string{"--drain-timeout=55s"}, 55 * time.Second},
		{[]string{"--drain-timeout=0"}, 0},
	} {
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		var o ServeOptions
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("parse %q: %v", tc.args, err)
		}
		if o.DrainTimeout != tc.want {
			t.Errorf("%q: DrainTimeout = %v, want %v", tc.args, o.DrainTimeout, tc.want)
		}
	}
}

// When its context ends (SIGTERM) a gateway with a drain timeout drains:
// /readyz answers "not ready: draining" and skiff_draining is 1 (the
// admin endpoints serve on through the drain), its listener refuses new
// connections, the connection open goes on both ways, and once it is
// closed RunGateway returns, within a bound far below the drain timeout.
func TestGatewayDrainsWhenItsContextEnds(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	listen := testutil.FreePort(t, "127.0.0.1")
	health := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
	file := filepath.Join(t.TempDir(), "east.yaml")
	host, port, _ := net.SplitHostPort(echo.Addr().String())
	os.WriteFile(file, []byte(fmt.Sprintf("name: east\ndataDir: east-data\nconnectors:\n  - {address: echo, host: %s, port: %s}\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %d}\n", host, port, listen)), 0o600)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunGateway(ctx, ServeOptions{SiteFile: file, MetricsBindAddress: metrics, HealthBindAddress: health, DrainTimeout: time.Minute}, testr.New(t))
	}()
	get := func(url string) (int, string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	var c net.Conn
	testutil.Eventually(t, 10*time.Second, "a connection through the gateway", func() error {
		if c, err = net.Dial("tcp", addr); err != nil {
			return err
		}
		return nil
	})
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip := func(msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := br.ReadString('\n'); err != nil || got != msg+"\n" {
			t.Fatalf("read back %q, %v; want %q", got, err, msg)
		}
	}
	roundTrip("before")

	cancel()
	testutil.Eventually(t, 10*time.Second, "/readyz says draining", func() error {
		code, body, err := get("http://" + health + "/readyz")
		if err != nil || code != http.StatusServiceUnavailable || body != "not ready: draining" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if _, body, err := get("http://" + metrics + "/metrics"); err != nil || !strings.Contains(body, "\nskiff_draining 1\n") {
		t.Errorf("metrics while draining lack skiff_draining 1 (%v)", err)
	}
	testutil.Eventually(t, 10*time.Second, "the listener refuses new connections", func() error {
		n, err := net.Dial("tcp", addr)
		if err == nil {
			n.Close()
			return errors.New("accepted")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		return nil
	})
	roundTrip("during the drain")
	select {
	case err := <-done:
		t.Fatalf("RunGateway returned with a connection open: %v", err)
	default:
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunGateway: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("RunGateway still running 20 s after the last connection closed (drain timeout: a minute)")
	}
}
