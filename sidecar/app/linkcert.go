package app

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-io/skiff/sidecar/pki"
	"github.com/skiff-io/skiff/sidecar/token"
)

// linkCertStore keeps the link certificate a peer issued to this site for
// one token, in dataDir/links/<token id>.crt. The token id is lowercase
// hex (token.Parse checks it), so the path is this site's choice, not the
// peer's.
type linkCertStore struct{ path string }

func newLinkCertStore(dataDir string, tok *token.Token) linkCertStore {
	return linkCertStore{path: filepath.Join(dataDir, "links", tok.ID+".crt")}
}

// load returns the stored certificate, nil if there is none.
func (s linkCertStore) load() []byte {
	if s.path == "" {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil
	}
	return b
}

// save writes the certificate atomically into the links dir, which it
// creates private (pki.SecureDir) like the rest of the data dir.
func (s linkCertStore) save(certPEM []byte) error {
	if _, err := pki.SecureDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("save link certificate: %w", err)
	}
	if err := pki.WriteFile(s.path, certPEM); err != nil {
		return fmt.Errorf("save link certificate: %w", err)
	}
	return nil
}
