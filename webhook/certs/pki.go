package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Secret data keys. tls.crt and tls.key are those of a kubernetes.io/tls
// Secret; ca.crt holds every trusted CA (the signing CA first), ca.key the
// signing CA's key.
const (
	KeyTLSCert = corev1.TLSCertKey
	KeyTLSKey  = corev1.TLSPrivateKeyKey
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
)

// backdate moves NotBefore into the past so that a peer whose clock lags a
// little still accepts a fresh certificate. Lifetimes are counted from
// NotBefore+backdate, the moment of issue.
const backdate = time.Minute

// Bundle is the content of the certificate Secret.
type Bundle struct {
	// CAs are the trusted CAs, the signing CA first.
	CAs     []*x509.Certificate
	CAKey   crypto.Signer
	Leaf    *x509.Certificate
	LeafKey crypto.Signer
}

// Spec is the certificate the injector needs and how long it lives.
type Spec struct {
	DNSNames []string
	IPs      []net.IP
	// CALifetime and LeafLifetime; each is renewed at two thirds of it.
	CALifetime, LeafLifetime time.Duration
	// PublishDelay is how long a new CA must have been in every webhook's
	// caBundle before a leaf signed by it is served: the time the apiserver
	// takes to notice the new caBundle.
	PublishDelay time.Duration
}

// Validate reports a Spec that cannot rotate without an outage.
func (s Spec) Validate() error {
	switch {
	case len(s.DNSNames) == 0:
		return fmt.Errorf("no DNS names")
	case s.LeafLifetime <= 0 || s.CALifetime <= 0:
		return fmt.Errorf("lifetimes must be positive (CA %s, leaf %s)", s.CALifetime, s.LeafLifetime)
	case s.LeafLifetime > s.CALifetime:
		return fmt.Errorf("leaf lifetime %s exceeds CA lifetime %s", s.LeafLifetime, s.CALifetime)
	case s.PublishDelay < 0 || s.PublishDelay >= s.CALifetime/3:
		return fmt.Errorf("publish delay %s must be under a third of the CA lifetime %s", s.PublishDelay, s.CALifetime)
	}
	return nil
}

// ServiceDNSNames are the names the apiserver may use for a Service.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
		service + "." + namespace,
		service,
	}
}

// issued is when c was made.
func issued(c *x509.Certificate) time.Time { return c.NotBefore.Add(backdate) }

// renewAt is two thirds into c's lifetime.
func renewAt(c *x509.Certificate) time.Time {
	start := issued(c)
	return start.Add(c.NotAfter.Sub(start) * 2 / 3)
}

// Changes Plan reports.
const (
	ChangeCreated     = "created CA and leaf"
	ChangeCARotated   = "rotated CA"
	ChangeCADropped   = "dropped expired CA"
	ChangeLeafRenewed = "renewed leaf"
)

// Plan returns the bundle the Secret should hold at now and what changed
// (nil: b is fine as it is). trustedSince is when the current signing CA
// was first seen in every webhook's caBundle (zero: not yet).
func Plan(b *Bundle, spec Spec, now, trustedSince time.Time) (*Bundle, []string, error) {
	if !signingCAUsable(b, now) {
		nb, err := newBundle(spec, now)
		return nb, []string{ChangeCreated}, err
	}
	nb := &Bundle{CAKey: b.CAKey, Leaf: b.Leaf, LeafKey: b.LeafKey}
	var changes []string
	for _, ca := range b.CAs {
		if now.Before(ca.NotAfter) {
			nb.CAs = append(nb.CAs, ca)
		} else {
			changes = append(changes, ChangeCADropped)
		}
	}
	if !now.Before(renewAt(nb.CAs[0])) {
		ca, key, err := newCA(spec, now)
		if err != nil {
			return nil, nil, err
		}
		nb.CAs = append([]*x509.Certificate{ca}, nb.CAs...)
		nb.CAKey = key
		trustedSince = time.Time{}
		changes = append(changes, ChangeCARotated)
	}

	signer := nb.CAs[0]
	leafUsable := nb.Leaf != nil && nb.LeafKey != nil && now.Before(nb.Leaf.NotAfter) && chainsTo(nb.Leaf, nb.CAs)
	fromSigner := leafUsable && nb.Leaf.CheckSignatureFrom(signer) == nil
	renew := !leafUsable || !fromSigner || !now.Before(renewAt(nb.Leaf)) || !sameNames(nb.Leaf, spec)
	// A usable leaf of an older CA stays until the apiserver has trusted
	// the signing CA for PublishDelay.
	if renew && leafUsable && !fromSigner && (trustedSince.IsZero() || now.Before(trustedSince.Add(spec.PublishDelay))) {
		renew = false
	}
	if renew {
		leaf, key, err := newLeaf(signer, nb.CAKey, spec, now)
		if err != nil {
			return nil, nil, err
		}
		nb.Leaf, nb.LeafKey = leaf, key
		changes = append(changes, ChangeLeafRenewed)
	}
	if len(changes) == 0 {
		return b, nil, nil
	}
	return nb, changes, nil
}

