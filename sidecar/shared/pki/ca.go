package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names in the CA dir, and data keys of the Kubernetes Secret that
// holds the CA. The previous CA's files exist only while a rotation is
// under way (rotate.go).
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	CAPrevCertFile = "ca-previous.crt"
	CAPrevKeyFile  = "ca-previous.key"
)

// CAValidity is how long a new site CA is valid.
const CAValidity = 10 * 365 * 24 * time.Hour

// ErrCorruptCA reports CA files in a data dir that cannot be used: one of
// a pair missing, unparsable PEM, a certificate that is not a CA, or a
// key that does not match it. skiff never replaces them: tokens already
// issued name the CA, so a human decides.
var ErrCorruptCA = errors.New("corrupt site CA")

// CA is a site's certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte

	// Prev is the site CA before a rotation that is under way (nil
	// otherwise): what it issued stays trusted, and it endorses this CA.
	Prev *CA
	// Cross is this CA's certificate signed by Prev's key (same subject,
	// key and subject key id; valid no longer than Prev): sent after every
	// certificate this CA issues while Prev is set, so a peer that trusts
	// only Prev verifies them.
	Cross *x509.Certificate
}

// createWait bounds how long a load waits for CA files that do not form
// a CA yet: another process may be between writing one file and the next
// (creating the CA, or starting or finishing a rotation).
var createWait = 2 * time.Second

// LoadOrCreateCA returns the site CA kept in dataDir, creating the CA when
// there is none yet; during a rotation it comes with the previous CA
// ([CA.Prev]). Existing files are reused whatever siteName says; files
// that do not form a CA are reported as [ErrCorruptCA] and left alone (a
// dir with the previous CA's files but no current CA among them). Only a
// dir the CA is about to be written into is created or tightened to 0700
// ([SecureDir]); a dir that already holds the CA is just read, so it may
// be a read-only mount (a Kubernetes Secret).
//
// Two processes creating the CA at once (a gateway starting while the
// token CLI runs) agree on one: files are written under temporary names
// and linked into place, key first, and the loser of the race loads the
// winner's.
func LoadOrCreateCA(dataDir, siteName string) (*CA, error) {
	certPath, keyPath := filepath.Join(dataDir, CACertFile), filepath.Join(dataDir, CAKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		if _, err := SecureDir(dataDir); err != nil {
			return nil, fmt.Errorf("CA dir: %w", err)
		}
		if _, err := os.Stat(certPath); err == nil {
			if _, err := os.Stat(keyPath); err == nil {
				return LoadCA(dataDir) // another process just created both
			}
			return nil, fmt.Errorf("load site CA: %s exists but %s does not: %w", certPath, keyPath, ErrCorruptCA)
		}
		for _, name := range []string{CAPrevCertFile, CAPrevKeyFile} {
			if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
				return nil, fmt.Errorf("load site CA: %s holds %s but no current CA (%s, %s): %w", dataDir, name, CACertFile, CAKeyFile, ErrCorruptCA)
			}
		}
		if err := createCA(dataDir, siteName); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("load site CA: %w", err)
	}
	return LoadCA(dataDir)
}

