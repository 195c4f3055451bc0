package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ServerTLS returns the link listener's TLS configuration: TLS 1.3 only,
// serving cert, and client certificates required and verified against the
// site CA ([CA.Pool]: with the previous CA during a rotation), a link
// certificate also within [LinkGraceEnd] after it expired. For a CA
// that changes while the listener runs, see [Authority.ServerTLS].
func ServerTLS(ca *CA, cert tls.Certificate) *tls.Config {
	return verifyClients(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
	}, ca.Pool())
}

// StrictServerTLS is ServerTLS without the link port's grace for an
// expired link certificate: crypto/tls verifies client certificates
// against the site CA, and refuses every expired one. It is what the
// site's other servers (the controller's xDS port) serve with.
func StrictServerTLS(ca *CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
}

// ClientTLS returns a link dialer's TLS configuration: TLS 1.3 only, the
// peer verified against caPEM (every certificate in it: a site's trust
// bundle holds two during a rotation) under serverName, and the client
// certificate certPEM (with the rest of its chain, if any) with its key
// keyPEM.
func ClientTLS(caPEM, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("client TLS: no CA certificate in the CA PEM")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: serverName,
		// Always present the certificate, even to a server that asks for
		// another CA's: it then says why it refuses instead of reporting a
		// missing certificate.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}, nil
}

// SiblingLinkID is the token id a sibling certificate names: no token,
// the gateways of one site share its key.
const SiblingLinkID = "sibling"

// siblingValidity is how long a sibling certificate lasts; one is issued
// for every connection.
const siblingValidity = 24 * time.Hour

// SiblingTLS returns the TLS configuration with which a gateway of site
// dials another gateway of the same site (a sibling): the peer verified
// against the site CA ([CA.Pool]) under the site's server name, and, for
// every connection, a fresh link certificate for site that certifies the
// site key (the CA key) itself, with its chain ([CA.Chain]). Only a
// holder of the site key can have one; the accepting gateway takes such
// a certificate as a sibling's. For a CA that changes while the gateway
// runs, see [Authority.SiblingTLS].
func (ca *CA) SiblingTLS(site string) *tls.Config {
	return NewAuthority(ca).SiblingTLS(site)
}

// RenewingServerTLS is ServerTLS for a serving certificate that is issued
// again (by issue) once two thirds of its life are over, so that a
// gateway that runs for longer than its certificate lasts keeps serving;
// cert is the first one. A failed renewal keeps the certificate it has
// and is tried again at the next handshake. For a CA that changes while
// the listener runs, see [Authority.ServerTLS].
func RenewingServerTLS(ca *CA, cert tls.Certificate, issue func() (tls.Certificate, error)) *tls.Config {
	cfg := ServerTLS(ca, cert)
	s := &servingCert{
		issue:   func(*CA) (tls.Certificate, error) { return issue() },
		ca:      ca,
		cur:     &cert,
		renewAt: renewTime(&cert),
	}
	cfg.Certificates = nil
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.get(ca) }
	return cfg
}

// servingCert is a serving certificate issued again when two thirds of
// its life are over, or when it is asked for from another CA.
type servingCert struct {
	issue func(*CA) (tls.Certificate, error)

	mu      sync.Mutex
	ca      *CA              // the CA cur was issued from
	cur     *tls.Certificate // nil until the first issue
	renewAt time.Time        // zero: never
}

// get returns the certificate to serve for ca, issuing one if it has
// none, none from ca, or one due for renewal. A failed issue keeps the
// certificate it has (and is tried again at the next call); without one
// it is an error.
func (s *servingCert) get(ca *CA) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.ca == ca && (s.renewAt.IsZero() || time.Now().Before(s.renewAt)) {
		return s.cur, nil
	}
	next, err := s.issue(ca)
	if err != nil {
		if s.cur != nil {
			return s.cur, nil
		}
		return nil, fmt.Errorf("issue serving certificate: %w", err)
	}
	s.ca, s.cur, s.renewAt = ca, &next, renewTime(&next)
	return s.cur, nil
}

// renewTime is when two thirds of a certificate's life are over (zero if
// it does not parse: never).
func renewTime(c *tls.Certificate) time.Time {
	if len(c.Certificate) == 0 {
		return time.Time{}
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return time.Time{}
	}
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// verifyServer verifies the certificate chain a server presented for
// server authentication under name against roots, as crypto/tls does:
// errors are [*tls.CertificateVerificationError].
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server presented no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
