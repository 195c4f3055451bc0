package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// ServerName is the name a site's gateway certificate is issued for and
// that dialing sites verify: "<siteName>.skiff.local".
func ServerName(siteName string) string {
	return siteName + ".skiff.local"
}

// IssueServer issues the gateway's serving certificate: DNS name
// [ServerName](siteName), plus each of hosts as an IP or DNS name (empty
// hosts and duplicates are skipped), for TLS server authentication.
//
// During a rotation the previous CA issues it: every client trusts that
// one, whether it has been given the new CA yet or not. (A client that
// knows only the previous CA could not follow the cross certificate to
// the new one if the previous CA was made with path length 0, as every
// site CA made before rotations existed was.) Once the rotation is
// finished the new CA issues it.
func (ca *CA) IssueServer(siteName string, hosts []string, validity time.Duration) (tls.Certificate, error) {
	if ca.Prev != nil {
		return ca.Prev.IssueServer(siteName, hosts, validity)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServerName(siteName)},
		DNSNames:    []string{ServerName(siteName)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{ServerName(siteName): true}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, key, err := ca.issue(tmpl, validity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate for %s: %w", siteName, err)
	}
	return tls.Certificate{Certificate: ca.Chain(cert.Raw), PrivateKey: key, Leaf: cert}, nil
}

// IssueClient issues a client certificate for TLS client authentication and
// returns it and its key as PEM, with its serial number. During a rotation
// certPEM holds the cross certificate after the certificate ([CA.Chain]);
// [tls.X509KeyPair] takes both.
func (ca *CA) IssueClient(commonName string, validity time.Duration) (certPEM, keyPEM []byte, serial *big.Int, err error) {
	if serial, err = NewSerial(); err != nil {
		return nil, nil, nil, err
	}
	certPEM, keyPEM, err = ca.IssueClientSerial(serial, commonName, validity)
	return certPEM, keyPEM, serial, err
}

// IssueClientSerial is IssueClient with the serial number chosen by the
// caller, for certificates whose name includes their serial (link tokens).
// serial must be positive and unique for the CA: take it from [NewSerial].
func (ca *CA) IssueClientSerial(serial *big.Int, commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cert, key, err := ca.issue(tmpl, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate %q: %w", commonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return ca.chainPEM(cert.Raw), keyPEM, nil
}

// issue fills in the key, validity (backdated an hour for clock skew) and,
// unless set, serial of tmpl and signs it.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if validity <= 0 {
		return nil, nil, errors.New("validity must be positive")
	}
	if tmpl.SerialNumber != nil && tmpl.SerialNumber.Sign() <= 0 {
		return nil, nil, errors.New("serial number must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = NewSerial(); err != nil {
			return nil, nil, err
		}
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate(validity)), now.Add(validity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return cert, key, nil
}

// backdate is how far before its issue a certificate starts being valid,
// for clocks that lag: an hour, or a tenth of a short validity (tests
// shorten lifetimes so that renewal runs, and renewal comes when two
// thirds of the life from NotBefore are over).
func backdate(validity time.Duration) time.Duration { return min(time.Hour, validity/10) }
