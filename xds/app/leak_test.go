package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"go.uber.org/goleak"

	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/app"
)

// A Linux site's controller serving a gateway (an ADS stream open over
// TLS, the gateway's /view long-polled), with its site-file watch and its
// admin endpoints: once its context ends and Run has returned, and the
// gateway has stopped too, not one goroutine either started is left.
func TestRunLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	siteFile := filepath.Join(dir, "east.yaml")
	write(t, siteFile, fmt.Sprintf("name: east\ndataDir: %s/east-data\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %d}\n", dir, port()))
	xdsAddr, plainAddr, admin, metrics, health := addr(port()), addr(port()), addr(port()), addr(port()), addr(port())
	stopController := runOwned(t, "controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{SiteFile: siteFile, GatewayAdmin: admin, XDSBindAddress: xdsAddr, XDSPlaintextBindAddress: plainAddr,
			MetricsBindAddress: metrics, HealthBindAddress: health}, testr.New(t).WithName("controller"))
	})
	stopGateway := runOwned(t, "gateway", func(ctx context.Context) error {
		return routerapp.RunGateway(ctx, routerapp.ServeOptions{SiteFile: siteFile, Controller: xdsAddr, Name: "east-gw",
			MetricsBindAddress: admin, HealthBindAddress: "0"}, testr.New(t).WithName("gateway"))
	})
	testutil.Eventually(t, 20*time.Second, "the controller serves the gateway and has its view", func() error {
		body, err := httpGet("http://" + metrics + "/status")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"gateway~east~east-gw"`) || !strings.Contains(body, `"view"`) {
			return fmt.Errorf("status: %s", body)
		}
		return nil
	})

	stopController()
	stopGateway()
	goleak.VerifyNone(t, ignore)
}

// A Kubernetes site's controller (its manager, status writer and CA
// watch) against a real apiserver: once its context ends and Run has
// returned, not one goroutine it started is left but the REST client's
// connections to the apiserver.
func TestKubernetesRunLeavesNoGoroutine(t *testing.T) {
	c := startAPIServer(t)
	createSite(t, c, "east")
	ignore := goleak.IgnoreCurrent()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	health := addr(port())
	stop := runOwned(t, "controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{Kube: true, Site: "east", Namespace: "east", GatewayService: "skiff-gateway",
			XDSBindAddress: addr(port()), MetricsBindAddress: "0", HealthBindAddress: health}, testr.New(t).WithName("controller"))
	})
	// Ready: the site's services read, the site CA made (the Secret
	// skiff-site-ca) and xDS serving with it.
	testutil.Eventually(t, 30*time.Second, "the controller ready", func() error {
		body, err := httpGet("http://" + health + "/readyz")
		if err != nil || body != "ok" {
			return fmt.Errorf("readyz: %q, %v", body, err)
		}
		return nil
	})
	stop()
	goleak.VerifyNone(t, ignore, restConnection)
}

// restConnection ignores the connection to the apiserver of client-go's
// process-wide transport cache, which every REST client of the same
// config shares (the test's own): it belongs to the cache, not to Run.
var restConnection = goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop")

// runOwned runs f in the background until the returned stop, which ends
// f's context, waits for f to return and fails the test with the
// goroutines f had started still running at that moment (runLabelled):
// f did not wait for them. goleak then finds what is left for good; this
// finds what was only not waited for.
func runOwned(t *testing.T, name string, f func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		running []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		running, err := runLabelled(ctx, name, f)
		done <- result{running, err}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case r := <-done:
				if r.err != nil {
					t.Errorf("%s: %v", name, r.err)
				}
				for _, g := range r.running {
					t.Errorf("%s returned with a goroutine it started still running:\n%s", name, g)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s still running 30 s after its context ended", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// runLabelled runs f with the pprof label owner=name, which every
// goroutine f starts inherits, and every one those start. It returns the
// goroutines of the label still running when f returned, and f's error.
func runLabelled(ctx context.Context, name string, f func(context.Context) error) (running []string, err error) {
	pprof.Do(ctx, pprof.Labels("owner", name), func(ctx context.Context) {
		err = f(ctx)
		running = owned(name, notStopped)
	})
	return running, err
}

// owned returns the goroutines labelled owner=name, as pprof prints them
// (identical ones once, with their number), but its caller and those
// excused.
func owned(name string, excused func(funcs []string) bool) []string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	var out []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if !strings.Contains(g, fmt.Sprintf("# labels: {%q:%q}", "owner", name)) || strings.Contains(g, ".owned+") {
			continue
		}
		var funcs []string // innermost first, package runtime left out
		for _, l := range strings.Split(g, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && strings.HasPrefix(f[1], "0x") && !strings.HasPrefix(f[2], "runtime.") {
				fn, _, _ := strings.Cut(f[2], "+")
				funcs = append(funcs, fn)
			}
		}
		if len(funcs) > 0 && !excused(funcs) { // none: exiting
			out = append(out, g)
		}
	}
	return out
}

// notStopped excuses goroutines that may be seen running when a
// component's Run returns, by their functions (innermost first):
//   - one that is exiting: only the closure of a Go method is left (an
//     errgroup's, a WaitGroup's, the router's tasks'), its function has
//     returned and the Done that Wait returned on is done;
//   - a library's, none of whose functions is skiff's: grpc's,
//     controller-runtime's and client-go's shutdown, the process's signal
//     loop. Their libraries do not join them all;
//   - admin.Serve's shutdown goroutine and the connections of its server:
//     Serve returns once the server stops accepting, without waiting for
//     Shutdown to finish (sidecar/admin, reported to its owners).
//
// goleak, which waits a little, finds any of these that does not end.
func notStopped(funcs []string) bool {
	skiff := func(f string) bool { return strings.HasPrefix(f, "github.com/skiff-io/skiff/") }
	return (len(funcs) == 1 && strings.HasSuffix(funcs[0], ".Go.func1")) ||
		!slices.ContainsFunc(funcs, skiff) ||
		slices.Contains(funcs, "github.com/skiff-io/skiff/sidecar/admin.Serve.func1") ||
		slices.Contains(funcs, "net/http.(*conn).serve")
}
