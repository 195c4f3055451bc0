package agent

import (
	"context"
	"fmt"
	"net/http"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/contract"
	"github.com/skiff-io/skiff/test/testutil"
)

// The node agent with an injected pod attached, the services map filled
// from its controller, and its DaemonSet checked on the way out (it is
// not there: the agent cleans up): once its context ends and RunDaemon
// has returned, not one goroutine it started is running, and none is
// left a moment later.
//
// The apiserver and the xDS server the agent talks to run in the test
// process, so the check is not on every goroutine (goleak) but on those
// RunDaemon started: they carry the pprof label it was started with
// (runLabelled), and so do the ones they start.
func TestDaemonLeavesNoGoroutine(t *testing.T) {
	e := newAgentEnv(t)
	e.opts.OwnerDaemonSet = e.ns + "/skiff-node-agent"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		running []string
		err     error
	}
	done := make(chan result, 1)
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1}).WithName("node-agent")
	go func() {
		running, err := runLabelled(ctx, "agent", func(ctx context.Context) error { return RunDaemon(ctx, e.opts, log) })
		done <- result{running, err}
	}()
	// No keep-alive: the test's client leaves no connection behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	testutil.Eventually(t, 60*time.Second, "the agent ready", func() error {
		select {
		case r := <-done:
			t.Fatalf("agent stopped: %v", r.err)
		default:
		}
		resp, err := client.Get(e.readyz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	web := e.createPod(t, "web", map[string]string{contract.StatusAnnotation: "{}"}, "node-a")
	e.waitAttached(t, e.podCgroup(t, web), true)
	e.waitServices(t, "10.96.77.10:80")

	cancel()
	select {
	case r := <-done:
		if r.err != nil {
			t.Errorf("RunDaemon: %v", r.err)
		}
		for _, g := range r.running {
			t.Errorf("RunDaemon returned with a goroutine it started still running:\n%s", g)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunDaemon still running 30 s after its context ended")
	}
	left := owned("agent", restConnection)
	for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		left = owned("agent", restConnection)
	}
	for _, g := range left {
		t.Errorf("a goroutine RunDaemon started is left 5 s after it returned:\n%s", g)
	}
}

// restConnection excuses the connections to the apiserver of client-go's
// process-wide transport cache, which every REST client of the same
// config shares (the test's own): they belong to the cache, not to
// RunDaemon.
func restConnection(funcs []string) bool {
	return slices.Contains(funcs, "golang.org/x/net/http2.(*ClientConn).readLoop")
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
// The second look, a few seconds later, finds any of these that does
// not end.
func notStopped(funcs []string) bool {
	skiff := func(f string) bool { return strings.HasPrefix(f, "github.com/skiff-io/skiff/") }
	return (len(funcs) == 1 && strings.HasSuffix(funcs[0], ".Go.func1")) ||
		!slices.ContainsFunc(funcs, skiff) ||
		slices.Contains(funcs, "github.com/skiff-io/skiff/sidecar/admin.Serve.func1") ||
		slices.Contains(funcs, "net/http.(*conn).serve")
}
