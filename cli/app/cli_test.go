package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/cli/app"
	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/state"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/test/testutil/kubetest"
	ctlapp "github.com/skiff-io/skiff/xds/app"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// The CLI against a real apiserver, with the real controllers and
// gateways of two sites (east and west) in it: a token made with token
// create, linked with link create, shows as up in link list, status and
// network status on both sides; expose refuses what the controller
// would refuse before it writes anything, and the controller serves what
// it writes; unexpose and link delete undo them; the errors a user meets
// say what to do.
func TestCLIAgainstRealSites(t *testing.T) {
	testutil.RequireEnvtest(t)
	cfg := kubetest.StartEnvtest(t)
	c, err := client.New(cfg, client.Options{})
	must(t, err)
	ctx := t.Context()
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, cfg, filepath.Join(dir, "kubeconfig"))
	for _, name := range []string{"east", "west"} {
		startSite(t, cfg, c, name, filepath.Join(dir, name))
	}
	skiff := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		code := app.Main(ctx, "skiff", append(args, "--kubeconfig", kubeconfig), &out, &errOut)
		if code != 0 {
			return out.String(), fmt.Errorf("exit %d: %s", code, errOut.String())
		}
		return out.String(), nil
	}

	// No site in a namespace: say what to do.
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nowhere"}}))
	if _, err := skiff("status", "-n", "nowhere"); err == nil || !strings.Contains(err.Error(), "no skiff site in namespace nowhere") || !strings.Contains(err.Error(), "helm install skiff charts/skiff -n nowhere") {
		t.Errorf("status in a namespace without a site: %v", err)
	}
	if _, err := skiff("token", "create", filepath.Join(dir, "x.yaml"), "-n", "east", "--expires", "soon"); err == nil || !strings.Contains(err.Error(), `--expires "soon"`) {
		t.Errorf("token create --expires soon: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, "both controllers write their status", func() error {
		for _, ns := range []string{"east", "west"} {
			if _, err := skiff("status", "-n", ns); err != nil {
				return err
			}
		}
		return nil
	})

	// token create on east: a file that applies anywhere.
	tokenFile := filepath.Join(dir, "token.yaml")
	out, err := skiff("token", "create", tokenFile, "-n", "east", "--expires", "10m", "--uses", "2")
	must(t, err)
	if !strings.Contains(out, "Token of site east written to "+tokenFile) || !strings.Contains(out, "skiff link create "+tokenFile) {
		t.Errorf("token create says %q", out)
	}
	fi, err := os.Stat(tokenFile)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600 (it holds a private key)", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(tokenFile)
	must(t, err)
	var file map[string]any
	must(t, yaml.Unmarshal(raw, &file))
	meta, _ := file["metadata"].(map[string]any)
	for _, k := range []string{"namespace", "uid", "resourceVersion", "creationTimestamp", "annotations", "managedFields"} {
		if _, ok := meta[k]; ok {
			t.Errorf("token file has metadata.%s: it would not apply cleanly elsewhere:\n%s", k, raw)
		}
	}
	if meta["name"] != "link-to-east" {
		t.Errorf("token file name %v, want link-to-east", meta["name"])
	}
	var req corev1.Secret
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "link-to-east"}, &req))
	if req.Annotations[contract.ExpiresAnnotation] != "10m0s" || req.Annotations[contract.RedemptionsAnnotation] != "2" {
		t.Errorf("token request annotations %v", req.Annotations)
	}
	if _, err := skiff("token", "create", tokenFile, "-n", "east"); err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "--name") {
		t.Errorf("a second token create of the same name: %v", err)
	}
	// Its own token is refused where it was made.
	if _, err := skiff("link", "create", tokenFile, "-n", "east"); err == nil || !strings.Contains(err.Error(), "this site's own") {
		t.Errorf("link create of east's token on east: %v", err)
	}

	// link create on west: the gateways link up.
	out, err = skiff("link", "create", tokenFile, "-n", "west", "--cost", "2", "--timeout", "60s")
	must(t, err)
	if !strings.Contains(out, "Link link-to-east to site east created (cost 2); it is up.") {
		t.Errorf("link create says %q", out)
	}
	out, err = skiff("link", "list", "-n", "west")
	must(t, err)
	if !hasRow(out, "link-to-east", "east", "2", "up") {
		t.Errorf("link list:\n%s", out)
	}
	out, err = skiff("link", "list", "-n", "west", "-o", "json")
	must(t, err)
	var rows []map[string]any
	must(t, json.Unmarshal([]byte(out), &rows))
	if len(rows) != 1 || rows[0]["peer"] != "east" || rows[0]["state"] != "up" {
		t.Errorf("link list -o json: %s", out)
	}
	testutil.Eventually(t, 30*time.Second, "east's status shows the link west dialled", func() error {
		out, err := skiff("status", "-n", "east")
		if err != nil {
			return err
		}
		if !hasRow(out, "west", "2", "up", "west", "-") {
			return fmt.Errorf("east's status:\n%s", out)
		}
		return nil
	})
	out, err = skiff("status", "-n", "west")
	must(t, err)
	if !hasRow(out, "east", "2", "up", "west", "link-to-east") || !hasRow(out, "gateway", "Deployment", "missing") {
		t.Errorf("west's status:\n%s", out)
	}
	// The controllers run beside the test, in no pod: what they say of
	// their xDS clients cannot be read, and status says so.
	if !hasRow(out, "-", "clients", "not", "known") || !strings.Contains(out, "the controller's /status could not be read: no running controller pod in namespace west") {
		t.Errorf("west's status does not say its xDS clients are not known:\n%s", out)
	}
	out, err = skiff("network", "status", "-n", "west", "-o", "dot")
	must(t, err)
	if !strings.Contains(out, `"east" -- "west" [label="2"];`) || !strings.Contains(out, `"west" [style=bold];`) {
		t.Errorf("network status -o dot:\n%s", out)
	}

	// debug dump: what each site shows of itself, and no secret. A pod
	// of the chart's that no kubelet runs cannot be reached through the
	// API server's proxy: the dump says so and goes on.
	must(t, c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway-x", Namespace: "west",
		Labels: map[string]string{"app.kubernetes.io/part-of": "skiff", "app.kubernetes.io/component": "gateway"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "gateway", Image: "skiff.local/skiff-router:0.1.0"}}}}))
	secrets := secretValues(t, c)
	for _, ns := range []string{"east", "west"} {
		file := filepath.Join(dir, ns+"-dump.tar.gz")
		out, err := skiff("debug", "dump", file, "-n", ns)
		must(t, err)
		files := testutil.Untar(t, file)
		for _, want := range []string{"dump.json", "status.json", "links.json", "events.json", "pods.json"} {
			if _, ok := files[want]; !ok {
				t.Errorf("%s's dump lacks %s (has %v)", ns, want, keys(files))
			}
		}
		if ns == "west" {
			if !strings.Contains(out, "could not be taken") || !strings.Contains(files["errors.txt"], "admin/skiff-gateway-x/metrics") ||
				!strings.Contains(files["pods.json"], "skiff-gateway-x") || !strings.Contains(files["links.json"], `"peer": "east"`) {
				t.Errorf("west's dump: %q\n%v", out, files)
			}
		}
		for name, content := range files {
			for _, bad := range append([]string{"PRIVATE KEY", "BEGIN CERTIFICATE"}, secrets...) {
				if strings.Contains(content, bad) {
					t.Errorf("%s's dump holds a secret in %s (%.40q...)", ns, name, bad)
				}
			}
		}
	}

	// expose: what the controller would refuse is refused here first,
	// and nothing is written.
	createService(t, c, "east", "web", "http", "10.1.2.3")
	if _, err := skiff("expose", "service", "web", "-n", "east", "--routing", "multicast", "--protocol", "grpc"); err == nil ||
		!strings.Contains(err.Error(), "annotation skiff.io/routing") {
		t.Errorf("expose multicast grpc: %v", err)
	}
	var svc corev1.Service
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "web"}, &svc))
	if len(svc.Annotations) != 0 {
		t.Errorf("a refused expose wrote annotations: %v", svc.Annotations)
	}
	out, err = skiff("expose", "service", "web", "-n", "east", "--routing", "closest", "--address", "shop")
	must(t, err)
	if !strings.Contains(out, "Service web exposed as shop, routed closest, port 8080 (http).") {
		t.Errorf("expose says %q", out)
	}
	testutil.Eventually(t, 30*time.Second, "west's network status shows shop served by east", func() error {
		out, err := skiff("network", "status", "-n", "west")
		if err != nil {
			return err
		}
		if !hasRow(out, "shop:8080", "http", "closest", "east", "(1)") {
			return fmt.Errorf("west's network status:\n%s", out)
		}
		return nil
	})
	out, err = skiff("unexpose", "service", "web", "-n", "east")
	must(t, err)
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "web"}, &svc))
	if _, ok := svc.Annotations[contract.ExposeAnnotation]; ok || svc.Annotations[contract.AddressAnnotation] != "" {
		t.Errorf("unexpose left %v (%s)", svc.Annotations, out)
	}

	// link delete: only links, and then the link goes down.
	if _, err := skiff("link", "delete", "link-to-east", "-n", "east"); err == nil || !strings.Contains(err.Error(), "is not a link") {
		t.Errorf("link delete of a token request: %v", err)
	}
	out, err = skiff("link", "delete", "link-to-east", "-n", "west")
	must(t, err)
	if out != "Link link-to-east deleted.\n" {
		t.Errorf("link delete says %q", out)
	}
	out, err = skiff("link", "list", "-n", "west")
	must(t, err)
	if !strings.Contains(out, "No links") {
		t.Errorf("link list after the delete:\n%s", out)
	}
}

