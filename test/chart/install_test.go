package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/skiff-io/skiff/test/testutil"
)

// partOf selects every object the chart makes.
const partOf = "app.kubernetes.io/part-of=skiff"

// cluster is a real kube-apiserver and etcd (envtest) and the clients the
// test talks to it with. No kubelet, scheduler or controller-manager runs:
// pods are never created, let alone started, and nothing is garbage
// collected.
type cluster struct {
	cfg        *rest.Config // system:masters
	kubeconfig string       // the same user, for helm
	cs         *kubernetes.Clientset
	dyn        *dynamic.DynamicClient
	disc       *discovery.DiscoveryClient
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	assets := testutil.RequireEnvtest(t)
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	user, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add envtest user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	c := &cluster{cfg: user.Config(), kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}
	// list reads every resource type of the server, several times: at
	// client-go's default 5 requests a second that was a minute of
	// waiting on the client's own rate limiter.
	c.cfg.QPS, c.cfg.Burst = 1000, 1000
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.cs, err = kubernetes.NewForConfig(c.cfg); err != nil {
		t.Fatal(err)
	}
	if c.dyn, err = dynamic.NewForConfig(c.cfg); err != nil {
		t.Fatal(err)
	}
	if c.disc, err = discovery.NewDiscoveryClientForConfig(c.cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// list returns "Kind namespace/name" of every object, of every listable
// resource the server has, that matches the label selector.
func (c *cluster) list(t *testing.T, selector string) []string {
	t.Helper()
	lists, err := c.disc.ServerPreferredResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var objs []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			items, err := c.dyn.Resource(gv.WithResource(r.Name)).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			for _, o := range items.Items {
				objs = append(objs, fmt.Sprintf("%s %s/%s", r.Kind, o.GetNamespace(), o.GetName()))
			}
		}
	}
	slices.Sort(objs)
	return objs
}

// siteObjects is what `helm install skiff charts/skiff -n ns` makes with
// the default values.
func siteObjects(ns string) []string {
	return []string{
		"ClusterRole /skiff-injector-" + ns,
		"ClusterRole /skiff-node-agent-" + ns,
		"ClusterRoleBinding /skiff-injector-" + ns,
		"ClusterRoleBinding /skiff-node-agent-" + ns,
		"DaemonSet " + ns + "/skiff-node-agent",
		"Deployment " + ns + "/skiff-controller",
		"Deployment " + ns + "/skiff-gateway",
		"Deployment " + ns + "/skiff-injector",
		"MutatingWebhookConfiguration /skiff-injector-" + ns,
		"PodDisruptionBudget " + ns + "/skiff-gateway",
		"Role " + ns + "/skiff-controller",
		"Role " + ns + "/skiff-gateway",
		"Role " + ns + "/skiff-injector",
		"Role " + ns + "/skiff-node-agent",
		"RoleBinding " + ns + "/skiff-controller",
		"RoleBinding " + ns + "/skiff-gateway",
		"RoleBinding " + ns + "/skiff-injector",
		"RoleBinding " + ns + "/skiff-node-agent",
		"Service " + ns + "/skiff-controller",
		"Service " + ns + "/skiff-gateway",
		"Service " + ns + "/skiff-gateway-siblings",
		"Service " + ns + "/skiff-injector",
		"ServiceAccount " + ns + "/skiff-controller",
		"ServiceAccount " + ns + "/skiff-gateway",
		"ServiceAccount " + ns + "/skiff-injector",
		"ServiceAccount " + ns + "/skiff-node-agent",
	}
}

