package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	routerapp "github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/test/testutil/kubetest"
	"github.com/skiff-io/skiff/xds/app"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// Two sites as two namespaces of one real apiserver, each with a
// controller (Kubernetes source) and a gateway on loopback; west links to
// east. Exposing a Service in west makes a proxy Service in east whose
// gateway listener reaches west's endpoint; routing changes reach an xDS
// client of east; removing the annotation removes the proxy; a Service
// skiff does not own is never modified; a bad annotation is reported on
// its Service and leaves the rest alone.
func TestKubernetesSites(t *testing.T) {
	c := startAPIServer(t)
	ctx := t.Context()
	for _, ns := range []string{"east", "west"} {
		createSite(t, c, ns)
	}

	// Gateways on loopback, west accepting east's link; each follows its
	// site's controller.
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	westLink := port()
	write(t, filepath.Join(dir, "west.yaml"), fmt.Sprintf("name: west\ndataDir: %s/west-data\nlinkAccess:\n  bind: 127.0.0.1:%d\n", dir, westLink))
	if _, err := routerapp.IssueToken(routerapp.TokenOptions{SiteFile: filepath.Join(dir, "west.yaml"), Out: filepath.Join(dir, "east-token.yaml"), Expires: 10 * time.Minute, Redemptions: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "east.yaml"), fmt.Sprintf("name: east\ndataDir: %s/east-data\nlinks:\n  - token: east-token.yaml\n", dir))
	// Each controller serves xDS with its site's CA, the one its gateway
	// holds: the Secret skiff-site-ca, made here from the gateways' data
	// dirs (the chart's gateways read the controller's instead).
	for _, site := range []string{"west", "east"} {
		ca, err := pki.LoadOrCreateCA(filepath.Join(dir, site+"-data"), site)
		must(t, err)
		key, err := os.ReadFile(filepath.Join(dir, site+"-data", pki.CAKeyFile))
		must(t, err)
		must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: kube.CASecret, Namespace: site},
			Data: map[string][]byte{pki.CACertFile: ca.CertPEM, pki.CAKeyFile: key}}))
	}
	xdsPort := map[string]int{"east": port(), "west": port()}
	for _, site := range []string{"west", "east"} {
		admin := port()
		runBG(t, site+" gateway", func(ctx context.Context) error {
			return routerapp.RunGateway(ctx, routerapp.ServeOptions{SiteFile: filepath.Join(dir, site+".yaml"), Controller: addr(xdsPort[site]),
				MetricsBindAddress: addr(admin), HealthBindAddress: "0", Name: site + "-gw"}, testr.New(t).WithName(site+"-gateway"))
		})
		runBG(t, site+" controller", func(ctx context.Context) error {
			return app.Run(ctx, app.Options{Kube: true, KubeConfig: apiConfig, Site: site, Namespace: site, GatewayService: "skiff-gateway", GatewayAdmin: addr(admin),
				XDSBindAddress: addr(xdsPort[site]), MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName(site+"-controller"))
		})
	}

	// An xDS client of east, as a sidecar of east would be, with a
	// certificate of east's CA.
	var seenMu sync.Mutex
	var seen []model.Service
	xc, err := xdsclient.New(xdsclient.Options{Addr: addr(xdsPort["east"]), Node: model.Node{Kind: model.KindSidecar, Site: "east", Name: "east/test-pod"},
		Log: testr.New(t).WithName("xds-client"), TLS: xdsclient.CATLS(filepath.Join(dir, "east-data"), "east", "sidecar~east~east/test-pod"),
		Apply: func(_ context.Context, s []model.Service) error {
			seenMu.Lock()
			seen = s
			seenMu.Unlock()
			return nil
		}})
	must(t, err)
	runBG(t, "xds client", func(ctx context.Context) error { return xc.Run(ctx) })
	routingSeen := func(address string, port int) model.Pattern {
		seenMu.Lock()
		defer seenMu.Unlock()
		for _, s := range seen {
			if s.Address == address && s.Port == port {
				return s.Routing
			}
		}
		return ""
	}

	// A Service skiff does not own, named like an address west will expose.
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: "east", Labels: map[string]string{"team": "web"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	must(t, c.Create(ctx, foreign))

	// west exposes backend (8080 -> an echo server) and frontend.
	// EndpointSlices refuse loopback addresses: the backend listens on
	// this machine's own (non-loopback) address.
	hostIP := localIP(t)
	_, echoPortS, _ := net.SplitHostPort(testutil.HTTPNameServer(t, net.JoinHostPort(hostIP, "0"), "west-backend"))
	echoPort, _ := strconv.Atoi(echoPortS)
	expose(t, c, "west", "backend", map[string]string{}, []int32{8080}, hostIP, int32(echoPort))
	expose(t, c, "west", "frontend", map[string]string{}, []int32{80}, hostIP, int32(echoPort))

	var proxy corev1.Service
	testutil.Eventually(t, 30*time.Second, "proxy Service backend in east", func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "backend"}, &proxy); err != nil {
			return err
		}
		if !kube.Owned(&proxy) || len(proxy.Spec.Ports) != 1 || proxy.Spec.Ports[0].Port != 8080 || proxy.Spec.Selector["app.kubernetes.io/component"] != "gateway" {
			return fmt.Errorf("proxy service not as expected: %+v", proxy.Spec)
		}
		return nil
	})
	target := proxy.Spec.Ports[0].TargetPort.IntValue()
	if target < kube.MinGatewayPort || target > kube.MaxGatewayPort {
		t.Errorf("target port %d outside the gateway range", target)
	}
	// The gateway pod would receive the proxy Service's traffic on the
	// target port: here the east gateway listens on it on loopback.
	testutil.Eventually(t, 20*time.Second, "east's gateway listener reaches west's backend", func() error {
		got, err := httpGet("http://127.0.0.1:" + strconv.Itoa(target) + "/")
		if err != nil {
			return err
		}
		if got != "west-backend" {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "east's xDS client sees backend:8080 balanced", func() error {
		if p := routingSeen("backend", 8080); p != model.Balanced {
			return fmt.Errorf("routing %q", p)
		}
		return nil
	})

	// Only clients of east: without a certificate, or with one of west's
	// CA, a client is refused at the handshake.
	eastCA, err := pki.LoadOrCreateCA(filepath.Join(dir, "east-data"), "east")
	must(t, err)
	westCA, err := pki.LoadOrCreateCA(filepath.Join(dir, "west-data"), "west")
	must(t, err)
	westCert, westKey, _, err := westCA.IssueClient("intruder", time.Hour)
	must(t, err)
	intruder, err := pki.ClientTLS(eastCA.CertPEM, westCert, westKey, xdsclient.ServerName("east"))
	must(t, err)
	for what, creds := range map[string]credentials.TransportCredentials{"no certificate": insecure.NewCredentials(), "west's certificate": credentials.NewTLS(intruder)} {
		if _, err := firstResponse(t, addr(xdsPort["east"]), grpc.WithTransportCredentials(creds)); grpcstatus.Code(err) != codes.Unavailable {
			t.Errorf("a client of east's xDS with %s: %v, want it refused (Unavailable)", what, err)
		}
	}

	// The site's status is kept in a small ConfigMap.
	testutil.Eventually(t, 20*time.Second, "east's skiff-status lists backend:8080 from west", func() error {
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "east", Name: contract.StatusConfigMap}, &cm); err != nil {
			return err
		}
		var st model.SiteStatus
		if err := json.Unmarshal([]byte(cm.Data[contract.StatusKey]), &st); err != nil {
			return err
		}
		for _, s := range st.Services {
			if s.Name == "backend:8080" && len(s.Remote) == 1 && s.Remote[0].Site == "west" && st.Counts.Sites == 2 {
				return nil
			}
		}
		return fmt.Errorf("status %s", cm.Data[contract.StatusKey])
	})

	// Routing changed in west reaches east's xDS clients.
	annotate(t, c, "west", "backend", map[string]string{"skiff.io/routing": "closest"})
	testutil.Eventually(t, 20*time.Second, "east's xDS client sees backend:8080 closest", func() error {
		if p := routingSeen("backend", 8080); p != model.Closest {
			return fmt.Errorf("routing %q", p)
		}
		return nil
	})

	// east exposes the address too, under another Service name: the proxy
	// Service stays (clients dial backend), and its virtual IP joins the
	// local service that now has an endpoint of its own.
	expose(t, c, "east", "backend-east", map[string]string{"skiff.io/address": "backend"}, []int32{8080}, hostIP, int32(echoPort))
	testutil.Eventually(t, 20*time.Second, "east's backend:8080 has its own endpoint and keeps the proxy's VIP", func() error {
		seenMu.Lock()
		defer seenMu.Unlock()
		for _, s := range seen {
			if s.Address == "backend" && s.Port == 8080 {
				if s.ReadyEndpoints() != 1 || len(s.VIPs) != 2 || s.GatewayListen == "" {
					return fmt.Errorf("service %+v", s)
				}
				return nil
			}
		}
		return fmt.Errorf("no backend:8080")
	})
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "backend"}, &proxy))
	must(t, c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend-east", Namespace: "east"}}))

	// A bad annotation: reported on the Service, backend unaffected.
	annotate(t, c, "west", "frontend", map[string]string{"skiff.io/routing": "fastest"})
	testutil.Eventually(t, 20*time.Second, "an Event on west/frontend names the annotation", func() error {
		return findEvent(ctx, c, "west", "frontend", "InvalidExposure", `skiff.io/routing: "fastest"`)
	})
	// The foreign frontend in east: never modified, conflict reported.
	testutil.Eventually(t, 10*time.Second, "east/frontend untouched", func() error {
		var got corev1.Service
		if err := c.Get(ctx, client.ObjectKeyFromObject(foreign), &got); err != nil {
			return err
		}
		if got.ResourceVersion != foreign.ResourceVersion || kube.Owned(&got) {
			return fmt.Errorf("east/frontend was modified: %+v", got.ObjectMeta)
		}
		return nil
	})

	// Unexposing backend removes east's proxy.
	annotate(t, c, "west", "backend", map[string]string{"skiff.io/expose": "false"})
	testutil.Eventually(t, 20*time.Second, "proxy Service backend gone from east", func() error {
		err := c.Get(ctx, client.ObjectKey{Namespace: "east", Name: "backend"}, &proxy)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
}

// apiConfig is the REST config of the test's apiserver (startAPIServer);
// the tests pass it to the controllers they run (Options.KubeConfig).
var apiConfig *rest.Config

// startAPIServer starts a real apiserver (envtest) for the test, points
// the controllers' Kubernetes source at it and returns a client.
func startAPIServer(t *testing.T) client.Client {
	t.Helper()
	cfg := kubetest.StartEnvtest(t)
	apiConfig = cfg
	c, err := client.New(cfg, client.Options{})
	must(t, err)
	return c
}

// createSite makes a site's namespace and the gateway Service the chart
// would install there.
func createSite(t *testing.T, c client.Client, ns string) {
	t.Helper()
	must(t, c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, c.Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app.kubernetes.io/component": "gateway"},
			Ports: []corev1.ServicePort{{Name: "link", Port: 55671}}},
	}))
}

