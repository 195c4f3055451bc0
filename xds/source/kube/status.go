package kube

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// WriteStatus creates or replaces the status ConfigMap when its content
// differs. It reads through r (the API server, not a cache: the
// controller may read only its own ConfigMap, by name) and writes with c.
func WriteStatus(ctx context.Context, r client.Reader, c client.Writer, namespace string, owner []metav1.OwnerReference, st model.SiteStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	var cm corev1.ConfigMap
	err = r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: contract.StatusConfigMap}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: contract.StatusConfigMap, Namespace: namespace, Labels: map[string]string{ManagedByLabel: ManagedBy, PartOfLabel: "skiff"}, OwnerReferences: owner},
			Data:       map[string]string{contract.StatusKey: string(b)},
		}
		if err := c.Create(ctx, &cm); err != nil {
			return fmt.Errorf("create status configmap: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get status configmap: %w", err)
	}
	if cm.Data[contract.StatusKey] == string(b) {
		return nil
	}
	cm.Data = map[string]string{contract.StatusKey: string(b)}
	if err := c.Update(ctx, &cm); err != nil {
		return fmt.Errorf("update status configmap: %w", err)
	}
	return nil
}
