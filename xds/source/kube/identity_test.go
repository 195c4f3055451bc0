package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/skiff-io/skiff/sidecar/pki"
)

// vanishingService is a reader whose gateway Service is there for the
// first Get and gone after: `helm uninstall` deleting it while a reconcile
// runs.
type vanishingService struct {
	client.Reader
	gets int
}

func (r *vanishingService) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Service); ok {
		if r.gets++; r.gets > 1 {
			return apierrors.NewNotFound(corev1.Resource("services"), key.Name)
		}
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

type nopRecorder struct{}

func (nopRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// The Secrets derived from the others (the site Secret) are owned by the
// gateway Service the reconciler saw at the start, even when the Service
// goes while it runs: they must not outlive `helm uninstall`. The site's
// identity and memory (CA, state, the sidecars' credential) have no
// owner: a reinstall keeps them.
func TestIdentityOwners(t *testing.T) {
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: "east", UID: "gw-uid"}}
	cl := fake.NewClientBuilder().WithObjects(gw).Build()
	id := &Identity{
		Client: cl, Reader: &vanishingService{Reader: cl},
		Namespace: "east", Site: "east", GatewayService: gw.Name, LinkAdvertise: "10.0.0.1:55671",
		GatewaySiteDir: GatewaySiteDir, GatewayDataDir: GatewayDataDir, LinkBind: ":55671",
		Recorder: nopRecorder{}, Log: logr.Discard(), Now: time.Now,
	}
	if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var secrets corev1.SecretList
	if err := cl.List(context.Background(), &secrets, client.InNamespace("east")); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range secrets.Items {
		names[s.Name] = true
		switch {
		case s.Name == SiteSecret && (len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != gw.UID):
			t.Errorf("secret %s owned by %+v, want the gateway Service %s", s.Name, s.OwnerReferences, gw.UID)
		case s.Name != SiteSecret && len(s.OwnerReferences) != 0:
			t.Errorf("secret %s owned by %+v, want no owner (kept through uninstalls)", s.Name, s.OwnerReferences)
		}
	}
	for _, want := range []string{CASecret, StateSecret, SidecarSecret, SiteSecret} {
		if !names[want] {
			t.Errorf("secret %s not created (have %v)", want, names)
		}
	}
}

// A CA and sidecar credential that an earlier version made owned by the
// gateway Service lose the owner, so that the next uninstall keeps them;
// the CA itself is the same.
func TestIdentityDisownsKeptSecrets(t *testing.T) {
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: "east", UID: "gw-uid"}}
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: gw.Name, UID: gw.UID}}
	cl := fake.NewClientBuilder().WithObjects(gw).Build()
	id := &Identity{
		Client: cl, Reader: cl,
		Namespace: "east", Site: "east", GatewayService: gw.Name, LinkAdvertise: "10.0.0.1:55671",
		GatewaySiteDir: GatewaySiteDir, GatewayDataDir: GatewayDataDir, LinkBind: ":55671",
		Recorder: nopRecorder{}, Log: logr.Discard(), Now: time.Now,
	}
	if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	var before corev1.Secret
	for _, name := range []string{CASecret, SidecarSecret} {
		var s corev1.Secret
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "east", Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		s.OwnerReferences = owner
		if err := cl.Update(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
		if name == CASecret {
			before = s
		}
	}
	if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CASecret, SidecarSecret} {
		var s corev1.Secret
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "east", Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		if len(s.OwnerReferences) != 0 {
			t.Errorf("secret %s still owned by %+v", name, s.OwnerReferences)
		}
		if name == CASecret && string(s.Data["ca.crt"]) != string(before.Data["ca.crt"]) {
			t.Errorf("the CA changed")
		}
	}
}

type recordedEvent struct{ reason, note string }

type recorder struct{ events []recordedEvent }

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, note string, args ...any) {
	r.events = append(r.events, recordedEvent{reason, fmt.Sprintf(note, args...)})
}

// Thirty days before the site CA expires, the controller raises a
// Warning Event on the gateway Service, once a day.
func TestIdentityWarnsOfCAExpiry(t *testing.T) {
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: "east", UID: "gw-uid"}}
	cl := fake.NewClientBuilder().WithObjects(gw).Build()
	rec := &recorder{}
	now := time.Now()
	id := &Identity{
		Client: cl, Reader: cl,
		Namespace: "east", Site: "east", GatewayService: gw.Name, LinkAdvertise: "10.0.0.1:55671",
		GatewaySiteDir: GatewaySiteDir, GatewayDataDir: GatewayDataDir, LinkBind: ":55671",
		Recorder: rec, Log: logr.Discard(), Now: func() time.Time { return now },
	}
	if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.events) != 0 {
		t.Fatalf("a new CA raised %v", rec.events)
	}
	var s corev1.Secret
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "east", Name: CASecret}, &s); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(s.Data[pki.CACertFile], s.Data[pki.CAKeyFile])
	if err != nil {
		t.Fatal(err)
	}
	now = ca.Cert.NotAfter.Add(-29 * 24 * time.Hour)
	for range 2 {
		if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.events) != 1 || rec.events[0].reason != "CertificateExpiring" || !strings.Contains(rec.events[0].note, "expires") {
		t.Fatalf("events %v, want one CertificateExpiring", rec.events)
	}
	now = now.Add(24 * time.Hour)
	if _, err := id.Reconcile(context.Background(), reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.events) != 2 {
		t.Errorf("the next day: %d events, want a second", len(rec.events))
	}
}
