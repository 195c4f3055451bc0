package pki

import (
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
)

// Authority is the site CA of a running gateway, which a rotation
// replaces while it runs ([Authority.Set]): the TLS configurations it
// makes take the CA current at each handshake. It is safe for concurrent
// use.
type Authority struct {
	ca atomic.Pointer[CA]
}

// errNoCA fails a handshake of an Authority without a CA.
var errNoCA = errors.New("no site CA")

// NewAuthority returns an Authority whose current CA is ca.
func NewAuthority(ca *CA) *Authority {
	a := &Authority{}
	a.ca.Store(ca)
	return a
}

// CA returns the current CA.
func (a *Authority) CA() *CA { return a.ca.Load() }

// Set makes ca the current CA: a rotation started (ca with Prev) or
// finished (ca without). Handshakes that begin after it use ca.
func (a *Authority) Set(ca *CA) { a.ca.Store(ca) }

// current returns the current CA, or errNoCA.
func (a *Authority) current() (*CA, error) {
	if ca := a.CA(); ca != nil {
		return ca, nil
	}
	return nil, errNoCA
}

// ServerTLS returns the link listener's configuration (TLS 1.3, client
// certs required and verified against the current CA's Pool, as
// [ServerTLS] verifies them), serving
// the certificate issue makes from the current CA: issued at first use,
// again once two thirds of its life are over, and again as soon as the CA
// changed. A failed issue keeps serving the certificate it has.
//
// Each handshake takes the configuration GetConfigForClient returns for
// the current CA; fields set on the returned configuration afterwards
// (VerifyConnection, say) do not reach it. Session tickets are off, so
// that every connection's client certificate is verified against the CA
// of the day.
func (a *Authority) ServerTLS(issue func(*CA) (tls.Certificate, error)) *tls.Config {
	s := &servingCert{issue: issue}
	getCertificate := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		ca, err := a.current()
		if err != nil {
			return nil, err
		}
		return s.get(ca)
	}
	var mu sync.Mutex
	var lastCA *CA
	var last *tls.Config
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAnyClientCert, // verified by the configuration below
		SessionTicketsDisabled: true,
		GetCertificate:         getCertificate,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			ca, err := a.current()
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			if ca != lastCA {
				lastCA, last = ca, verifyClients(&tls.Config{
					MinVersion:             tls.VersionTLS13,
					SessionTicketsDisabled: true,
					GetCertificate:         getCertificate,
				}, ca.Pool())
			}
			return last, nil
		},
	}
}

// SiblingTLS is [CA.SiblingTLS] with the current CA: the peer is verified
// against the current CA's Pool under site's server name, and each
// connection's client certificate is issued from the current CA, for its
// own key, with its chain. RootCAs would be fixed when the configuration
// is made, so crypto/tls's verification is off (InsecureSkipVerify) and
// VerifyConnection does it instead, as strictly.
func (a *Authority) SiblingTLS(site string) *tls.Config {
	name := ServerName(site)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         name,
		InsecureSkipVerify: true, // verified by VerifyConnection, against the current CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			ca, err := a.current()
			if err != nil {
				return err
			}
			return verifyServer(cs, ca.Pool(), name)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			ca, err := a.current()
			if err != nil {
				return nil, err
			}
			der, err := ca.issueLink(site, &ca.Key.PublicKey, SiblingLinkID, siblingValidity)
			if err != nil {
				return nil, err
			}
			return &tls.Certificate{Certificate: ca.Chain(der), PrivateKey: ca.Key}, nil
		},
	}
}
