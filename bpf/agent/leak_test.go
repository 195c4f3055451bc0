package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
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
// (testutil.RunOwned), and so do the ones they start.
func TestDaemonLeavesNoGoroutine(t *testing.T) {
	e := newAgentEnv(t)
	e.opts.OwnerDaemonSet = e.ns + "/skiff-node-agent"
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1}).WithName("node-agent")
	stop := testutil.RunOwned(t, "agent", func(ctx context.Context) error { return RunDaemon(ctx, e.opts, log) })
	// No keep-alive: the test's client leaves no connection behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	testutil.Eventually(t, 60*time.Second, "the agent ready", func() error {
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

	stop()
	testutil.NoneLeft(t, "agent", 5*time.Second, restConnection)
}

// restConnection excuses the connections to the apiserver of client-go's
// process-wide transport cache, which every REST client of the same
// config shares (the test's own): they belong to the cache, not to
// RunDaemon.
func restConnection(funcs []string) bool {
	return slices.Contains(funcs, "golang.org/x/net/http2.(*ClientConn).readLoop")
}
