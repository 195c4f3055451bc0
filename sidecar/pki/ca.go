package pki

import (
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

// File names in the data dir.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CAValidity is how long a new site CA is valid.
const CAValidity = 10 * 365 * 24 * time.Hour

// ErrCorruptCA reports CA files in a data dir that cannot be used: one of
// the pair missing, unparsable PEM, a certificate that is not a CA, or a
// key that does not match it. skiff never replaces them: tokens already
// issued name the CA, so a human decides.
var ErrCorruptCA = errors.New("corrupt site CA")

// CA is a site's certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// createWait bounds how long LoadOrCreateCA waits for the certificate of a
// CA whose key another process has just written.
var createWait = 2 * time.Second

// LoadOrCreateCA returns the site CA kept in dataDir, creating the CA when
// there is none yet. Existing files are reused whatever siteName says;
// files that do not form a CA are reported as [ErrCorruptCA] and left
// alone. Only a dir the CA is about to be written into is created or
// tightened to 0700 ([SecureDir]); a dir that already holds the CA is
// just read, so it may be a read-only mount (a Kubernetes Secret).
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
				return loadCA(certPath, keyPath) // another process just created both
			}
			return nil, fmt.Errorf("load site CA: %s exists but %s does not: %w", certPath, keyPath, ErrCorruptCA)
		}
		if err := createCA(dataDir, siteName); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("load site CA: %w", err)
	}
	if err := waitForCert(certPath, keyPath); err != nil {
		return nil, err
	}
	return loadCA(certPath, keyPath)
}

// waitForCert waits for the CA certificate when only the key exists:
// another process may be between writing the one and the other.
func waitForCert(certPath, keyPath string) error {
	deadline := time.Now().Add(createWait)
	for {
		_, err := os.Stat(certPath)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("load site CA: %w", err)
		case time.Now().After(deadline):
			return fmt.Errorf("load site CA: %s exists but %s does not: %w", keyPath, certPath, ErrCorruptCA)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		MaxPathLenZero:        true,
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

// linkNew writes data to path (mode 0600) atomically, unless path exists;
// it reports whether it wrote.
func linkNew(path string, data []byte) (bool, error) {
	tmp, err := writeTemp(filepath.Dir(path), filepath.Base(path), data)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// WriteFile writes data to path (mode 0600) atomically: a temporary file
// in the same dir, synced, renamed over path. A reader sees the old file
// or the new one, never half of one.
func WriteFile(path string, data []byte) error {
	tmp, err := writeTemp(filepath.Dir(path), filepath.Base(path), data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes data to a new file (mode 0600) in dir and returns its
// name.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+pattern+".tmp-*")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", werr
	}
	return f.Name(), nil
}

func loadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load site CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load site CA: %w", err)
	}
	return parseCA(certPEM, keyPEM, certPath, keyPath)
}

// ParseCA parses a site CA from its certificate and key in PEM (as kept in
// a Kubernetes Secret); errors wrap [ErrCorruptCA].
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	return parseCA(certPEM, keyPEM, CACertFile, CAKeyFile)
}

func parseCA(certPEM, keyPEM []byte, certPath, keyPath string) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load site CA %s: %w: %w", certPath, ErrCorruptCA, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load site CA %s: not a CA certificate: %w", certPath, ErrCorruptCA)
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

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
