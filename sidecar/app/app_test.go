package app

import (
	"context"
	"flag"
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

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/test/testutil"
)

func TestServeOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    ServeOptions
		want string // substring of the error; "" for valid
	}{
		{"valid", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: ":15090", HealthBindAddress: "127.0.0.1:15021"}, ""},
		{"disabled endpoints", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0"}, ""},
		{"no site file", ServeOptions{MetricsBindAddress: "0", HealthBindAddress: "0"}, "--site-file is required"},
		{"negative max procs", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", MaxProcs: -1}, "--max-procs must be >= 0"},
		{"bad metrics address", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "15090", HealthBindAddress: "0"}, "--metrics-bind-address"},
		{"redirect wait", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", RedirectWait: 2 * time.Second}, ""},
		{"no redirect wait", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", RedirectWait: 0}, ""},
		{"negative redirect recheck", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", RedirectRecheck: -time.Second}, "--redirect-recheck must be >= 0"},
		{"negative redirect wait", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", RedirectWait: -time.Second}, "--redirect-wait must be >= 0"},
		{"negative drain timeout", ServeOptions{SiteFile: "s.yaml", MetricsBindAddress: "0", HealthBindAddress: "0", DrainTimeout: -time.Second}, "--drain-timeout must be >= 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestTokenOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    TokenOptions
		want string
	}{
		{"valid", TokenOptions{SiteFile: "s", Out: "t", Expires: time.Minute, Redemptions: 1}, ""},
		{"no out", TokenOptions{SiteFile: "s", Expires: time.Minute, Redemptions: 1}, "--out is required"},
		{"zero expiry", TokenOptions{SiteFile: "s", Out: "t", Redemptions: 1}, "--expires must be positive"},
		{"zero redemptions", TokenOptions{SiteFile: "s", Out: "t", Expires: time.Minute}, "--redemptions must be >= 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestIssueTokenNeedsLinkAccess(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "west.yaml")
	os.WriteFile(site, []byte("name: west\ndataDir: west-data\n"), 0o600)
	_, err := IssueToken(TokenOptions{SiteFile: site, Out: filepath.Join(dir, "t.yaml"), Expires: time.Minute, Redemptions: 1}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "no linkAccess") {
		t.Fatalf("IssueToken without linkAccess = %v, want a linkAccess error", err)
	}
}

// The gateway reloads listeners when its site file changes; a file that
// stops parsing is reported and the running listeners keep serving.
func TestGatewayReloadsSiteFile(t *testing.T) {
	backend := testutil.HTTPNameServer(t, "127.0.0.1:0", "backend")
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	p1, p2 := free(), free()
	dir := t.TempDir()
	file := filepath.Join(dir, "east.yaml")
	host, port, _ := net.SplitHostPort(backend)
	base := fmt.Sprintf("name: east\ndataDir: east-data\nconnectors:\n  - {address: web, host: %s, port: %s}\nlisteners:\n  - {address: web, host: 127.0.0.1, port: %d}\n", host, port, p1)
	os.WriteFile(file, []byte(base), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunGateway(ctx, ServeOptions{SiteFile: file, MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunGateway: %v", err)
		}
	}()
	waitAnswer(t, p1, "backend")

	later := time.Now().Add(2 * time.Second) // mtime must move even on coarse clocks
	os.WriteFile(file, []byte(base+fmt.Sprintf("  - {address: web, host: 127.0.0.1, port: %d}\n", p2)), 0o600)
	os.Chtimes(file, later, later)
	waitAnswer(t, p2, "backend")

	broken := later.Add(2 * time.Second)
	os.WriteFile(file, []byte(base+"  - {address: web, host: 127.0.0.1, port: 0}\n"), 0o600)
	os.Chtimes(file, broken, broken)
	time.Sleep(1500 * time.Millisecond) // one reload tick; the bad file must change nothing
	waitAnswer(t, p1, "backend")
	waitAnswer(t, p2, "backend")
}

func waitAnswer(t *testing.T, port int, want string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(b)) == want {
				return
			}
			err = fmt.Errorf("answer %q", b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServeOptionsRedirectWaitFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, DefaultRedirectWait},
		{[]string{"--redirect-wait=2s"}, 2 * time.Second},
		{[]string{"--redirect-wait=0"}, 0},
	} {
		fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
		var o ServeOptions
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("parse %q: %v", tc.args, err)
		}
		if o.RedirectWait != tc.want {
			t.Errorf("%q: RedirectWait = %v, want %v", tc.args, o.RedirectWait, tc.want)
		}
	}
}

// /readyz of a sidecar with a redirect wait and no redirection (this test
// has none) answers 503 until the wait is over; a gateway ignores the wait.
func TestReadyzWaitsForRedirect(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pod.yaml")
	os.WriteFile(file, []byte("name: pod\ndataDir: pod-data\n"), 0o600)
	readyz := func(addr string) int {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name string
		run  func(context.Context, ServeOptions, logr.Logger) error
		wait bool
	}{
		{"sidecar", RunSidecar, true},
		{"gateway", RunGateway, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const wait = time.Second
			health := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				done <- tc.run(ctx, ServeOptions{SiteFile: file, MetricsBindAddress: "0", HealthBindAddress: health,
					OutboundBindAddress: "127.0.0.1:0", RedirectWait: wait}, testr.New(t))
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()
			var first int
			for first = readyz(health); first == 0; first = readyz(health) {
				if time.Since(start) > 5*time.Second {
					t.Fatal("no /readyz")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.wait && first != http.StatusServiceUnavailable && time.Since(start) < wait {
				t.Errorf("/readyz = %d before the redirect wait is over, want 503", first)
			}
			for readyz(health) != http.StatusOK {
				if time.Since(start) > wait+5*time.Second {
					t.Fatal("/readyz never 200")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if d := time.Since(start); tc.wait && d < wait {
				t.Errorf("ready after %v, before the wait of %v", d, wait)
			} else if !tc.wait && d > wait {
				t.Errorf("the gateway was ready only after %v: it waited for redirection", d)
			}
		})
	}
}