func expose(t *testing.T, c client.Client, ns, name string, ann map[string]string, ports []int32, ip string, target int32) {
	t.Helper()
	a := map[string]string{"skiff.io/expose": "true"}
	for k, v := range ann {
		a[k] = v
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: a},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}}}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	for i, p := range ports {
		pn := "p" + strconv.Itoa(i)
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: pn, Port: p, TargetPort: intstr.FromInt32(target)})
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To(pn), Port: ptr.To(target), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	must(t, c.Create(t.Context(), svc))
	must(t, c.Create(t.Context(), es))
}

func annotate(t *testing.T, c client.Client, ns, name string, ann map[string]string) {
	t.Helper()
	var svc corev1.Service
	must(t, c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &svc))
	for k, v := range ann {
		svc.Annotations[k] = v
	}
	must(t, c.Update(t.Context(), &svc))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func write(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o600))
}

// runBG runs f until the test ends and reports an early error.
// runBG runs f until the test ends, or until the returned stop is
// called.
func runBG(t *testing.T, what string, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
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
	}
	t.Cleanup(stop)
	return stop
}

// localIP returns a non-loopback IPv4 address of this machine.
func localIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	must(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	testutil.Require(t, false, "no non-loopback IPv4 address on this machine for EndpointSlice endpoints")
	return ""
}

func httpGet(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// findEvent looks for an event on an object with a reason and a note
// containing every given text.
func findEvent(ctx context.Context, c client.Client, ns, name, reason string, texts ...string) error {
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		return err
	}
next:
	for _, e := range evs.Items {
		if e.Regarding.Name != name || e.Reason != reason {
			continue
		}
		for _, s := range texts {
			if !strings.Contains(e.Note, s) {
				continue next
			}
		}
		return nil
	}
	return fmt.Errorf("no %s event on %s/%s among %d", reason, ns, name, len(evs.Items))
}
