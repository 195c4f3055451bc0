package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Defaults of SecretOptions.
const (
	DefaultCALifetime    = 5 * 365 * 24 * time.Hour
	DefaultLeafLifetime  = 90 * 24 * time.Hour
	DefaultPublishDelay  = 2 * time.Minute
	DefaultCheckInterval = 5 * time.Minute
)

// ErrNoCertificate is returned by GetCertificate before a certificate is
// loaded.
var ErrNoCertificate = errors.New("no serving certificate loaded yet")

// SecretOptions configure a SecretManager.
type SecretOptions struct {
	Namespace  string
	SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle
	// the manager keeps current; empty: none.
	WebhookConfigName string
	Spec              Spec
	// CheckInterval between checks of the Secret and the caBundle.
	CheckInterval time.Duration
	// Reader reads without a cache (manager.GetAPIReader()), so a lost
	// create race is resolved by the next read.
	Reader client.Reader
	Writer client.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Labels are set on a Secret the manager creates.
	Labels map[string]string
	// Owner, when it returns references, owns a Secret the manager
	// creates, so that uninstalling removes it (the injector's webhook
	// configuration).
	Owner func(ctx context.Context) []metav1.OwnerReference
	// Log receives the manager's lines (default: ctrl.Log named "certs").
	Log logr.Logger
}

// SecretManager keeps the injector's certificate Secret, the caBundle and
// the served certificate in step. It is a manager.Runnable.
type SecretManager struct {
	o    SecretOptions
	kick chan struct{}
	cert atomic.Pointer[tls.Certificate]

	mu           sync.Mutex
	caBundle     []byte    // trusted CAs last published
	trustedCA    string    // serial of the signing CA last seen in every caBundle
	trustedSince time.Time // when trustedCA was first seen there
}

// NewSecretManager checks o and returns a manager that serves nothing until
// its first Sync.
func NewSecretManager(o SecretOptions) (*SecretManager, error) {
	if o.Namespace == "" || o.SecretName == "" {
		return nil, fmt.Errorf("certificate secret needs a namespace and a name")
	}
	if err := o.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("certificate spec: %w", err)
	}
	if o.Reader == nil || o.Writer == nil {
		return nil, fmt.Errorf("certificate secret needs a reader and a writer")
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log.GetSink() == nil {
		o.Log = log.Log.WithName("certs")
	}
	return &SecretManager{o: o, kick: make(chan struct{}, 1)}, nil
}

// GetCertificate is for tls.Config: the current leaf, read atomically.
func (m *SecretManager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cert.Load()
	if c == nil {
		return nil, ErrNoCertificate
	}
	return c, nil
}

// CABundle returns the trusted CAs (PEM) last published to the webhooks.
func (m *SecretManager) CABundle() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.caBundle
}

// Kick asks for a check now (the Secret changed, say).
func (m *SecretManager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is false: every replica serves, and replicas agree
// through the Secret's resourceVersion.
func (m *SecretManager) NeedLeaderElection() bool { return false }

// Start checks every CheckInterval (and on Kick) until ctx ends. Errors are
// logged and retried at the next check.
func (m *SecretManager) Start(ctx context.Context) error {
	lg := m.o.Log
	ctx = log.IntoContext(ctx, lg)
	t := time.NewTicker(m.o.CheckInterval)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			lg.Error(err, "certificate check failed; retrying at the next check", "secret", m.o.SecretName)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
	}
}

// Sync loads the Secret, publishes its CAs, serves its leaf, and writes a
// renewed bundle when one is due. A write race lost to another replica
// (AlreadyExists, Conflict) is resolved by reloading.
func (m *SecretManager) Sync(ctx context.Context) error {
	const attempts = 5
	ctx = log.IntoContext(ctx, m.o.Log)
	for range attempts {
		err := m.syncOnce(ctx)
		if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
			log.FromContext(ctx).V(1).Info("another replica wrote the certificate secret first; reloading", "error", err.Error())
			continue
		}
		return err
	}
	return fmt.Errorf("certificate secret %s/%s: still losing write races after %d attempts", m.o.Namespace, m.o.SecretName, attempts)
}

