package pki

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
)

// ErrRotationUnderway reports a CA rotation asked to start while one is
// under way: the previous CA's files exist.
var ErrRotationUnderway = errors.New("a site CA rotation is already under way")

// RotateCA starts a rotation of the site CA in dir: the current CA
// becomes the previous one and a new CA (for siteName, [NewCAPEM]) the
// current one. It refuses when a rotation is under way
// ([ErrRotationUnderway]: finish it first) and when dir holds no CA
// (wrapping [fs.ErrNotExist]) or one that does not load ([ErrCorruptCA]).
//
// The files change one at a time, each atomically and made durable
// before the next, in an order that leaves a CA to load ([LoadCA]) at
// every moment, a crash included:
//
//  1. ca-previous.crt, then ca-previous.key: copies of the current CA.
//     Linking ca-previous.crt claims the rotation; of two RotateCA at
//     once, the other one refuses. A previous certificate that is the
//     current one is no rotation: loads take the current CA, alone.
//  2. The new CA, written under temporary names, then renamed into place:
//     ca.key, then ca.crt. Until ca.crt is renamed it is still the
//     previous certificate, and loads take it with the key that matches
//     it, ca-previous.key: the rotation takes effect with the rename of
//     ca.crt.
//
// After a crash before that rename, the old CA is in effect with the
// previous files beside it; [FinishCARotation] tidies up (and puts its
// key back as ca.key), and RotateCA can be run again.
func RotateCA(dir, siteName string) error {
	f, err := readCAFiles(dir)
	if err != nil {
		return fmt.Errorf("rotate site CA: %w", err)
	}
	if f.prevCert != nil || f.prevKey != nil {
		return fmt.Errorf("rotate site CA in %s: %s or %s exists: %w; finish it (which drops the previous CA) before starting another", dir, CAPrevCertFile, CAPrevKeyFile, ErrRotationUnderway)
	}
	if f.cert == nil && f.key == nil {
		return fmt.Errorf("rotate site CA: no CA in %s to rotate (%s, %s): %w", dir, CACertFile, CAKeyFile, fs.ErrNotExist)
	}
	if _, err := f.parse(dir); err != nil {
		return fmt.Errorf("rotate site CA: %w", err)
	}
	certPEM, keyPEM, err := NewCAPEM(siteName)
	if err != nil {
		return fmt.Errorf("rotate site CA: %w", err)
	}

	won, err := linkNew(filepath.Join(dir, CAPrevCertFile), f.cert)
	if err != nil {
		return fmt.Errorf("rotate site CA: write %s: %w", CAPrevCertFile, err)
	}
	if !won {
		return fmt.Errorf("rotate site CA in %s: %s appeared meanwhile: %w", dir, CAPrevCertFile, ErrRotationUnderway)
	}
	unfinished := func(err error) error {
		return fmt.Errorf("rotate site CA: %w; the CA in effect is still the one before: finish the rotation to tidy up, then rotate again", err)
	}
	if won, err = linkNew(filepath.Join(dir, CAPrevKeyFile), f.key); err != nil || !won {
		if err == nil {
			err = fmt.Errorf("%s appeared meanwhile: %w", CAPrevKeyFile, fs.ErrExist)
		}
		return unfinished(err)
	}
	if err := syncDir(dir); err != nil {
		return unfinished(err)
	}

	keyTmp, err := writeTemp(dir, CAKeyFile, keyPEM)
	if err != nil {
		return unfinished(err)
	}
	defer os.Remove(keyTmp) // fails once renamed
	certTmp, err := writeTemp(dir, CACertFile, certPEM)
	if err != nil {
		return unfinished(err)
	}
	defer os.Remove(certTmp)
	for _, step := range []struct{ tmp, name string }{{keyTmp, CAKeyFile}, {certTmp, CACertFile}} {
		if err := os.Rename(step.tmp, filepath.Join(dir, step.name)); err != nil {
			return unfinished(err)
		}
		if err := syncDir(dir); err != nil && step.name == CAKeyFile {
			return unfinished(err)
		} else if err != nil {
			return fmt.Errorf("rotate site CA: the new CA is in place, but %w", err)
		}
	}
	return nil
}

