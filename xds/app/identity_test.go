package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/contract"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/app"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// The token flow of Kubernetes sites, with a real apiserver: a
// token-request Secret in east is filled by east's controller; the same
// Secret applied in west becomes a link; each controller writes its
// gateway's site (site file, CA, link tokens, ledger entries) into the
// Secret skiff-site, which the test materializes as the kubelet would; the
// gateways started from those files link up, east's accepting a token its
// controller (not its gateway) issued; and a sidecar reaches east's gateway
// and controller with the credential in skiff-sidecar.
func TestKubernetesTokenFlow(t *testing.T) {
	c := startAPIServer(t)
	ctx := t.Context()
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	type site struct {
		name                       string
		link, xds, admin, ctlAdmin int
		siteDir, dataDir           string
	}
	sites := map[string]*site{}
	for _, name := range []string{"east", "west"} {
		s := &site{name: name, link: port(), xds: port(), admin: port(), ctlAdmin: port(),
			siteDir: filepath.Join(dir, name, "site"), dataDir: filepath.Join(dir, name, "data")}
		sites[name] = s
		createSite(t, c, name)
		runBG(t, name+" controller", func(ctx context.Context) error {
			return app.Run(ctx, app.Options{Kube: true, Site: name, Namespace: name, GatewayService: "skiff-gateway",
				GatewayAdmin: addr(s.admin), LinkAdvertise: addr(s.link), LinkBind: addr(s.link),
				GatewaySiteDir: s.siteDir, GatewayDataDir: s.dataDir,
				XDSBindAddress: addr(s.xds), MetricsBindAddress: addr(s.ctlAdmin), HealthBindAddress: "0"}, testr.New(t).WithName(name+"-controller"))
		})
		// The kubelet's part: keep the site Secret's files in siteDir.
		runBG(t, name+" secret volume", func(ctx context.Context) error {
			materialize(ctx, c, name, kube.SiteSecret, s.siteDir)
			return nil
		})
	}

	// east issues a token on request.
	req := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "link-to-east", Namespace: "east", Labels: map[string]string{contract.TypeLabel: "token-request"}}}
	must(t, c.Create(ctx, req))
	testutil.Eventually(t, 20*time.Second, "east fills the token request", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(req), req); err != nil {
			return err
		}
		if len(req.Data[kube.TokenKey]) == 0 {
			return fmt.Errorf("no token yet")
		}
		return nil
	})
	// The user applies the same Secret in west: it becomes a link.
	copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: "west", Labels: req.Labels, Annotations: map[string]string{contract.CostAnnotation: "3"}}, Data: req.Data}
	must(t, c.Create(ctx, copied))
	testutil.Eventually(t, 20*time.Second, "west relabels it as a link and writes it into its site", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(copied), copied); err != nil {
			return err
		}
		if copied.Labels[contract.TypeLabel] != "link" {
			return fmt.Errorf("label %q", copied.Labels[contract.TypeLabel])
		}
		b, err := os.ReadFile(filepath.Join(sites["west"].siteDir, "site.yaml"))
		if err != nil || !strings.Contains(string(b), "token: link-link-to-east.yaml\n    cost: 3") {
			return fmt.Errorf("west site.yaml: %s %v", b, err)
		}
		return nil
	})

	// What the controller creates is owned by the chart's gateway Service,
	// so that uninstalling collects it.
	for _, name := range []string{kube.CASecret, kube.SiteSecret, kube.SidecarSecret} {
		var sec corev1.Secret
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: name}, &sec))
		if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "Service" || sec.OwnerReferences[0].Name != "skiff-gateway" {
			t.Errorf("secret %s owners %+v, want the gateway Service", name, sec.OwnerReferences)
		}
	}

	// Gateways from the controller-written site files.
	for _, name := range []string{"east", "west"} {
		s := sites[name]
		testutil.Eventually(t, 20*time.Second, name+" site file written", func() error {
			_, err := os.Stat(filepath.Join(s.siteDir, "site.yaml"))
			return err
		})
		runBG(t, name+" gateway", func(ctx context.Context) error {
			return routerapp.RunGateway(ctx, routerapp.ServeOptions{SiteFile: filepath.Join(s.siteDir, "site.yaml"), Controller: addr(s.xds),
				MetricsBindAddress: addr(s.admin), HealthBindAddress: "0", Name: name + "-gw"}, testr.New(t).WithName(name+"-gateway"))
		})
	}
	testutil.Eventually(t, 30*time.Second, "west's link to east is up (east adopted the controller's token)", func() error {
		st := status(t, sites["east"].ctlAdmin)
		if !strings.Contains(st, `"name": "west"`) {
			return fmt.Errorf("east's controller does not see west yet")
		}
		return nil
	})

	// A sidecar of east with the credential the controller keeps.
	creds := filepath.Join(dir, "creds")
	var sc corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: kube.SidecarSecret}, &sc))
	must(t, os.MkdirAll(creds, 0o700))
	must(t, os.WriteFile(filepath.Join(creds, "token.yaml"), sc.Data[kube.TokenKey], 0o600))
	runBG(t, "sidecar", func(ctx context.Context) error {
		return routerapp.RunSidecar(ctx, routerapp.ServeOptions{CredentialsDir: creds, Controller: addr(sites["east"].xds), Name: "east/client-1",
			OutboundBindAddress: addr(port()), MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName("sidecar"))
	})
	testutil.Eventually(t, 20*time.Second, "east's controller serves the sidecar", func() error {
		if st := status(t, sites["east"].ctlAdmin); !strings.Contains(st, `"sidecar~east~east/client-1"`) {
			return fmt.Errorf("no sidecar node in status")
		}
		return nil
	})

	// A bad link Secret is reported on itself and changes nothing.
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bad-link", Namespace: "west", Labels: map[string]string{contract.TypeLabel: "link"}},
		Data: map[string][]byte{kube.TokenKey: bytes.Replace(req.Data[kube.TokenKey], []byte("\nsite: east"), []byte("\nsite: evil"), 1)}}
	must(t, c.Create(ctx, bad))
	testutil.Eventually(t, 20*time.Second, "an InvalidLink event on west/bad-link", func() error {
		return findEvent(ctx, c, "west", "bad-link", "InvalidLink")
	})
	b, _ := os.ReadFile(filepath.Join(sites["west"].siteDir, "site.yaml"))
	if strings.Contains(string(b), "bad-link") {
		t.Errorf("west's site file took the bad link:\n%s", b)
	}
}

// materialize copies a Secret's data into dir whenever it changes.
func materialize(ctx context.Context, c client.Client, ns, name, dir string) {
	_ = os.MkdirAll(dir, 0o700)
	var last string
	for ctx.Err() == nil {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err == nil && s.ResourceVersion != last {
			for k, v := range s.Data {
				tmp := filepath.Join(dir, "."+k)
				if os.WriteFile(tmp, v, 0o600) == nil {
					_ = os.Rename(tmp, filepath.Join(dir, k))
				}
			}
			last = s.ResourceVersion
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func status(t *testing.T, port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