// signingCAUsable reports whether b's first CA matches its CA key and has
// not expired.
func signingCAUsable(b *Bundle, now time.Time) bool {
	if b == nil || b.CAKey == nil || len(b.CAs) == 0 {
		return false
	}
	pub, ok := b.CAs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(b.CAKey.Public()) && now.Before(b.CAs[0].NotAfter)
}

func chainsTo(leaf *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if leaf.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

func sameNames(leaf *x509.Certificate, spec Spec) bool {
	if !slices.Equal(leaf.DNSNames, spec.DNSNames) || len(leaf.IPAddresses) != len(spec.IPs) {
		return false
	}
	for i, ip := range spec.IPs {
		if !leaf.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

func newBundle(spec Spec, now time.Time) (*Bundle, error) {
	ca, caKey, err := newCA(spec, now)
	if err != nil {
		return nil, err
	}
	leaf, leafKey, err := newLeaf(ca, caKey, spec, now)
	if err != nil {
		return nil, err
	}
	return &Bundle{CAs: []*x509.Certificate{ca}, CAKey: caKey, Leaf: leaf, LeafKey: leafKey}, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

func newCA(spec Spec, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "skiff-injector-ca-" + sn.Text(16)[:8], Organization: []string{"skiff"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(spec.CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newLeaf(ca *x509.Certificate, caKey crypto.Signer, spec Spec, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate leaf key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	notAfter := now.Add(spec.LeafLifetime)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: spec.DNSNames[0]},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create leaf certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// CABundle is the PEM of every trusted CA, as the webhooks' caBundle.
func (b *Bundle) CABundle() []byte {
	var buf bytes.Buffer
	for _, c := range b.CAs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// Data renders b as Secret data.
func (b *Bundle) Data() (map[string][]byte, error) {
	caKey, err := keyPEM(b.CAKey)
	if err != nil {
		return nil, err
	}
	leafKey, err := keyPEM(b.LeafKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyTLSCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Leaf.Raw}),
		KeyTLSKey:  leafKey,
		KeyCACert:  b.CABundle(),
		KeyCAKey:   caKey,
	}, nil
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ErrIncomplete is wrapped by ParseBundle's error when a key is missing.
var ErrIncomplete = errors.New("incomplete certificate secret")

// ParseBundle reads Secret data written by Data.
func ParseBundle(data map[string][]byte) (*Bundle, error) {
	for _, k := range []string{KeyTLSCert, KeyTLSKey, KeyCACert, KeyCAKey} {
		if len(data[k]) == 0 {
			return nil, fmt.Errorf("%w: no %s", ErrIncomplete, k)
		}
	}
	b := &Bundle{}
	var err error
	if b.CAs, err = parseCerts(data[KeyCACert]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	leaves, err := parseCerts(data[KeyTLSCert])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSCert, err)
	}
	b.Leaf = leaves[0]
	if b.CAKey, err = parseKey(data[KeyCAKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	if b.LeafKey, err = parseKey(data[KeyTLSKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSKey, err)
	}
	return b, nil
}

func parseCerts(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, p = pem.Decode(p)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return out, nil
}

func parseKey(p []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(p)
	if blk == nil {
		return nil, fmt.Errorf("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

// TLSCertificate is the serving certificate of b.
func (b *Bundle) TLSCertificate() (*tls.Certificate, error) {
	if b.LeafKey == nil || b.Leaf == nil {
		return nil, ErrIncomplete
	}
	return &tls.Certificate{Certificate: [][]byte{b.Leaf.Raw}, PrivateKey: b.LeafKey, Leaf: b.Leaf}, nil
}
