package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
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
	stopController := testutil.RunOwned(t, "controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{SiteFile: siteFile, GatewayAdmin: admin, XDSBindAddress: xdsAddr, XDSPlaintextBindAddress: plainAddr,
			MetricsBindAddress: metrics, HealthBindAddress: health}, testr.New(t).WithName("controller"))
	})
	stopGateway := testutil.RunOwned(t, "gateway", func(ctx context.Context) error {
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
	// What skiff status reads: the clients, without the table and view.
	if body, err := httpGet("http://" + metrics + "/status?only=nodes"); err != nil || !strings.Contains(body, `"gateway~east~east-gw"`) ||
		strings.Contains(body, `"view"`) || strings.Contains(body, `"table"`) {
		t.Errorf("status?only=nodes: %v %s", err, body)
	}

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
	stop := testutil.RunOwned(t, "controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{Kube: true, KubeConfig: apiConfig, Site: "east", Namespace: "east", GatewayService: "skiff-gateway",
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
