package state

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/test/testutil/kubetest"
)

// The Secret store against a real kube-apiserver, as the gateway uses it:
// with a service account token and a Role that allows get and update on
// its one Secret, and nothing else.
func TestSecret(t *testing.T) {
	cfg := kubetest.StartEnvtest(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()
	const ns, name = "east", "skiff-site-state"
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway"}}, metav1.CreateOptions{}))
	must(cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{name}, Verbs: []string{"get", "update"}}}}, metav1.CreateOptions{}))
	must(cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "skiff-gateway"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "skiff-gateway"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "skiff-gateway", Namespace: ns}}}, metav1.CreateOptions{}))
	// What the controller creates: labels and an owner the gateway's
	// updates must keep.
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"app.kubernetes.io/part-of": "skiff"}, Annotations: map[string]string{"keep": "me"}},
		Data: map[string][]byte{"other": []byte("not ours")}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "skiff-site-ca"}}, metav1.CreateOptions{}))

	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "skiff-gateway", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CAData) {
		t.Fatal("envtest CA")
	}
	kube := &Kube{Server: cfg.Host, Namespace: ns,
		Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		Token:  func() (string, error) { return tr.Status.Token, nil }}
	if !strings.HasPrefix(kube.Server, "https://") {
		kube.Server = "https://" + kube.Server
	}
	s, err := NewSecret(kube, name)
	if err != nil {
		t.Fatal(err)
	}
	storeContract(t, s)

	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Annotations["keep"] != "me" || sec.Labels["app.kubernetes.io/part-of"] != "skiff" || string(sec.Data["other"]) != "not ours" {
		t.Errorf("updates lost what they did not write: %+v", sec.ObjectMeta)
	}
	if string(sec.Data["links.abc.crt"]) != "cert" {
		t.Errorf("data keys %v, want links.abc.crt", sec.Data)
	}
	// A value written by someone else (the controller) is read.
	sec.Data[DataKey(Tokens, "fromctl.yaml")] = []byte("entry")
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(Tokens, "fromctl.yaml"); err != nil || string(v) != "entry" {
		t.Errorf("Get of the controller's value = %q, %v", v, err)
	}

	// The Role allows this Secret only.
	other, _ := NewSecret(kube, "skiff-site-ca")
	if _, err := other.Get(Tokens, "x.yaml"); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Role must allow") {
		t.Errorf("reading another Secret = %v, want 403 with a hint", err)
	}
	missing, _ := NewSecret(&Kube{Server: kube.Server, Namespace: "west", Client: kube.Client, Token: kube.Token}, name)
	if _, err := missing.Get(Tokens, "x.yaml"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("reading in another namespace = %v, want 403", err)
	}
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(Tokens, "x.yaml"); err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "controller creates it") {
		t.Errorf("reading a deleted Secret = %v, want 404 with a hint", err)
	}
	// Bad names never reach a URL.
	if _, err := NewSecret(kube, "../secrets"); err == nil {
		t.Error("NewSecret(../secrets) accepted")
	}
	if _, err := NewSecret(&Kube{Server: kube.Server, Namespace: "a/b"}, name); err == nil {
		t.Error("namespace a/b accepted")
	}
}
