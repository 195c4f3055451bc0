// Package testutil holds helpers shared by skiff's test suites: tier gates
// that skip loudly on a developer machine and fail in CI, bounded polling,
// and free loopback ports.
package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// FreePort returns a TCP port that was free on host a moment ago.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("free port on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
