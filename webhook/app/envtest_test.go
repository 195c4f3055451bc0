package app

// These tests run the injector against a real kube-apiserver and etcd
// (envtest): the apiserver calls the webhook over TLS exactly as a cluster
// would. There is no controller-manager, scheduler or kubelet: pods are
// stored, never run, and nothing creates pods from Deployments.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/webhook/inject"
	"github.com/skiff-io/skiff/webhook/server"
)

const (
	siteNS     = "site-a"
	hookConfig = "skiff-injector"
	hookName   = "inject.skiff.io"
)

// testEnv is one apiserver shared by the package's tests, with an injector
// (cert-manager mode, envtest's serving certificate) behind the
// chart-shaped webhook configuration hookConfig.
type testEnv struct {
	env     *envtest.Environment
	cfg     *rest.Config
	c       client.Client
	metrics string // the shared injector's metrics address
	stop    func()
}

var (
	sharedOnce sync.Once
	shared     *testEnv
	sharedErr  error
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

// startEnv returns the shared environment, starting it on first use.
func startEnv(t testing.TB) *testEnv {
	t.Helper()
	assets := testutil.RequireEnvtest(t)
	sharedOnce.Do(func() { shared, sharedErr = newTestEnv(t, assets) })
	if sharedErr != nil {
		t.Fatalf("envtest: %v", sharedErr)
	}
	return shared
}

// chartWebhookConfig is shaped like the Helm chart's
// MutatingWebhookConfiguration. Selectors match labels only, so the
// objectSelector can only exclude: skiff's own pods (the injector must
// never wait on itself) and pods labelled skiff.io/inject=false, which the
// apiserver then never sends. The skiff.io/inject: "true" opt-in is an
// annotation and is checked by the injector.
func chartWebhookConfig(name, ns string, policy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.MutatingWebhookConfiguration {
	path := server.Path
	port := int32(443)
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	scope := admissionregistrationv1.NamespacedScope
	timeout := int32(10)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: hookName,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "skiff-injector", Path: &path, Port: &port},
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			FailurePolicy:           &policy,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: contract.InjectionLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}},
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: inject.PartOfLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{inject.PartOfValue}},
				{Key: contract.InjectAnnotation, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
			}},
		}},
	}
}

// urlWebhookConfig is chartWebhookConfig reaching the webhook at url.
func urlWebhookConfig(name, ns, url string, caBundle []byte, policy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.MutatingWebhookConfiguration {
	c := chartWebhookConfig(name, ns, policy)
	c.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
	return c
}

func newTestEnv(t testing.TB, assets string) (*testEnv, error) {
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost: "127.0.0.1",
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{
				chartWebhookConfig(hookConfig, siteNS, admissionregistrationv1.Fail),
			},
		},
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	e := &testEnv{env: te, cfg: cfg, stop: func() { _ = te.Stop() }}
	if e.c, err = client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme}); err != nil {
		e.stop()
		return nil, err
	}
	ctx := context.Background()
	if err := e.c.Create(ctx, namespace(siteNS, true)); err != nil {
		e.stop()
		return nil, err
	}
	wio := te.WebhookInstallOptions
	o := testOptions(t, siteNS, cfg)
	o.CertDir = wio.LocalServingCertDir
	o.WebhookBindAddress = net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))
	o.WebhookConfigName = hookConfig
	o.MetricsBindAddress = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))
	e.metrics = o.MetricsBindAddress
	stopInjector, err := runInjector(o)
	if err != nil {
		e.stop()
		return nil, err
	}
	stopEnv := e.stop
	e.stop = func() { stopInjector(); stopEnv() }
	return e, nil
}

// testOptions are an injector's options for site namespace ns; ports are
// fresh loopback ports.
func testOptions(t testing.TB, ns string, cfg *rest.Config) Options {
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	var o Options
	fs := newFlagSet()
	o.AddFlags(fs)
	_ = fs.Parse(nil)
	o.Site = "site-a"
	o.Namespace = ns
	o.SidecarImage = "ghcr.io/skiff-io/skiff-router:test"
	o.ControllerAddress = "skiff-controller." + ns + ".svc:15010"
	o.ProxyCPURequest, o.ProxyMemoryRequest, o.ProxyMemoryLimit = "50m", "32Mi", "128Mi"
	o.WebhookBindAddress = "127.0.0.1:" + strconv.Itoa(port())
	o.HealthProbeBindAddress = "127.0.0.1:" + strconv.Itoa(port())
	o.MetricsBindAddress = "0"
	o.RESTConfig = cfg
	return o
}

