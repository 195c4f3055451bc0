package app

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// credentialsSite makes the site description of a sidecar that has no
// site file: its site and its one link (to the site's gateway) come from
// the token in dir. It has no data dir (a sidecar runs on a read-only
// root), so its token must not have expired: the controller renews it.
func credentialsSite(dir string) (*sitefile.Site, error) {
	path := filepath.Join(dir, "token.yaml")
	tok, err := token.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials-dir: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials-dir: %w", err)
	}
	return &sitefile.Site{
		Path:  abs,
		Name:  tok.Site,
		Links: []sitefile.Link{{Token: abs, Cost: 1, Line: 1}},
	}, nil
}

// credentialReloader returns a LinkSpec.ClientTLS that reads the token at
// path again when the file changed (the kubelet swaps a renewed Secret
// in), so that a sidecar that runs longer than its credential's renewal
// dials with the new one; links already up stay as they are.
func credentialReloader(path string, log logr.Logger) func() (*tls.Config, error) {
	var mu sync.Mutex
	var lastID string
	var last *tls.Config
	return func() (*tls.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		tok, err := token.Load(path)
		if err != nil {
			return nil, err
		}
		if tok.ID == lastID && last != nil {
			return last, nil
		}
		cfg, err := tok.ClientTLS()
		if err != nil {
			return nil, err
		}
		if lastID != "" {
			log.Info("credential renewed; new connections to the gateway use it", "token", tok.ID, "expires", tok.Expires.UTC().Format(time.RFC3339))
		}
		lastID, last = tok.ID, cfg
		return cfg, nil
	}
}
