package app

import (
	"fmt"
	"os"
	"path/filepath"

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

// save writes the certificate atomically (a certificate, no key: 0644 would
// do, but the data dir is private anyway).
func (s linkCertStore) save(certPEM []byte) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save link certificate: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("save link certificate: %w", err)
	}
	_, err = f.Write(certPEM)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save link certificate: %w", err)
	}
	return nil
}
