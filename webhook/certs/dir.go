package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// DirSource serves tls.crt and tls.key from a directory (a mounted
// cert-manager Secret) and reloads them when they change.
type DirSource struct {
	w *certwatcher.CertWatcher
}

// NewDirSource loads the certificate in dir; it fails when there is none.
func NewDirSource(dir string) (*DirSource, error) {
	w, err := certwatcher.New(filepath.Join(dir, KeyTLSCert), filepath.Join(dir, KeyTLSKey))
	if err != nil {
		return nil, fmt.Errorf("load certificate from %s: %w", dir, err)
	}
	w.RegisterCallback(func(c tls.Certificate) {
		if c.Leaf != nil {
			servingNotAfter.Set(float64(c.Leaf.NotAfter.Unix()))
		}
	})
	if c, err := w.GetCertificate(nil); err == nil && c.Leaf != nil {
		servingNotAfter.Set(float64(c.Leaf.NotAfter.Unix()))
	}
	return &DirSource{w: w}, nil
}

// GetCertificate is for tls.Config.
func (d *DirSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return d.w.GetCertificate(hello)
}

// Start watches the files until ctx ends.
func (d *DirSource) Start(ctx context.Context) error {
	log.FromContext(ctx).WithName("certs").Info("watching certificate directory")
	return d.w.Start(ctx)
}

// NeedLeaderElection is false: every replica serves.
func (d *DirSource) NeedLeaderElection() bool { return false }