// runInjector runs Run in the background until it is ready (GET /readyz
// answers 200). The returned stop cancels it and waits for Run to return.
func runInjector(o Options) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	ctx = log.IntoContext(ctx, ctrl.Log.WithName(o.Namespace))
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("injector stopped before it was ready: %v", err)
		default:
		}
		resp, err := http.Get("http://" + o.HealthProbeBindAddress + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("injector not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func namespace(name string, labelled bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if labelled {
		ns.Labels = map[string]string{contract.InjectionLabel: "enabled"}
	}
	return ns
}

func createNamespace(t testing.TB, e *testEnv, name string, labelled bool) {
	t.Helper()
	if err := e.c.Create(t.Context(), namespace(name, labelled)); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func testPod(ns string, annotations, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns, Annotations: annotations, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
	}
}

var optIn = map[string]string{contract.InjectAnnotation: "true"}

// createAndGet creates pod and reads it back from the apiserver.
func createAndGet(t testing.TB, e *testEnv, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := e.c.Create(t.Context(), pod); err != nil {
		t.Fatalf("create pod in %s: %v", pod.Namespace, err)
	}
	var got corev1.Pod
	if err := e.c.Get(t.Context(), client.ObjectKeyFromObject(pod), &got); err != nil {
		t.Fatalf("get pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return &got
}

func sidecar(p *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == contract.SidecarContainerName {
				return &cs[i]
			}
		}
	}
	return nil
}

func TestEnvtestInjectsAnnotatedPod(t *testing.T) {
	e := startEnv(t)
	got := createAndGet(t, e, testPod(siteNS, optIn, nil))

	sc := sidecar(got)
	if sc == nil {
		t.Fatalf("stored pod has no %s: init %v, containers %v", contract.SidecarContainerName, got.Spec.InitContainers, got.Spec.Containers)
	}
	// v1.37 apiserver: --native-sidecar=auto picks a native sidecar.
	if len(got.Spec.InitContainers) != 1 || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("want skiff-proxy as the native sidecar init container, got init %+v", got.Spec.InitContainers)
	}
	want := `{"version":1,"containers":[],"initContainers":["skiff-proxy"],"volumes":["skiff-credentials"]}`
	if s := got.Annotations[contract.StatusAnnotation]; s != want {
		t.Errorf("status annotation %q, want %q", s, want)
	}
	if len(got.Spec.Volumes) != 1 || got.Spec.Volumes[0].Secret == nil || got.Spec.Volumes[0].Secret.SecretName != "skiff-sidecar" {
		t.Errorf("volumes %+v", got.Spec.Volumes)
	}
	if q := sc.Resources.Limits.Memory().String(); q != "128Mi" {
		t.Errorf("memory limit %s, want the flag's 128Mi", q)
	}
	if got.Spec.Containers[0].Name != "web" {
		t.Errorf("app container moved: %+v", got.Spec.Containers)
	}

	// The metric is served by the manager's metrics endpoint.
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"skiff_injector_injected_total ", "skiff_injector_admission_duration_seconds_bucket", `skiff_injector_skipped_total{reason="host network"}`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

func TestEnvtestLeavesOtherPodsAlone(t *testing.T) {
	e := startEnv(t)
	createNamespace(t, e, "plain", false)
	createNamespace(t, e, "labelled-elsewhere", true)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"site namespace, no annotation", testPod(siteNS, nil, nil)},
		{"site namespace, opted out", testPod(siteNS, map[string]string{contract.InjectAnnotation: "false"}, nil)},
		{"site namespace, label skiff.io/inject=false (objectSelector)", testPod(siteNS, optIn, map[string]string{contract.InjectAnnotation: "false"})},
		{"site namespace, skiff's own pod (objectSelector)", testPod(siteNS, optIn, map[string]string{inject.PartOfLabel: inject.PartOfValue})},
		{"unlabelled namespace", testPod("plain", optIn, nil)},
		{"labelled namespace of another site", testPod("labelled-elsewhere", optIn, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := createAndGet(t, e, tc.pod)
			if sidecar(got) != nil || got.Annotations[contract.StatusAnnotation] != "" || len(got.Spec.Volumes) != 0 {
				t.Errorf("pod was changed: %+v", got.Spec)
			}
		})
	}
}

