package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GatewayOwner returns an owner reference to the gateway Service, which
// the Helm chart installs: what the controller creates (proxy Services,
// the identity Secrets, the status ConfigMap) is then garbage-collected
// when the site is uninstalled. Without the Service (not installed by the
// chart, or not yet) it returns nil and the objects are left unowned.
func GatewayOwner(ctx context.Context, r client.Reader, namespace, name string) []metav1.OwnerReference {
	var svc corev1.Service
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &svc); err != nil {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}
}
