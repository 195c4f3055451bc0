package kube

import (
	"bytes"
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

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/state"
	"github.com/skiff-io/skiff/sidecar/shared/token"
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

// The CA Secret's skiff.io/ca-rotation annotation rotates the CA: "start"
// keeps the CA as the previous one beside a new one, copies both into the
// gateways' site Secret and issues the sidecars a credential trusting
// both; a second "start" during the rotation is refused and changes
// nothing; "finish" drops the previous CA everywhere.
func TestIdentityRotatesCA(t *testing.T) {
	ctx := context.Background()
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: "east", UID: "gw-uid"}}
	cl := fake.NewClientBuilder().WithObjects(gw).Build()
	rec := &recorder{}
	id := &Identity{
		Client: cl, Reader: cl,
		Namespace: "east", Site: "east", GatewayService: gw.Name, LinkAdvertise: "10.0.0.1:55671",
		GatewaySiteDir: GatewaySiteDir, GatewayDataDir: GatewayDataDir, LinkBind: ":55671",
		Recorder: rec, Log: logr.Discard(), Now: time.Now,
	}
	reconcileOnce := func() {
		t.Helper()
		if _, err := id.Reconcile(ctx, reconcile.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	secret := func(name string) *corev1.Secret {
		t.Helper()
		var s corev1.Secret
		if err := cl.Get(ctx, client.ObjectKey{Namespace: "east", Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	annotate := func(v string) {
		t.Helper()
		s := secret(CASecret)
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[CARotationAnnotation] = v
		if err := cl.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		reconcileOnce()
	}
	sidecarCA := func() string {
		t.Helper()
		tok, err := token.Parse(secret(SidecarSecret).Data[contract.TokenKey])
		if err != nil {
			t.Fatal(err)
		}
		return tok.CA
	}
	req := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "to-west", Namespace: "east", Labels: map[string]string{contract.TypeLabel: "token-request"}}}
	if err := cl.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	reconcileOnce()
	first := secret(CASecret).Data
	issued, err := token.Parse(secret("to-west").Data[contract.TokenKey])
	if err != nil {
		t.Fatal(err)
	}
	// The token issued before the rotation keeps its ledger entry (a
	// deleted entry revokes the links made with it) through the rotation.
	entryKept := func(when string) {
		t.Helper()
		if _, ok := secret(StateSecret).Data[state.DataKey(state.Tokens, token.EntryName(issued.ID))]; !ok {
			t.Errorf("%s: the ledger entry of the token issued before the rotation is gone", when)
		}
	}
	entryKept("before")

	annotate("start")
	ca := secret(CASecret)
	if got := ca.Annotations[CARotationAnnotation]; got != "started" || ca.Annotations[CARotationAtAnnotation] == "" {
		t.Errorf("annotations after start: %v", ca.Annotations)
	}
	if !bytes.Equal(ca.Data[pki.CAPrevCertFile], first[pki.CACertFile]) || !bytes.Equal(ca.Data[pki.CAPrevKeyFile], first[pki.CAKeyFile]) {
		t.Error("the CA before the rotation is not the previous one")
	}
	if bytes.Equal(ca.Data[pki.CACertFile], first[pki.CACertFile]) {
		t.Error("no new CA")
	}
	rotating, err := pki.ParseCAWithPrevious(ca.Data[pki.CACertFile], ca.Data[pki.CAKeyFile], ca.Data[pki.CAPrevCertFile], ca.Data[pki.CAPrevKeyFile])
	if err != nil {
		t.Fatal(err)
	}
	site := secret(SiteSecret).Data
	for _, k := range []string{pki.CACertFile, pki.CAKeyFile, pki.CAPrevCertFile, pki.CAPrevKeyFile} {
		if !bytes.Equal(site[k], ca.Data[k]) {
			t.Errorf("the gateways' site Secret has another %s than the CA Secret", k)
		}
	}
	if got := sidecarCA(); got != string(rotating.BundlePEM()) {
		t.Errorf("the sidecars' credential trusts %d bytes of CAs, want both CAs", len(got))
	}

	entryKept("after start")
	annotate("start")
	if again := secret(CASecret); !bytes.Equal(again.Data[pki.CACertFile], ca.Data[pki.CACertFile]) || !bytes.Equal(again.Data[pki.CAPrevCertFile], ca.Data[pki.CAPrevCertFile]) {
		t.Error("a second start during the rotation changed the CAs")
	}
	if n := len(rec.events); n == 0 || rec.events[n-1].reason != "CARotationRefused" {
		t.Errorf("events %v, want a CARotationRefused last", rec.events)
	}

	annotate("finish")
	entryKept("after finish")
	done := secret(CASecret)
	if got := done.Annotations[CARotationAnnotation]; got != "finished" {
		t.Errorf("annotation after finish: %q", got)
	}
	if _, ok := done.Data[pki.CAPrevCertFile]; ok || !bytes.Equal(done.Data[pki.CACertFile], ca.Data[pki.CACertFile]) {
		t.Error("finish did not keep the new CA alone")
	}
	site = secret(SiteSecret).Data
	if _, ok := site[pki.CAPrevCertFile]; ok {
		t.Error("the gateways' site Secret still has the previous CA")
	}
	if got := sidecarCA(); got != string(done.Data[pki.CACertFile]) {
		t.Errorf("after finish the sidecars' credential trusts %d bytes of CAs, want the new CA alone", len(got))
	}
}

// racingWriter is a client whose Secret updates, once armed, lose a race
// once: another writer (a gateway saving its link certificate into the
// state Secret) updates the same Secret just before, so the API server
// answers Conflict to the reconciler's stale copy.
type racingWriter struct {
	client.Client
	armed, raced bool
}

func (c *racingWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if s, ok := obj.(*corev1.Secret); ok && c.armed && !c.raced {
		c.raced = true
		var cur corev1.Secret
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(s), &cur); err != nil {
			return err
		}
		metav1.SetMetaDataAnnotation(&cur.ObjectMeta, "test.skiff.io/other-writer", "was here")
		if err := c.Client.Update(ctx, &cur); err != nil {
			return err
		}
	}
	return c.Client.Update(ctx, obj, opts...)
}

// An update that loses a race with another writer is read again later,
// without an error (controller-runtime logs every error a reconcile
// returns as "Reconciler error"; the end-to-end scenario counts such
// lines), and the next reconcile keeps both writes.
func TestIdentityRequeuesALostRace(t *testing.T) {
	ctx := context.Background()
	gw := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway", Namespace: "east", UID: "gw-uid"}}
	cl := fake.NewClientBuilder().WithObjects(gw).Build()
	rw := &racingWriter{Client: cl}
	id := &Identity{
		Client: rw, Reader: cl,
		Namespace: "east", Site: "east", GatewayService: gw.Name, LinkAdvertise: "10.0.0.1:55671",
		GatewaySiteDir: GatewaySiteDir, GatewayDataDir: GatewayDataDir, LinkBind: ":55671",
		Recorder: nopRecorder{}, Log: logr.Discard(), Now: time.Now,
	}
	if _, err := id.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	// An owner the reconciler removes: its next reconcile updates the CA
	// Secret, and that update loses the race.
	var s corev1.Secret
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "east", Name: CASecret}, &s); err != nil {
		t.Fatal(err)
	}
	s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: gw.Name, UID: gw.UID}}
	if err := cl.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	rw.armed = true
	res, err := id.Reconcile(ctx, reconcile.Request{})
	if !rw.raced {
		t.Fatal("no Secret update raced")
	}
	if err != nil {
		t.Fatalf("a lost race returned %v, which controller-runtime logs as an error", err)
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("a lost race is not reconciled again: %+v", res)
	}
	if _, err := id.Reconcile(ctx, reconcile.Request{}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "east", Name: CASecret}, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 0 || s.Annotations["test.skiff.io/other-writer"] != "was here" {
		t.Errorf("after the race: owners %+v, annotations %v; want no owner and the other writer's annotation", s.OwnerReferences, s.Annotations)
	}
}