func (m *SecretManager) syncOnce(ctx context.Context) error {
	lg := log.FromContext(ctx)
	now := m.o.Now()
	key := client.ObjectKey{Namespace: m.o.Namespace, Name: m.o.SecretName}
	var sec corev1.Secret
	exists := true
	if err := m.o.Reader.Get(ctx, key, &sec); apierrors.IsNotFound(err) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("get secret %s: %w", key, err)
	}
	var cur *Bundle
	if exists {
		b, err := ParseBundle(sec.Data)
		if err != nil {
			lg.Info("certificate secret unusable; replacing it", "secret", key.String(), "error", err.Error())
		} else {
			cur = b
			m.publish(ctx, cur, now)
			m.serve(lg, cur, now)
		}
	}

	next, changes, err := Plan(cur, m.o.Spec, now, m.trusted(cur))
	if err != nil {
		return fmt.Errorf("plan certificates: %w", err)
	}
	if len(changes) == 0 {
		return nil
	}
	data, err := next.Data()
	if err != nil {
		return err
	}
	if exists {
		if sec.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("secret %s has type %s, want %s: delete it and the injector recreates it", key, sec.Type, corev1.SecretTypeTLS)
		}
		sec.Data = data
		if err := m.o.Writer.Update(ctx, &sec); err != nil {
			return fmt.Errorf("update secret %s: %w", key, err)
		}
	} else {
		var owner []metav1.OwnerReference
		if m.o.Owner != nil {
			owner = m.o.Owner(ctx)
		}
		sec = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: m.o.Labels, OwnerReferences: owner},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if err := m.o.Writer.Create(ctx, &sec); err != nil {
			return fmt.Errorf("create secret %s: %w", key, err)
		}
	}
	for _, c := range changes {
		switch c {
		case ChangeCreated:
			rotations.WithLabelValues("ca").Inc()
			rotations.WithLabelValues("leaf").Inc()
		case ChangeCARotated:
			rotations.WithLabelValues("ca").Inc()
		case ChangeLeafRenewed:
			rotations.WithLabelValues("leaf").Inc()
		}
	}
	lg.Info("certificate secret written", "secret", key.String(), "changes", changes,
		"caNotAfter", next.CAs[0].NotAfter, "leafNotAfter", next.Leaf.NotAfter, "trustedCAs", len(next.CAs))
	m.publish(ctx, next, now)
	m.serve(lg, next, now)
	return nil
}

// publish makes every webhook trust b's CAs and records since when the
// signing CA has been trusted.
func (m *SecretManager) publish(ctx context.Context, b *Bundle, now time.Time) {
	lg := log.FromContext(ctx)
	ok := true
	if m.o.WebhookConfigName != "" {
		n, err := EnsureCABundle(ctx, m.o.Reader, m.o.Writer, m.o.WebhookConfigName, b.CABundle())
		switch {
		case errors.Is(err, ErrNoWebhookConfig):
			// Nobody calls a webhook that is not configured: nothing to protect.
			lg.V(1).Info("webhook configuration not found; caBundle not set", "webhookConfig", m.o.WebhookConfigName)
		case err != nil:
			lg.Error(err, "caBundle not updated; retrying at the next check", "webhookConfig", m.o.WebhookConfigName)
			ok = false
		case n > 0:
			lg.Info("caBundle updated", "webhookConfig", m.o.WebhookConfigName, "webhooks", n, "trustedCAs", len(b.CAs))
		}
	}
	serial := b.CAs[0].SerialNumber.String()
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.caBundle = b.CABundle()
	}
	switch {
	case ok && m.trustedCA != serial:
		m.trustedCA, m.trustedSince = serial, now
	case !ok && m.trustedCA != serial:
		m.trustedSince = time.Time{}
	}
}

// trusted is since when b's signing CA has been in every caBundle.
func (m *SecretManager) trusted(b *Bundle) time.Time {
	if b == nil {
		return time.Time{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.trustedCA != b.CAs[0].SerialNumber.String() {
		return time.Time{}
	}
	return m.trustedSince
}

// serve swaps in b's leaf when it is valid and differs from the one served.
func (m *SecretManager) serve(lg logr.Logger, b *Bundle, now time.Time) {
	if now.After(b.Leaf.NotAfter) || !chainsTo(b.Leaf, b.CAs) {
		return
	}
	if cur := m.cert.Load(); cur != nil && cur.Leaf.Equal(b.Leaf) {
		return
	}
	c, err := b.TLSCertificate()
	if err != nil {
		return
	}
	m.cert.Store(c)
	servingNotAfter.Set(float64(b.Leaf.NotAfter.Unix()))
	lg.Info("serving certificate", "serial", b.Leaf.SerialNumber.Text(16), "notAfter", b.Leaf.NotAfter, "issuer", b.Leaf.Issuer.CommonName)
}
