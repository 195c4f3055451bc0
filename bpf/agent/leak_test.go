package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
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
// (testutil.RunLabelled), and so do the ones they start.
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
		running, err := testutil.RunLabelled(ctx, "agent", func(ctx context.Context) error { return RunDaemon(ctx, e.opts, log) })
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
	testutil.NoneLeft(t, "agent", 5*time.Second, restConnection)
}

// restConnection excuses the connections to the apiserver of client-go's
// process-wide transport cache, which every REST client of the same
// config shares (the test's own): they belong to the cache, not to
// RunDaemon.
func restConnection(funcs []string) bool {
	return slices.Contains(funcs, "golang.org/x/net/http2.(*ClientConn).readLoop")
}
