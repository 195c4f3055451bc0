package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ServerTLS returns the link listener's TLS configuration: TLS 1.3 only,
// serving cert, and client certificates required and verified against the
// site CA.
func ServerTLS(ca *CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
}

// ClientTLS returns a link dialer's TLS configuration: TLS 1.3 only, the
// peer verified against caPEM under serverName, and the client certificate
// certPEM with its key keyPEM.
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
// against the site CA under the site's server name, and, for every
// connection, a fresh link certificate for site that certifies the site
// key (the CA key) itself. Only a holder of the site key can have one; the
// accepting gateway takes such a certificate as a sibling's.
func (ca *CA) SiblingTLS(site string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    ca.Pool(),
		ServerName: ServerName(site),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certPEM, err := ca.IssueLink(site, &ca.Key.PublicKey, SiblingLinkID, siblingValidity)
			if err != nil {
				return nil, err
			}
			block, _ := pem.Decode(certPEM)
			if block == nil {
				return nil, errors.New("sibling certificate: no PEM block")
			}
			return &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: ca.Key}, nil
		},
	}
}

// RenewingServerTLS is ServerTLS for a serving certificate that is issued
// again (by issue) once two thirds of its life are over, so that a
// gateway that runs for longer than its certificate lasts keeps serving;
// cert is the first one. A failed renewal keeps the certificate it has
// and is tried again at the next handshake.
func RenewingServerTLS(ca *CA, cert tls.Certificate, issue func() (tls.Certificate, error)) *tls.Config {
	cfg := ServerTLS(ca, cert)
	var mu sync.Mutex
	cur := &cert
	renewAt := renewTime(cur)
	cfg.Certificates = nil
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if !renewAt.IsZero() && time.Now().After(renewAt) {
			if next, err := issue(); err == nil {
				cur = &next
				renewAt = renewTime(cur)
			}
		}
		return cur, nil
	}
	return cfg
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
