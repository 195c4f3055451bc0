package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// A link certificate is what a site's CA issues to a site that redeemed
// one of its tokens: it names the redeeming site and the token, and
// certifies the redeeming site's own key (its CA key), so that every later
// connection of the link proves which site it is with the certificate
// alone. Its URIs are skiff://site/<site> and skiff://token/<token id>.
const (
	linkCNPrefix = "link:"
	uriScheme    = "skiff"
)

// ErrNotLinkCert reports a certificate that is not a link certificate.
var ErrNotLinkCert = errors.New("not a link certificate")

// LinkIdentity is what a link certificate says.
type LinkIdentity struct {
	Site    string // the redeeming site
	TokenID string // the token it redeemed (lowercase hex)
}

// IssueLink issues a link certificate for site and its public key pub,
// naming the token tokenID it redeemed, valid for validity. It returns the
// certificate as PEM, followed during a rotation by the cross certificate
// ([CA.Chain]). The caller has validated site and tokenID.
func (ca *CA) IssueLink(site string, pub *ecdsa.PublicKey, tokenID string, validity time.Duration) ([]byte, error) {
	der, err := ca.issueLink(site, pub, tokenID, validity)
	if err != nil {
		return nil, err
	}
	return ca.chainPEM(der), nil
}

// issueLink is IssueLink without the chain: the certificate in DER.
func (ca *CA) issueLink(site string, pub *ecdsa.PublicKey, tokenID string, validity time.Duration) ([]byte, error) {
	if validity <= 0 {
		return nil, errors.New("issue link certificate: validity must be positive")
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: linkCNPrefix + site},
		URIs: []*url.URL{
			{Scheme: uriScheme, Host: "site", Path: "/" + site},
			{Scheme: uriScheme, Host: "token", Path: "/" + tokenID},
		},
		NotBefore:   now.Add(-backdate(validity)),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue link certificate for site %s: %w", site, err)
	}
	return der, nil
}

// ParseLinkIdentity reads the site and token a link certificate names. It
// checks the form only; the chain is the TLS handshake's to verify.
func ParseLinkIdentity(cert *x509.Certificate) (LinkIdentity, error) {
	if !strings.HasPrefix(cert.Subject.CommonName, linkCNPrefix) {
		return LinkIdentity{}, ErrNotLinkCert
	}
	var id LinkIdentity
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme || !strings.HasPrefix(u.Path, "/") {
			continue
		}
		switch u.Host {
		case "site":
			id.Site = u.Path[1:]
		case "token":
			id.TokenID = u.Path[1:]
		}
	}
	if id.Site == "" || id.TokenID == "" || cert.Subject.CommonName != linkCNPrefix+id.Site {
		return LinkIdentity{}, fmt.Errorf("certificate %q: names no site and token: %w", cert.Subject.CommonName, ErrNotLinkCert)
	}
	return id, nil
}

// LinkGraceEnd is when a link certificate stops being admitted at all. A
// link certificate that has expired is still admitted for as long again
// as it lasted, so that a site that was away when it was due for renewal
// (a link renews it over itself, with a third of its life left) links
// again with it and gets a new one at once; its issuer's ledger decides
// as for a valid one (deleting the token's entry revokes it). Its token
// cannot stand in for it: after a CA rotation the token's certificate is
// from a CA no longer trusted.
func LinkGraceEnd(cert *x509.Certificate) time.Time {
	return cert.NotAfter.Add(cert.NotAfter.Sub(cert.NotBefore))
}

// LinkCheckTime is the time at which a link certificate's chain is
// verified at now: now while it is valid, the last second of its life
// once it expired and until LinkGraceEnd; false past that.
func LinkCheckTime(cert *x509.Certificate, now time.Time) (time.Time, bool) {
	switch {
	case now.After(LinkGraceEnd(cert)):
		return time.Time{}, false
	case now.After(cert.NotAfter):
		return cert.NotAfter, true
	}
	return now, true
}

// verifyClient verifies a link port client's certificate chain (rawCerts,
// leaf first) against roots at now, as crypto/tls's
// RequireAndVerifyClientCert does, but admits a link certificate that
// expired less than LinkGraceEnd ago: its chain is verified at the last
// second of its life, and the CAs that issued it must still be valid now.
func verifyClient(rawCerts [][]byte, roots *x509.CertPool, now time.Time) error {
	if len(rawCerts) == 0 {
		return errors.New("no client certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		certs[i] = c
	}
	refused := func(err error) error {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	leaf := certs[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := leaf.Verify(opts)
	if err == nil {
		return nil
	}
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired || !now.After(leaf.NotAfter) {
		return refused(err)
	}
	at, ok := LinkCheckTime(leaf, now)
	if _, lerr := ParseLinkIdentity(leaf); lerr != nil || !ok {
		return refused(err)
	}
	opts.CurrentTime = at
	chains, verr := leaf.Verify(opts)
	if verr != nil {
		return refused(verr)
	}
	for _, c := range chains[0][1:] {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return refused(fmt.Errorf("link certificate's issuer %q is not valid now: %w", c.Subject.CommonName, err))
		}
	}
	return nil
}

// verifyClients makes a server configuration verify client certificates
// with verifyClient against roots (crypto/tls's own verification would
// refuse an expired link certificate before the hello is read).
func verifyClients(cfg *tls.Config, roots *x509.CertPool) *tls.Config {
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		return verifyClient(rawCerts, roots, now)
	}
	return cfg
}
