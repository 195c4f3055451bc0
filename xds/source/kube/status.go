package kube

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// StatusConfigMap is the ConfigMap the controller keeps the site's status
// in.
const StatusConfigMap = "skiff-status"

// MaxStatusServices bounds the services listed in the status ConfigMap, so
// that it stays far below etcd's object size limit however large the
// network grows; the counts are always complete.
const MaxStatusServices = 500

// SiteStatus is the JSON document in the status ConfigMap (key
// status.json): small, replaced in place, written only when it changes.
type SiteStatus struct {
	Site     string          `json:"site"`
	Version  string          `json:"version"`
	Sites    []model.Site    `json:"sites"`
	Counts   StatusCounts    `json:"counts"`
	Services []StatusService `json:"services,omitempty"`
	// Truncated is how many services were left out of Services.
	Truncated int `json:"truncated,omitempty"`
}

// StatusCounts are totals over the whole table.
type StatusCounts struct {
	Sites, Services, LocalEndpoints, ReadyLocalEndpoints int
}

// StatusService is one service in the status.
type StatusService struct {
	Name    string   `json:"name"`
	Routing string   `json:"routing"`
	Ready   int      `json:"readyLocal"`
	Remote  []string `json:"remoteSites,omitempty"`
}

// Status summarises a table whose content hash is version.
func Status(t *model.Table, version string) SiteStatus {
	st := SiteStatus{Site: t.Site, Version: version, Sites: t.Sites}
	st.Counts.Sites = len(t.Sites)
	st.Counts.Services = len(t.Services)
	for i := range t.Services {
		s := &t.Services[i]
		st.Counts.LocalEndpoints += len(s.Endpoints)
		st.Counts.ReadyLocalEndpoints += s.ReadyEndpoints()
		if len(st.Services) == MaxStatusServices {
			st.Truncated++
			continue
		}
		ss := StatusService{Name: s.Key(), Routing: string(s.Routing), Ready: s.ReadyEndpoints()}
		for _, r := range s.Remote {
			ss.Remote = append(ss.Remote, r.Site)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// WriteStatus creates or replaces the status ConfigMap when its content
// differs. It reads through r (the API server, not a cache: the
// controller may read only its own ConfigMap, by name) and writes with c.
func WriteStatus(ctx context.Context, r client.Reader, c client.Writer, namespace string, owner []metav1.OwnerReference, st SiteStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	var cm corev1.ConfigMap
	err = r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: StatusConfigMap}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: StatusConfigMap, Namespace: namespace, Labels: map[string]string{ManagedByLabel: ManagedBy, PartOfLabel: "skiff"}, OwnerReferences: owner},
			Data:       map[string]string{"status.json": string(b)},
		}
		if err := c.Create(ctx, &cm); err != nil {
			return fmt.Errorf("create status configmap: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get status configmap: %w", err)
	}
	if cm.Data["status.json"] == string(b) {
		return nil
	}
	cm.Data = map[string]string{"status.json": string(b)}
	if err := c.Update(ctx, &cm); err != nil {
		return fmt.Errorf("update status configmap: %w", err)
	}
	return nil
}
