// Package testutil holds helpers shared by skiff's test suites: tier gates
// that skip loudly on a developer machine and fail in CI, bounded polling,
// and free loopback ports.
package testutil

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test with a loud reason when a prerequisite is missing,
// and fails it instead in CI.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", msg)
	}
	t.Skipf("SKIPPED (prerequisite missing): %s", msg)
}

// RequireTool requires programs on PATH and returns their paths.
func RequireTool(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		Require(t, err == nil, "%s not on PATH (hack/install-deps.sh installs it)", n)
		paths[i] = p
	}
	return paths
}

// RequireRoot requires uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (network namespaces, iptables)")
}

// Eventually polls cond every 20ms until it returns nil or the bound
// passes, then fails with cond's last error. The bound is a failure guard,
// not a performance assertion.
func Eventually(t testing.TB, bound time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, bound, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Until is Eventually for a condition without an error to report: it
// polls cond (every millisecond, for conditions that settle fast) until it
// holds, failing the test after bound.
func Until(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, bound)
		}
		time.Sleep(time.Millisecond)
	}
}

// Percentile returns the p-th quantile (0 to 1) of d, nearest rank on a
// sorted copy; 0 for no samples.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, max(0, int(float64(len(s)-1)*p+0.5)))]
}

// EchoServer runs a TCP server on 127.0.0.1 that echoes every
// connection until the test ends, and returns its address.
func EchoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// HTTPNameServer runs an HTTP server on addr (host:0 for any port) until
// the test ends: a GET is answered with name and a newline, a POST with
// its own body. It returns the address it listens on.
func HTTPNameServer(t testing.TB, addr, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			io.Copy(w, r.Body)
			return
		}
		fmt.Fprintln(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TCPPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func TCPPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// FreePort returns a TCP port that was free on host a moment ago.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		port := freePortMin + rand.IntN(low-freePortMin)
		if _, taken := givenPorts.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatalf("free port on %s: no free port in %d..%d", host, freePortMin, low-1)
	return 0
}

// Why FreePort picks ports below the kernel's ephemeral range: a port the
// kernel handed out for ":0" and that was closed again can be handed out
// again at once, to an outgoing connection or another ":0" listener of a
// test running in parallel, before the process it was meant for binds it.
// Below the range, only FreePort hands ports out, and never one twice in
// a process.
const freePortMin = 20000

var givenPorts sync.Map // int -> bool

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > freePortMin+1000 {
				return n
			}
		}
	}
	return 32768
}

// RequireEnvtest requires the envtest assets (kube-apiserver and etcd built
// by hack/envtest-assets.sh) and returns their directory. `make test` sets
// KUBEBUILDER_ASSETS; run `export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)`
// for a plain `go test`.
func RequireEnvtest(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	ok := dir != ""
	if ok {
		for _, b := range []string{"kube-apiserver", "etcd"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				ok = false
			}
		}
	}
	Require(t, ok, "envtest assets: KUBEBUILDER_ASSETS=%q lacks kube-apiserver and etcd (run hack/envtest-assets.sh)", dir)
	return dir
}
