package app

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/webhook/server"
)

// An injector managing its own certificate (the Secret, the caBundle, the
// informer that watches the Secret) that the apiserver has called: once
// its context ends and Run has returned, not one goroutine it started is
// running, and none is left a moment later.
//
// The package's tests share one apiserver and one injector, which run on
// beside this one, so the check is not on every goroutine of the process
// (goleak) but on those Run started: they carry the pprof label Run was
// started with (testutil.RunOwned), and so do the ones they start.
func TestRunLeavesNoGoroutine(t *testing.T) {
	e := startEnv(t)
	const ns = "leak"
	createNamespace(t, e, ns, true)
	o := testOptions(t, ns, e.cfg)
	o.WebhookConfigName = "skiff-injector-" + ns
	o.ExtraSANs = []string{"127.0.0.1"}
	o.MetricsBindAddress = "127.0.0.1:" + fmt.Sprint(testutil.FreePort(t, "127.0.0.1"))
	cfg := urlWebhookConfig(o.WebhookConfigName, ns, "https://"+o.WebhookBindAddress+server.Path, nil, admissionregistrationv1.Fail)
	if err := e.c.Create(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), cfg) })

	stop := testutil.RunOwned(t, "injector", func(ctx context.Context) error {
		return Run(log.IntoContext(ctx, ctrl.Log.WithName(ns)), o)
	})
	// No keep-alive: the test's client leaves no connection behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	testutil.Eventually(t, 60*time.Second, "the injector ready", func() error {
		resp, err := client.Get("http://" + o.HealthProbeBindAddress + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, "the apiserver calls the injector", func() error {
		return createInjected(t.Context(), e, ns)
	})

	stop()
	testutil.NoneLeft(t, "injector", 5*time.Second, restConnection)
}

// restConnection excuses the connections to the apiserver of client-go's
// process-wide transport cache, which every REST client of the same
// config shares (the other injector's): they belong to the cache, not to
// Run.
func restConnection(funcs []string) bool {
	return slices.Contains(funcs, "golang.org/x/net/http2.(*ClientConn).readLoop")
}