// TestInstallTwoSites installs two sites, east and west, into one real
// API server with the helm binary: every manifest passes the server's
// validation and the releases do not collide. A bad value fails the
// install, the service accounts can do what their component needs and no
// more, and uninstalling removes everything.
func TestInstallTwoSites(t *testing.T) {
	helm := requireHelm(t)
	c := startCluster(t)
	helm.kubeconfig = c.kubeconfig
	sites := []string{"east", "west"}

	for _, ns := range sites {
		if _, err := c.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, err := helm.run(t, "install", "skiff", "charts/skiff", "-n", ns, "--set", "site.name="+ns)
		if err != nil {
			t.Fatalf("helm install -n %s: %v\n%s", ns, err, out)
		}
		if !strings.Contains(out, "STATUS: deployed") {
			t.Errorf("helm install -n %s: no STATUS: deployed in\n%s", ns, out)
		}
	}
	var want []string
	for _, ns := range sites {
		want = append(want, siteObjects(ns)...)
	}
	slices.Sort(want)
	if diff := cmp.Diff(c.list(t, partOf), want); diff != "" {
		t.Fatalf("objects after installing east and west (-got +want):\n%s", diff)
	}

	// The custom case's manifests, too, must pass the server's validation
	// (NodePort, several replicas, iptables mode, ...). Its cert-manager
	// objects cannot: envtest has no cert-manager CRDs.
	t.Run("custom values", func(t *testing.T) {
		const ns = "custom"
		if _, err := c.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		values, err := filepath.Abs(filepath.Join("testdata", "custom.values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := helm.run(t, "install", "skiff", "charts/skiff", "-n", ns, "--values", values, "--set", "certManager.enabled=false")
		if err != nil {
			t.Fatalf("helm install -n %s: %v\n%s", ns, err, out)
		}
		if out, err := helm.run(t, "uninstall", "skiff", "-n", ns); err != nil {
			t.Fatalf("helm uninstall -n %s: %v\n%s", ns, err, out)
		}
		if diff := cmp.Diff(c.list(t, partOf), want); diff != "" {
			t.Errorf("objects after installing and uninstalling custom (-got +want):\n%s", diff)
		}
	})

	t.Run("bad value", func(t *testing.T) {
		out, err := helm.run(t, "install", "bad", "charts/skiff", "-n", "east", "--set", "site.name=east", "--set", "injector.failurePolicy=Maybe")
		if err == nil {
			t.Fatalf("helm install with failurePolicy=Maybe succeeded:\n%s", out)
		}
		for _, w := range []string{"values don't meet the specifications of the schema", "at '/injector/failurePolicy'"} {
			if !strings.Contains(out, w) {
				t.Errorf("helm install output lacks %q:\n%s", w, out)
			}
		}
		if diff := cmp.Diff(c.list(t, partOf), want); diff != "" {
			t.Errorf("objects changed by the failed install (-got +want):\n%s", diff)
		}
	})

	t.Run("rbac", func(t *testing.T) { checkRBAC(t, c) })

	for _, ns := range sites {
		out, err := helm.run(t, "uninstall", "skiff", "-n", ns)
		if err != nil {
			t.Fatalf("helm uninstall -n %s: %v\n%s", ns, err, out)
		}
	}
	if diff := cmp.Diff(c.list(t, partOf), []string(nil)); diff != "" {
		t.Errorf("objects left after uninstalling (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(c.list(t, "owner=helm"), []string(nil)); diff != "" {
		t.Errorf("helm release records left after uninstalling (-got +want):\n%s", diff)
	}
}

// checkRBAC calls the API server as each component's service account (by
// impersonation) and checks what is allowed and what is forbidden.
func checkRBAC(t *testing.T, c *cluster) {
	as := func(ns, sa string) *kubernetes.Clientset {
		cfg := rest.CopyConfig(c.cfg)
		cfg.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:" + ns + ":" + sa,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	ctx := t.Context()
	injector := as("east", "skiff-injector")
	controller := as("east", "skiff-controller")
	agent := as("east", "skiff-node-agent")
	gateway := as("east", "skiff-gateway")
	ownConfig := metav1.ListOptions{FieldSelector: "metadata.name=skiff-injector-east"}
	mwc := injector.AdmissionregistrationV1().MutatingWebhookConfigurations()

	for _, tc := range []struct {
		name    string
		allowed bool
		call    func() error
	}{
		{"injector gets its webhook configuration", true, func() error {
			_, err := mwc.Get(ctx, "skiff-injector-east", metav1.GetOptions{})
			return err
		}},
		{"injector lists its webhook configuration by name", true, func() error {
			_, err := mwc.List(ctx, ownConfig)
			return err
		}},
		{"injector watches its webhook configuration by name", true, func() error {
			w, err := mwc.Watch(ctx, ownConfig)
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"injector patches its webhook configuration", true, func() error {
			_, err := mwc.Patch(ctx, "skiff-injector-east", types.MergePatchType, []byte(`{"metadata":{"annotations":{"test.skiff.io/patched":"yes"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"injector lists every webhook configuration", false, func() error {
			_, err := mwc.List(ctx, metav1.ListOptions{})
			return err
		}},
		{"injector gets west's webhook configuration", false, func() error {
			_, err := mwc.Get(ctx, "skiff-injector-west", metav1.GetOptions{})
			return err
		}},
		{"injector creates its certificate Secret", true, func() error {
			_, err := injector.CoreV1().Secrets("east").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "skiff-injector-tls"}}, metav1.CreateOptions{})
			return err
		}},
		{"injector gets its certificate Secret", true, func() error {
			_, err := injector.CoreV1().Secrets("east").Get(ctx, "skiff-injector-tls", metav1.GetOptions{})
			return err
		}},
		{"injector gets another Secret", false, func() error {
			_, err := injector.CoreV1().Secrets("east").Get(ctx, "skiff-site", metav1.GetOptions{})
			return err
		}},
		{"controller lists Services in its namespace", true, func() error {
			_, err := controller.CoreV1().Services("east").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"controller lists EndpointSlices in its namespace", true, func() error {
			_, err := controller.DiscoveryV1().EndpointSlices("east").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"controller creates skiff-status", true, func() error {
			_, err := controller.CoreV1().ConfigMaps("east").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "skiff-status"}}, metav1.CreateOptions{})
			return err
		}},
		{"controller gets another ConfigMap", false, func() error {
			_, err := controller.CoreV1().ConfigMaps("east").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		}},
		{"controller lists Services in west", false, func() error {
			_, err := controller.CoreV1().Services("west").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"node agent lists pods everywhere", true, func() error {
			_, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"node agent reads its own DaemonSet", true, func() error {
			_, err := agent.AppsV1().DaemonSets("east").Get(ctx, "skiff-node-agent", metav1.GetOptions{})
			return err
		}},
		{"node agent reads no other DaemonSet", false, func() error {
			_, err := agent.AppsV1().DaemonSets("east").Get(ctx, "other", metav1.GetOptions{})
			return err
		}},
		{"node agent lists Secrets", false, func() error {
			_, err := agent.CoreV1().Secrets("east").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"gateway lists pods", false, func() error {
			_, err := gateway.CoreV1().Pods("east").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"gateway gets its state Secret", true, func() error {
			_, err := gateway.CoreV1().Secrets("east").Get(ctx, "skiff-site-state", metav1.GetOptions{})
			return err
		}},
		{"gateway updates its state Secret", true, func() error {
			_, err := gateway.CoreV1().Secrets("east").Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "skiff-site-state", Namespace: "east"}}, metav1.UpdateOptions{})
			return err
		}},
		{"gateway gets the site CA", false, func() error {
			_, err := gateway.CoreV1().Secrets("east").Get(ctx, "skiff-site-ca", metav1.GetOptions{})
			return err
		}},
		{"gateway lists Secrets", false, func() error {
			_, err := gateway.CoreV1().Secrets("east").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"gateway creates a Secret", false, func() error {
			_, err := gateway.CoreV1().Secrets("east").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
			return err
		}},
		{"gateway gets west's state Secret", false, func() error {
			_, err := gateway.CoreV1().Secrets("west").Get(ctx, "skiff-site-state", metav1.GetOptions{})
			return err
		}},
	} {
		err := tc.call()
		switch {
		case tc.allowed && err != nil && !apierrors.IsNotFound(err):
			t.Errorf("%s: %v", tc.name, err)
		case !tc.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: got %v, want forbidden", tc.name, err)
		}
	}
}