// envtest runs no controller-manager, so no ReplicaSet ever makes the
// Deployment's pods: the test creates the Deployment, then a Pod from its
// template owned by it, as the ReplicaSet controller would (it would own
// the Pod through a ReplicaSet).
func TestEnvtestDeploymentTemplate(t *testing.T) {
	e := startEnv(t)
	labels := map[string]string{"app": "api"}
	dep := &appsv1.Deployment{
		// A name of its own per run: the envtest is shared by -count runs.
		ObjectMeta: metav1.ObjectMeta{GenerateName: "api-", Namespace: siteNS},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					contract.InjectAnnotation:         "true",
					contract.ConfigLogLevelAnnotation: "debug",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "api:1"}}},
			},
		},
	}
	if err := e.c.Create(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	if len(dep.Spec.Template.Spec.InitContainers) != 0 {
		t.Errorf("the Deployment's template was injected; only pods should be")
	}
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: *dep.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	pod.GenerateName, pod.Namespace = "api-", siteNS
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: &yes}}
	got := createAndGet(t, e, pod)
	sc := sidecar(got)
	if sc == nil {
		t.Fatalf("pod from the template was not injected")
	}
	if !containsString(sc.Args, "--log-level=debug") {
		t.Errorf("sidecar args %v lack the annotated log level", sc.Args)
	}

	// A pod of the Deployment that cannot be injected (host network) is
	// stored as is, and the skip is recorded as an Event on its owner: the
	// pod has no UID yet to hang an Event on.
	skipped := pod.DeepCopy()
	skipped.Name, skipped.ResourceVersion, skipped.UID = "", "", ""
	skipped.Spec = *dep.Spec.Template.Spec.DeepCopy()
	skipped.Spec.HostNetwork = true
	if got := createAndGet(t, e, skipped); sidecar(got) != nil {
		t.Fatalf("host-network pod injected")
	}
	testutil.Eventually(t, 30*time.Second, "InjectionSkipped event on the Deployment", func() error {
		var evs eventsv1.EventList
		if err := e.c.List(t.Context(), &evs, client.InNamespace(siteNS)); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == server.EventReasonSkipped && ev.Regarding.Kind == "Deployment" && ev.Regarding.Name == dep.Name {
				if want := "skiff: pod not injected: host network"; ev.Note != want {
					return fmt.Errorf("event note %q, want %q", ev.Note, want)
				}
				return nil
			}
		}
		return fmt.Errorf("no such event among %d", len(evs.Items))
	})
}