// secretValues are the data of every Secret in the cluster (at least 16
// bytes long), as they are and base64-encoded.
func secretValues(t *testing.T, c client.Client) []string {
	t.Helper()
	var list corev1.SecretList
	must(t, c.List(t.Context(), &list))
	var out []string
	for _, s := range list.Items {
		for _, v := range s.Data {
			if len(v) >= 16 {
				out = append(out, string(v), base64.StdEncoding.EncodeToString(v))
			}
		}
	}
	if len(out) < 4 {
		t.Fatalf("only %d secret values in the cluster: the check would prove nothing", len(out))
	}
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// hasRow says whether a line of out holds the cells, in order.
func hasRow(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		i := 0
		for _, w := range f {
			if i < len(cells) && strings.HasPrefix(w, cells[i]) {
				i++
			}
		}
		if i == len(cells) {
			return true
		}
	}
	return false
}

// startSite runs what the chart would in namespace ns, beside the test:
// the gateway Service, the controller, the kubelet's copy of the site
// Secret into a directory, and the gateway (no Deployment: status shows
// it missing).
func startSite(t *testing.T, cfg *rest.Config, c client.Client, ns, dir string) {
	t.Helper()
	ctx := t.Context()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app.kubernetes.io/component": "gateway"},
			Ports: []corev1.ServicePort{{Name: "link", Port: 55671}}},
	}))
	port := func() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))) }
	link, xds, admin := port(), port(), port()
	siteDir, dataDir := filepath.Join(dir, "site"), filepath.Join(dir, "data")
	runBG(t, ns+" controller", func(ctx context.Context) error {
		return ctlapp.Run(ctx, ctlapp.Options{Kube: true, KubeConfig: cfg, Site: ns, Namespace: ns, GatewayService: "skiff-gateway",
			GatewayAdmin: admin, LinkAdvertise: link, LinkBind: link, GatewaySiteDir: siteDir, GatewayDataDir: dataDir,
			XDSBindAddress: xds, MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName(ns+"-controller"))
	})
	runBG(t, ns+" secret volume", func(ctx context.Context) error {
		kubetest.MaterializeSecret(ctx, c, ns, kube.SiteSecret, siteDir)
		return nil
	})
	testutil.Eventually(t, 20*time.Second, ns+" site file written", func() error {
		_, err := os.Stat(filepath.Join(siteDir, "site.yaml"))
		return err
	})
	hc, err := rest.HTTPClientFor(cfg)
	must(t, err)
	runBG(t, ns+" gateway", func(ctx context.Context) error {
		return routerapp.RunGateway(ctx, routerapp.ServeOptions{SiteFile: filepath.Join(siteDir, "site.yaml"), Controller: xds,
			MetricsBindAddress: admin, HealthBindAddress: "0", Name: ns + "-gw", Kube: &state.Kube{Server: server(cfg), Client: hc, Namespace: ns}},
			testr.New(t).WithName(ns+"-gateway"))
	})
}

func server(cfg *rest.Config) string {
	if strings.HasPrefix(cfg.Host, "https://") || strings.HasPrefix(cfg.Host, "http://") {
		return cfg.Host
	}
	return "https://" + cfg.Host
}

// createService makes a Service of one port with appProtocol and one
// ready endpoint.
func createService(t *testing.T, c client.Client, ns, name, appProtocol, ip string) {
	t.Helper()
	must(t, c.Create(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, AppProtocol: ptr.To(appProtocol), TargetPort: intstr.FromInt32(8080)}}}}))
	must(t, c.Create(t.Context(), &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}))
}

// writeKubeconfig writes a kubeconfig for cfg whose context has no
// namespace (so every call names one with -n).
func writeKubeconfig(t *testing.T, cfg *rest.Config, path string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: server(cfg), CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	must(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// runBG runs f until the test ends and reports an early error.
func runBG(t *testing.T, what string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %v", what, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop", what)
			}
		})
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
