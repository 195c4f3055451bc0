package app

import (
	"fmt"

	"github.com/skiff-io/skiff/sidecar/shared/state"
)

// linkCertStore keeps the link certificate a peer issued to this site for
// one token: <token id>.crt in the store's links bucket
// (dataDir/links/<token id>.crt, or the state Secret's
// links.<token id>.crt). The token id is lowercase hex (token.Parse
// checks it), so the name is this site's choice, not the peer's.
type linkCertStore struct {
	store   state.Store
	tokenID string
}

func (s linkCertStore) name() string { return s.tokenID + ".crt" }

// loadCA returns the trust bundle the peer sent when it rotated its CA
// (<token id>.ca beside the certificate), nil if there is none.
func (s linkCertStore) loadCA() ([]byte, error) {
	b, err := s.store.Get(state.Links, s.tokenID+".ca")
	if err != nil {
		return nil, fmt.Errorf("load the peer's CA bundle: %w", err)
	}
	return b, nil
}

// saveCA keeps the peer's trust bundle, replacing the one before.
func (s linkCertStore) saveCA(bundle []byte) error {
	err := s.store.Update(state.Links, s.tokenID+".ca", func([]byte) ([]byte, error) { return bundle, nil })
	if err != nil {
		return fmt.Errorf("save the peer's CA bundle: %w", err)
	}
	return nil
}

// load returns the stored certificate, nil if there is none.
func (s linkCertStore) load() ([]byte, error) {
	b, err := s.store.Get(state.Links, s.name())
	if err != nil {
		return nil, fmt.Errorf("load link certificate: %w", err)
	}
	return b, nil
}

// save keeps the certificate, replacing the one before.
func (s linkCertStore) save(certPEM []byte) error {
	err := s.store.Update(state.Links, s.name(), func([]byte) ([]byte, error) { return certPEM, nil })
	if err != nil {
		return fmt.Errorf("save link certificate: %w", err)
	}
	return nil
}