func containsString(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

func TestEnvtestDeniesBadAnnotation(t *testing.T) {
	e := startEnv(t)
	pod := testPod(siteNS, map[string]string{contract.InjectAnnotation: "true", contract.ConfigProxyCPUAnnotation: "two"}, nil)
	err := e.c.Create(t.Context(), pod)
	if err == nil {
		t.Fatalf("pod with a bad config annotation was admitted: %+v", pod.Spec)
	}
	if !apierrors.IsForbidden(err) {
		t.Errorf("want Forbidden, got %v", err)
	}
	for _, s := range []string{hookName, contract.ConfigProxyCPUAnnotation, `"two"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

// With nothing listening at the webhook's address, failurePolicy decides:
// Fail refuses the pod, Ignore stores it uninjected.
func TestEnvtestWebhookDown(t *testing.T) {
	e := startEnv(t)
	url := fmt.Sprintf("https://127.0.0.1:%d%s", testutil.FreePort(t, "127.0.0.1"), server.Path)
	ca := e.env.WebhookInstallOptions.LocalServingCAData
	for ns, policy := range map[string]admissionregistrationv1.FailurePolicyType{
		"down-ignore": admissionregistrationv1.Ignore,
		"down-fail":   admissionregistrationv1.Fail,
	} {
		createNamespace(t, e, ns, true)
		cfg := urlWebhookConfig("skiff-injector-"+ns, ns, url, ca, policy)
		if err := e.c.Create(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.c.Delete(context.Background(), cfg) })
	}
	// The apiserver learns of new webhook configurations through a watch:
	// once it refuses a pod in down-fail, it knows both.
	testutil.Eventually(t, 30*time.Second, "creation refused with failurePolicy Fail", func() error {
		pod := testPod("down-fail", optIn, nil)
		err := e.c.Create(t.Context(), pod)
		if err == nil {
			return fmt.Errorf("pod %s created", pod.Name)
		}
		if !strings.Contains(err.Error(), "failed calling webhook") {
			return fmt.Errorf("unexpected error: %w", err)
		}
		return nil
	})
	got := createAndGet(t, e, testPod("down-ignore", optIn, nil))
	if sidecar(got) != nil {
		t.Errorf("pod injected with the webhook down")
	}
}

// selfManaged runs a second injector that manages its own certificate for
// site namespace ns, behind a URL webhook configuration with no caBundle:
// the injector must create the Secret and patch the caBundle before the
// apiserver can call it.
func selfManaged(t *testing.T, e *testEnv, ns string, mod func(*Options)) (Options, func()) {
	t.Helper()
	createNamespace(t, e, ns, true)
	o := testOptions(t, ns, e.cfg)
	o.WebhookConfigName = "skiff-injector-" + ns
	o.ExtraSANs = []string{"127.0.0.1"}
	if mod != nil {
		mod(&o)
	}
	url := "https://" + o.WebhookBindAddress + server.Path
	cfg := urlWebhookConfig(o.WebhookConfigName, ns, url, nil, admissionregistrationv1.Fail)
	if err := e.c.Create(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), cfg) })
	// The next run (-count) starts without a certificate, as this one did;
	// deleted after the injector stopped (cleanups run last first).
	t.Cleanup(func() {
		_ = e.c.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.CertSecret}})
	})
	stop, err := runInjector(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return o, stop
}

func getSecret(t testing.TB, e *testEnv, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := e.c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	return &s
}

func caBundleOf(t testing.TB, e *testEnv, name string) []byte {
	t.Helper()
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: name}, &cfg); err != nil {
		t.Fatalf("get webhook configuration: %v", err)
	}
	return cfg.Webhooks[0].ClientConfig.CABundle
}

// createInjected creates an opted-in pod and checks the response carries
// the sidecar.
func createInjected(ctx context.Context, e *testEnv, ns string) error {
	pod := testPod(ns, optIn, nil)
	if err := e.c.Create(ctx, pod); err != nil {
		return err
	}
	if sidecar(pod) == nil {
		return fmt.Errorf("pod %s stored without the sidecar", pod.Name)
	}
	return nil
}

func TestEnvtestSelfManagedCertificate(t *testing.T) {
	e := startEnv(t)
	const ns = "self-managed"
	o, stop := selfManaged(t, e, ns, nil)

	sec := getSecret(t, e, ns, o.CertSecret)
	if sec.Type != corev1.SecretTypeTLS || len(sec.Data["ca.crt"]) == 0 || len(sec.Data["tls.crt"]) == 0 {
		t.Fatalf("secret type %s, keys %v", sec.Type, keys(sec.Data))
	}
	if got := string(caBundleOf(t, e, o.WebhookConfigName)); got != string(sec.Data["ca.crt"]) {
		t.Errorf("caBundle is not the secret's ca.crt")
	}
	// The apiserver notices the caBundle through a watch; then it trusts
	// the injector.
	testutil.Eventually(t, 30*time.Second, "apiserver calls the self-managed injector", func() error {
		return createInjected(t.Context(), e, ns)
	})

	// A restart loads the Secret as it is.
	stop()
	stop2, err := runInjector(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop2)
	if again := getSecret(t, e, ns, o.CertSecret); again.ResourceVersion != sec.ResourceVersion {
		t.Errorf("restart rewrote the secret (resourceVersion %s -> %s)", sec.ResourceVersion, again.ResourceVersion)
	}
	if err := createInjected(t.Context(), e, ns); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// servedLeaf dials the injector and returns the certificate it serves.
func servedLeaf(addr string) (serial, issuer string, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	c := conn.ConnectionState().PeerCertificates[0]
	return c.SerialNumber.Text(16), c.Issuer.CommonName, nil
}

// Short lifetimes force leaf renewals and a full CA rotation (new CA
// trusted, leaf from it served, old CA dropped) while pods are created
// without pause; every creation must succeed and be injected.
func TestEnvtestCertificateRotation(t *testing.T) {
	e := startEnv(t)
	const ns = "rotation"
	o, _ := selfManaged(t, e, ns, func(o *Options) {
		o.CALifetime = 15 * time.Second // rotated at 10s, expires at 15s
		o.LeafLifetime = 6 * time.Second
		o.CAPublishDelay = 2 * time.Second
		o.CertCheckInterval = 200 * time.Millisecond
	})
	testutil.Eventually(t, 30*time.Second, "apiserver calls the self-managed injector", func() error {
		return createInjected(t.Context(), e, ns)
	})
	firstBundle := string(caBundleOf(t, e, o.WebhookConfigName))
	_, firstIssuer, err := servedLeaf(o.WebhookBindAddress)
	if err != nil {
		t.Fatal(err)
	}

	const workers, maxCreations = 4, 12000
	var (
		mu        sync.Mutex
		created   int
		failures  []error
		leaves    = map[string]bool{}
		bundles   = map[string]bool{firstBundle: true}
		rotated   bool // a leaf from a new CA was served
		completed bool // ... and the first CA has left the caBundle
	)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				if created >= maxCreations || completed {
					mu.Unlock()
					return
				}
				created++
				mu.Unlock()
				if err := createInjected(ctx, e, ns); err != nil && ctx.Err() == nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}
	// Watch the rotation from outside while the workers create pods.
	for ctx.Err() == nil {
		serial, issuer, err := servedLeaf(o.WebhookBindAddress)
		bundle := string(caBundleOf(t, e, o.WebhookConfigName))
		mu.Lock()
		if err == nil {
			leaves[serial] = true
			rotated = rotated || issuer != firstIssuer
		}
		bundles[bundle] = true
		completed = rotated && !strings.Contains(bundle, strings.TrimSpace(firstBundle))
		done := completed || created >= maxCreations
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	t.Logf("%d pods created during the rotation, %d failed; %d leaves and %d caBundles seen", created, len(failures), len(leaves), len(bundles))
	if !completed {
		t.Errorf("rotation did not complete (new-CA leaf served: %v) within the bound", rotated)
	}
	if len(bundles) < 3 {
		t.Errorf("caBundle took %d values, want at least 3 (old, old+new, new)", len(bundles))
	}
	if len(leaves) < 3 {
		t.Errorf("%d leaves served, want at least 3", len(leaves))
	}
	for i, err := range failures {
		if i == 5 {
			break
		}
		t.Errorf("creation during rotation failed: %v", err)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d creations failed", len(failures), created)
	}
}

// Replicas starting together race to create the Secret; the losers get
// AlreadyExists, reload, and all serve the winner's certificate.
func TestEnvtestCertSecretCreateRace(t *testing.T) {
	e := startEnv(t)
	const ns = "create-race"
	createNamespace(t, e, ns, true)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	leaves := make([]string, replicas)
	start := make(chan struct{})
	for i := range replicas {
		o := testOptions(t, ns, e.cfg)
		o.WebhookConfigName = "absent"
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			src, _, err := newCertSource(log.IntoContext(t.Context(), ctrl.Log.WithName(fmt.Sprint("replica-", i))), o, e.cfg, clientgoscheme.Scheme)
			if err != nil {
				errs[i] = err
				return
			}
			c, err := src.GetCertificate(nil)
			if err != nil {
				errs[i] = err
				return
			}
			leaves[i] = c.Leaf.SerialNumber.String()
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range leaves {
		if leaves[i] != leaves[0] {
			t.Errorf("replica %d serves leaf %s, replica 0 serves %s", i, leaves[i], leaves[0])
		}
	}
}
