package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
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