// LoadCA returns the site CA kept in dir, with the previous one during a
// rotation, without creating anything: for a gateway that reads the dir
// again when its files change. A dir without a CA is an error wrapping
// [fs.ErrNotExist]; files that do not form a CA, once other processes
// had a couple of seconds to finish writing them, [ErrCorruptCA].
//
// A rotation ([RotateCA], [FinishCARotation]) changes the files one at a
// time; LoadCA returns the CA in effect before a step or after it, never
// a mix of two (it reads the files again when it caught them between two
// steps).
func LoadCA(dir string) (*CA, error) {
	deadline := time.Now().Add(createWait)
	for {
		f, err := readCAFiles(dir)
		if err != nil {
			return nil, fmt.Errorf("load site CA: %w", err)
		}
		if f.cert == nil && f.key == nil && f.prevCert == nil && f.prevKey == nil {
			return nil, fmt.Errorf("load site CA: no %s and %s in %s: %w", CACertFile, CAKeyFile, dir, fs.ErrNotExist)
		}
		ca, err := f.parse(dir)
		if err == nil || !errors.Is(err, ErrCorruptCA) || time.Now().After(deadline) {
			return ca, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// caFiles are the contents of a site CA's files (nil: missing).
type caFiles struct {
	cert, key, prevCert, prevKey []byte
}

// readCAFiles reads the CA files of dir, in the reverse of the order a
// rotation writes them (rotate.go), so that what it reads is the dir
// before the rotation or after it, or is retried by LoadCA.
func readCAFiles(dir string) (caFiles, error) {
	var f caFiles
	for _, r := range []struct {
		name string
		data *[]byte
	}{{CACertFile, &f.cert}, {CAKeyFile, &f.key}, {CAPrevKeyFile, &f.prevKey}, {CAPrevCertFile, &f.prevCert}} {
		data, err := os.ReadFile(filepath.Join(dir, r.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return caFiles{}, err
		}
		*r.data = data
	}
	return f, nil
}

// ParseCA parses a site CA from its certificate and key in PEM (as kept in
// a Kubernetes Secret); errors wrap [ErrCorruptCA].
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	return caFiles{cert: nonNil(certPEM), key: nonNil(keyPEM)}.parse("")
}

// ParseCAWithPrevious is [ParseCA] for a CA that may be under rotation:
// prevCertPEM and prevKeyPEM are the previous CA's (both empty: no
// rotation; one without the other is [ErrCorruptCA]), and the CA it
// returns has Prev and Cross set. A previous certificate that is certPEM
// itself is no rotation (one starting or finishing, as [LoadCA] may find
// it in a dir): the CA is certPEM with whichever key matches it.
func ParseCAWithPrevious(certPEM, keyPEM, prevCertPEM, prevKeyPEM []byte) (*CA, error) {
	f := caFiles{cert: nonNil(certPEM), key: nonNil(keyPEM)}
	if len(prevCertPEM) > 0 {
		f.prevCert = prevCertPEM
	}
	if len(prevKeyPEM) > 0 {
		f.prevKey = prevKeyPEM
	}
	return f.parse("")
}

// nonNil makes a missing PEM of ParseCA a present but empty one, so that
// it is reported as unparsable, as it always was.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// parse makes the CA the files hold; dir names them in errors ("" for
// the data keys of a Secret). The rules, which every source of a CA goes
// through:
//
//   - ca.crt and ca.key are required.
//   - When ca-previous.crt is the same certificate as ca.crt, no rotation
//     is in effect (one is starting or finishing, rotate.go): the CA is
//     ca.crt with whichever of ca.key and ca-previous.key (if any)
//     matches it.
//   - Otherwise ca-previous.crt and ca-previous.key go together; with
//     them, they are the CA's Prev.
func (f caFiles) parse(dir string) (*CA, error) {
	name := func(n string) string {
		if dir == "" {
			return n
		}
		return filepath.Join(dir, n)
	}
	lone := func(have, missing string) error {
		hint := ""
		if have == CAPrevCertFile || have == CAPrevKeyFile {
			hint = " (finishing the CA rotation removes it)"
		}
		return fmt.Errorf("load site CA: %s exists but %s does not%s: %w", name(have), name(missing), hint, ErrCorruptCA)
	}
	switch {
	case f.cert == nil && f.key == nil:
		return nil, fmt.Errorf("load site CA: %s and %s do not exist: %w", name(CACertFile), name(CAKeyFile), ErrCorruptCA)
	case f.cert == nil:
		return nil, lone(CAKeyFile, CACertFile)
	case f.key == nil:
		return nil, lone(CACertFile, CAKeyFile)
	}
	if f.prevCert != nil {
		cert, err := parseCACert(f.cert, name(CACertFile))
		if err != nil {
			return nil, err
		}
		prev, err := parseCACert(f.prevCert, name(CAPrevCertFile))
		if err != nil {
			return nil, err
		}
		if bytes.Equal(prev.Raw, cert.Raw) {
			ca, err := parsePair(f.cert, f.key, name(CACertFile), name(CAKeyFile))
			if err != nil && f.prevKey != nil {
				if ca, perr := parsePair(f.cert, f.prevKey, name(CACertFile), name(CAPrevKeyFile)); perr == nil {
					return ca, nil
				}
			}
			return ca, err
		}
	}
	switch {
	case f.prevCert != nil && f.prevKey == nil:
		return nil, lone(CAPrevCertFile, CAPrevKeyFile)
	case f.prevCert == nil && f.prevKey != nil:
		return nil, lone(CAPrevKeyFile, CAPrevCertFile)
	}
	ca, err := parsePair(f.cert, f.key, name(CACertFile), name(CAKeyFile))
	if err != nil || f.prevCert == nil {
		return ca, err
	}
	if ca.Prev, err = parsePair(f.prevCert, f.prevKey, name(CAPrevCertFile), name(CAPrevKeyFile)); err != nil {
		return nil, err
	}
	if ca.Cross, err = crossSign(ca, ca.Prev); err != nil {
		return nil, fmt.Errorf("load site CA: %w", err)
	}
	return ca, nil
}

// parsePair parses a CA certificate and its key.
func parsePair(certPEM, keyPEM []byte, certPath, keyPath string) (*CA, error) {
	cert, err := parseCACert(certPEM, certPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load site CA key %s: %w: %w", keyPath, ErrCorruptCA, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load site CA: %s does not match %s: %w", keyPath, certPath, ErrCorruptCA)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

func parseCACert(certPEM []byte, certPath string) (*x509.Certificate, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load site CA %s: %w: %w", certPath, ErrCorruptCA, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load site CA %s: not a CA certificate: %w", certPath, ErrCorruptCA)
	}
	return cert, nil
}

// createCA writes a new CA into dataDir unless another process wins the
// race to do so; either way the files exist when it returns nil.
func createCA(dataDir, siteName string) error {
	certPEM, keyPEM, err := NewCAPEM(siteName)
	if err != nil {
		return err
	}
	won, err := linkNew(filepath.Join(dataDir, CAKeyFile), keyPEM)
	if err != nil {
		return fmt.Errorf("write CA key: %w", err)
	}
	certPath := filepath.Join(dataDir, CACertFile)
	if !won {
		return nil // another process is creating the CA; the caller waits for it
	}
	if _, err := linkNew(certPath, certPEM); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	return nil
}

// NewCAPEM makes a new site CA (ECDSA P-256, valid [CAValidity]) and
// returns its certificate and key in PEM, for a controller that keeps
// them in a Kubernetes Secret rather than a data dir.
//
// The CA signs leaf certificates, and at most one CA certificate below
// it: the cross certificate with which it endorses its successor in a
// rotation ([CA.Cross]). Its path length is therefore 1, not 0: Go's
// verifier counts the cross certificate as an intermediate, so a peer
// that trusts only this CA could not verify its successor's
// certificates through a CA of path length 0.
func NewCAPEM(siteName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("skiff site %s CA", siteName)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// ParseCertificate parses the first PEM "CERTIFICATE" block of data.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// ParseCertificates parses every PEM block of data, each of which must be
// a "CERTIFICATE": a chain or a trust bundle, at most max of them (it is
// checked before each is parsed). None is an error.
func ParseCertificates(data []byte, max int) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if len(certs) == max {
			return nil, fmt.Errorf("more than %d certificates", max)
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %.40q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseKey parses an ECDSA key in a PEM "PRIVATE KEY" (PKCS #8) or
// "EC PRIVATE KEY" block.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, not ECDSA", k)
		}
		return ec, nil
	}
	return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewSerial returns a random positive 128-bit certificate serial number.
func NewSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("generate serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// Pool returns a pool holding the CA and, during a rotation, the previous
// CA: what either issued verifies against it.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	if ca.Prev != nil {
		p.AddCert(ca.Prev.Cert)
	}
	return p
}

// BundlePEM returns the trust bundle peers should hold for the site: the
// CA's certificate, then, during a rotation, the previous CA's.
func (ca *CA) BundlePEM() []byte {
	b := withNewline(ca.CertPEM)
	if ca.Prev != nil {
		b = append(b, withNewline(ca.Prev.CertPEM)...)
	}
	return b
}

// withNewline returns a copy of p ending in a newline, so that PEM files
// concatenate into a valid bundle.
func withNewline(p []byte) []byte {
	b := bytes.Clone(p)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// Chain returns the certificate chain to present with a certificate
// (DER) the CA issued: the certificate, then, during a rotation, the
// cross certificate, so that a peer that trusts only the previous CA
// verifies it.
func (ca *CA) Chain(leafDER []byte) [][]byte {
	chain := [][]byte{leafDER}
	if ca.Prev != nil && ca.Cross != nil {
		chain = append(chain, ca.Cross.Raw)
	}
	return chain
}

// chainPEM is Chain in PEM: one CERTIFICATE block after the other.
func (ca *CA) chainPEM(leafDER []byte) []byte {
	var b []byte
	for _, der := range ca.Chain(leafDER) {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}
