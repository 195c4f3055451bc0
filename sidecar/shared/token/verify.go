package token

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// VerifyIntegrity checks that the token is as its site issued it: the ca
// field is a CA certificate, the cert is signed by it ([ErrForeignCA]),
// the key pairs with the cert, the cert is the one for ID, and the
// signature matches every other field ([ErrTampered]).
func (t *Token) VerifyIntegrity() error {
	who := t.who()
	ca, err := pki.ParseCertificate([]byte(t.CA))
	if err != nil {
		return fmt.Errorf("%s: ca: %v: %w", who, err, ErrTampered)
	}
	if !ca.IsCA {
		return fmt.Errorf("%s: ca %q is not a CA certificate: %w", who, ca.Subject.CommonName, ErrForeignCA)
	}
	cert, err := pki.ParseCertificate([]byte(t.Cert))
	if err != nil {
		return fmt.Errorf("%s: cert: %v: %w", who, err, ErrTampered)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("%s: cert %q is not signed by the token's ca %q (%v): %w", who, cert.Subject.CommonName, ca.Subject.CommonName, err, ErrForeignCA)
	}
	if _, err := tls.X509KeyPair([]byte(t.Cert), []byte(t.Key)); err != nil {
		return fmt.Errorf("%s: key does not pair with cert (%v): %w", who, err, ErrTampered)
	}
	if serial := cert.SerialNumber.Text(16); serial != t.ID || (cert.Subject.CommonName != CommonName(t.ID) && cert.Subject.CommonName != MemberCommonName(t.ID)) {
		return fmt.Errorf("%s: id does not match cert %q with serial %s: %w", who, cert.Subject.CommonName, serial, ErrTampered)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s: ca key is %T, not ECDSA: %w", who, ca.PublicKey, ErrForeignCA)
	}
	sig, err := base64.StdEncoding.DecodeString(t.Signature)
	if err != nil {
		return fmt.Errorf("%s: signature is not base64: %w", who, ErrTampered)
	}
	digest := sha256.Sum256(t.signedBytes())
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return fmt.Errorf("%s: signature does not match the token's fields; one of them (site, endpoint, expires, redemptions, ...) was changed after site %s issued it: %w", who, t.Site, ErrTampered)
	}
	return nil
}

// Verify checks the token's integrity, then that it has not expired at
// now ([ErrExpired]).
func (t *Token) Verify(now time.Time) error {
	if err := t.VerifyIntegrity(); err != nil {
		return err
	}
	if !now.Before(t.Expires) {
		return fmt.Errorf("%s expired at %s; ask site %s for a new one: %w", t.who(), t.Expires.UTC().Format(time.RFC3339), t.Site, ErrExpired)
	}
	return nil
}

func (t *Token) who() string {
	return fmt.Sprintf("token %s from site %s", t.ID, t.Site)
}

// ClientTLS returns the TLS configuration for dialing the token's site:
// its CA as the only root, server name [pki.ServerName](Site), and the
// token's client certificate.
func (t *Token) ClientTLS() (*tls.Config, error) {
	cfg, err := pki.ClientTLS([]byte(t.CA), []byte(t.Cert), []byte(t.Key), pki.ServerName(t.Site))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.who(), err)
	}
	return cfg, nil
}
