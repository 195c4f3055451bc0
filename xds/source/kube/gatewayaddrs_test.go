package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/test/testutil/kubetest"
)

// GatewayAdminAddrs, against a real apiserver, lists every gateway
// replica that is ready and not terminating, sorted: not a pod that is
// not ready, has no IP yet, is being deleted, or that the Service does
// not select.
func TestGatewayAdminAddrs(t *testing.T) {
	cfg := kubetest.StartEnvtest(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "east"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	src := &Source{Client: c, Namespace: ns, GatewayService: "skiff-gateway"}

	if _, err := src.GatewayAdminAddrs(ctx); !apierrors.IsNotFound(err) {
		t.Fatalf("without the gateway Service: %v, want a NotFound error", err)
	}
	must(c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app.kubernetes.io/component": "gateway"},
			Ports: []corev1.ServicePort{{Name: "link", Port: 55671}}},
	}))
	addrs, err := src.GatewayAdminAddrs(ctx)
	if err != nil || addrs == nil || len(addrs) != 0 {
		t.Fatalf("no gateway pods: %q, %v; want an empty list", addrs, err)
	}

	gateway := map[string]string{"app.kubernetes.io/component": "gateway"}
	pod := func(name string, labels map[string]string, ip string, ready bool, finalizers ...string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Finalizers: finalizers},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "gateway", Image: "skiff-router"}}},
		}
		must(c.Create(ctx, p))
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		if ip != "" {
			p.Status.PodIP = ip
			p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		}
		must(c.Status().Update(ctx, p))
		return p
	}
	pod("gw-b", gateway, "10.0.0.9", true)
	pod("gw-a", gateway, "10.0.0.10", true)
	pod("gw-v6", gateway, "fd00::7", true)
	pod("gw-starting", gateway, "10.0.0.11", false)
	pod("gw-no-ip", gateway, "", true)
	pod("other", map[string]string{"app": "backend"}, "10.0.0.12", true)
	leaving := pod("gw-leaving", gateway, "10.0.0.13", true, "skiff.io/test-keep")
	must(c.Delete(ctx, leaving))
	var got corev1.Pod
	must(c.Get(ctx, client.ObjectKeyFromObject(leaving), &got))
	if got.DeletionTimestamp == nil {
		t.Fatal("pod gw-leaving: no deletion timestamp after Delete")
	}

	addrs, err = src.GatewayAdminAddrs(ctx)
	must(err)
	want := []string{"10.0.0.10:15090", "10.0.0.9:15090", "[fd00::7]:15090"}
	if diff := cmp.Diff(addrs, want); diff != "" {
		t.Errorf("GatewayAdminAddrs (-got +want):\n%s", diff)
	}
}