// FinishCARotation ends the rotation of the site CA in dir: the previous
// CA's files are removed and what the previous CA issued is no longer
// trusted. Without a rotation under way it does nothing. It keeps the CA
// in effect ([LoadCA]): after a rotation that stopped before it replaced
// ca.crt, that is the one before, whose key it puts back as ca.key. It
// refuses, changing nothing, when no CA would be left that loads.
//
// Like [RotateCA], it changes the files in an order that leaves a CA to
// load at every moment: ca-previous.crt becomes a copy of ca.crt (no
// rotation in effect), then ca-previous.key and ca-previous.crt are
// removed.
func FinishCARotation(dir string) error {
	f, err := readCAFiles(dir)
	if err != nil {
		return fmt.Errorf("finish site CA rotation: %w", err)
	}
	if f.prevCert == nil && f.prevKey == nil {
		return nil
	}
	ca, err := f.parse(dir)
	if err != nil {
		// Previous files that do not go with the CA: the CA in ca.crt
		// and ca.key stays, if it loads.
		if ca, err = (caFiles{cert: f.cert, key: f.key}).parse(dir); err != nil {
			return fmt.Errorf("finish site CA rotation: %w; left as it is", err)
		}
	}
	fail := func(err error) error { return fmt.Errorf("finish site CA rotation: %w", err) }
	if !certifies(f.cert, f.key) {
		// The rotation stopped before it replaced ca.crt: ca-previous.key
		// is the key of the CA in effect.
		if err := writeSynced(dir, CAKeyFile, f.prevKey); err != nil {
			return fail(err)
		}
	}
	if ca.Prev != nil {
		if err := writeSynced(dir, CAPrevCertFile, f.cert); err != nil {
			return fail(err)
		}
	}
	for _, name := range []string{CAPrevKeyFile, CAPrevCertFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
		if err := syncDir(dir); err != nil {
			return fail(err)
		}
	}
	return nil
}

// writeSynced writes data to the file name of dir ([WriteFile]) and makes
// the change durable.
func writeSynced(dir, name string, data []byte) error {
	if err := WriteFile(filepath.Join(dir, name), data); err != nil {
		return err
	}
	return syncDir(dir)
}

// certifies reports whether certPEM is a certificate for the key keyPEM.
func certifies(certPEM, keyPEM []byte) bool {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return false
	}
	key, err := parseKey(keyPEM)
	return err == nil && key.PublicKey.Equal(cert.PublicKey)
}

// RotatePEM is [RotateCA] for a CA kept in the data of a Kubernetes
// Secret (keys [CACertFile], [CAKeyFile], [CAPrevCertFile],
// [CAPrevKeyFile]): it returns new data in which a new CA for siteName
// is current and the current one previous. Other keys are kept; data is
// not changed. It refuses when a rotation is under way
// ([ErrRotationUnderway]) and when data holds no CA that loads.
func RotatePEM(data map[string][]byte, siteName string) (map[string][]byte, error) {
	if len(data[CAPrevCertFile]) > 0 || len(data[CAPrevKeyFile]) > 0 {
		return nil, fmt.Errorf("rotate site CA: %s or %s is set: %w; finish it (which drops the previous CA) before starting another", CAPrevCertFile, CAPrevKeyFile, ErrRotationUnderway)
	}
	if _, err := ParseCA(data[CACertFile], data[CAKeyFile]); err != nil {
		return nil, fmt.Errorf("rotate site CA: %w", err)
	}
	certPEM, keyPEM, err := NewCAPEM(siteName)
	if err != nil {
		return nil, fmt.Errorf("rotate site CA: %w", err)
	}
	out := maps.Clone(data)
	out[CAPrevCertFile], out[CAPrevKeyFile] = data[CACertFile], data[CAKeyFile]
	out[CACertFile], out[CAKeyFile] = certPEM, keyPEM
	return out, nil
}

// FinishPEM is [FinishCARotation] for a CA kept in the data of a
// Kubernetes Secret: it returns the data without the previous CA. Other
// keys are kept; data is not changed.
func FinishPEM(data map[string][]byte) map[string][]byte {
	out := maps.Clone(data)
	if out == nil {
		out = map[string][]byte{}
	}
	delete(out, CAPrevCertFile)
	delete(out, CAPrevKeyFile)
	return out
}

// crossSign makes ca's cross certificate: its certificate (subject, key,
// subject key id) signed by prev, valid while both are, for leaves only
// (path length 0). For RFC 5280 it is a self-issued certificate (a key
// rollover); Go's verifier counts it against prev's path length all the
// same, hence the path length of 1 of [NewCAPEM].
func crossSign(ca, prev *CA) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := ca.Cert.NotBefore, ca.Cert.NotAfter
	if prev.Cert.NotBefore.After(notBefore) {
		notBefore = prev.Cert.NotBefore
	}
	if prev.Cert.NotAfter.Before(notAfter) {
		notAfter = prev.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		RawSubject:   ca.Cert.RawSubject,
		SubjectKeyId: ca.Cert.SubjectKeyId,
		// Set by hand: crypto/x509 leaves it out when issuer and subject
		// are the same name, as they are for the CAs of one site.
		AuthorityKeyId:        prev.Cert.SubjectKeyId,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ca.Cert.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, prev.Cert, ca.Cert.PublicKey, prev.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign the CA with the previous one: %w", err)
	}
	return x509.ParseCertificate(der)
}
