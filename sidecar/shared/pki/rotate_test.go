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
	"io/fs"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rotation is a site CA before, during and after a rotation.
type rotation struct {
	old  *CA // K1, before the rotation
	cur  *CA // K2, with Prev K1: the rotation under way
	done *CA // K2 alone: the rotation finished
	dir  string
}

// rotate makes a site CA in a dir and rotates it.
func rotate(t *testing.T, site string) rotation {
	t.Helper()
	dir := t.TempDir()
	old, err := LoadOrCreateCA(dir, site)
	if err != nil {
		t.Fatal(err)
	}
	if err := RotateCA(dir, site); err != nil {
		t.Fatalf("RotateCA() error = %v", err)
	}
	cur, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA() during the rotation error = %v", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	done, err := ParseCA(cur.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return rotation{old: old, cur: cur, done: done, dir: dir}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// parseChain parses every CERTIFICATE block of a PEM chain.
func parseChain(t *testing.T, chainPEM []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs
}

// verify verifies a chain (leaf first) against roots.
func verify(chain []*x509.Certificate, roots *x509.CertPool, dnsName string, usage x509.ExtKeyUsage) error {
	opts := x509.VerifyOptions{Roots: roots, Intermediates: poolOf(chain[1:]...), DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{usage}}
	_, err := chain[0].Verify(opts)
	return err
}

func TestRotateCALoads(t *testing.T) {
	r := rotate(t, "east")
	if r.cur.Prev == nil || !r.cur.Prev.Key.Equal(r.old.Key) || !r.cur.Prev.Cert.Equal(r.old.Cert) {
		t.Fatal("the rotated CA's Prev is not the CA before the rotation")
	}
	if r.cur.Key.Equal(r.old.Key) {
		t.Fatal("the rotated CA kept the old key")
	}
	if got, want := r.cur.Cert.Subject.CommonName, "skiff site east CA"; got != want {
		t.Errorf("new CA's CN = %q, want %q", got, want)
	}
	if diff := cmp.Diff(snapshotNames(t, r.dir), []string{CAPrevCertFile, CAPrevKeyFile, CACertFile, CAKeyFile}); diff != "" {
		t.Errorf("files during the rotation (-got +want):\n%s", diff)
	}
	for _, name := range []string{CAPrevCertFile, CAPrevKeyFile, CACertFile, CAKeyFile} {
		wantMode(t, filepath.Join(r.dir, name), 0o600)
	}
	if diff := cmp.Diff(string(r.cur.BundlePEM()), string(r.cur.CertPEM)+string(r.old.CertPEM)); diff != "" {
		t.Errorf("BundlePEM() (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(string(r.done.BundlePEM()), string(r.cur.CertPEM)); diff != "" {
		t.Errorf("BundlePEM() without a rotation (-got +want):\n%s", diff)
	}

	again, err := LoadOrCreateCA(r.dir, "east")
	if err != nil || again.Prev == nil || !again.Key.Equal(r.cur.Key) {
		t.Fatalf("LoadOrCreateCA() during the rotation = %v, want the rotated CA with its Prev", err)
	}

	if err := FinishCARotation(r.dir); err != nil {
		t.Fatalf("FinishCARotation() error = %v", err)
	}
	done, err := LoadCA(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if done.Prev != nil || done.Cross != nil || !done.Key.Equal(r.cur.Key) {
		t.Errorf("after FinishCARotation: Prev %v, Cross %v, same key %v; want the new CA alone", done.Prev != nil, done.Cross != nil, done.Key.Equal(r.cur.Key))
	}
	if diff := cmp.Diff(snapshotNames(t, r.dir), []string{CACertFile, CAKeyFile}); diff != "" {
		t.Errorf("files after the rotation (-got +want):\n%s", diff)
	}
	if err := FinishCARotation(r.dir); err != nil {
		t.Errorf("FinishCARotation() without a rotation = %v, want nil", err)
	}
}

// snapshotNames returns the names of dir's files, sorted.
func snapshotNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRotateCARefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  error
	}{
		{"no CA", func(*testing.T, string) {}, fs.ErrNotExist},
		{"a rotation under way", func(t *testing.T, dir string) {
			if _, err := LoadOrCreateCA(dir, "east"); err != nil {
				t.Fatal(err)
			}
			if err := RotateCA(dir, "east"); err != nil {
				t.Fatal(err)
			}
		}, ErrRotationUnderway},
		{"a previous certificate left alone", func(t *testing.T, dir string) {
			ca, err := LoadOrCreateCA(dir, "east")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, CAPrevCertFile), ca.CertPEM, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrRotationUnderway},
		{"a corrupt CA", func(t *testing.T, dir string) {
			if _, err := LoadOrCreateCA(dir, "east"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, CAKeyFile), newCAFiles(t, "other").key, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrCorruptCA},
	}
	defer func(d time.Duration) { createWait = d }(createWait)
	createWait = 50 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			before := snapshot(t, dir)
			err := RotateCA(dir, "east")
			if !errors.Is(err, tt.want) {
				t.Fatalf("RotateCA() error = %v, want %v", err, tt.want)
			}
			if diff := cmp.Diff(snapshot(t, dir), before); diff != "" {
				t.Errorf("RotateCA() changed the dir (-got +want):\n%s", diff)
			}
		})
	}
}

// pemPair is a CA's certificate and key in PEM.
type pemPair struct{ cert, key []byte }

func newCAFiles(t *testing.T, site string) pemPair {
	t.Helper()
	cert, key, err := NewCAPEM(site)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{cert, key}
}

// Every state a rotation (or its finish) passes through, as a crash may
// leave it, loads as the CA in effect; FinishCARotation makes each one a
// dir with that CA alone. States no writer makes are ErrCorruptCA, from
// a dir as from a Secret's data (ParseCAWithPrevious).
func TestCAStates(t *testing.T) {
	k1, k2 := newCAFiles(t, "east"), newCAFiles(t, "east")
	tests := []struct {
		name  string
		files caFiles
		want  *pemPair // nil: ErrCorruptCA
		prev  bool     // want k1 as Prev
		// finished is what FinishCARotation leaves (nil: it refuses).
		finished *pemPair
	}{
		{"no rotation", caFiles{cert: k1.cert, key: k1.key}, &k1, false, &k1},
		{"starting: previous certificate copied", caFiles{cert: k1.cert, key: k1.key, prevCert: k1.cert}, &k1, false, &k1},
		{"starting: previous key copied", caFiles{cert: k1.cert, key: k1.key, prevCert: k1.cert, prevKey: k1.key}, &k1, false, &k1},
		{"starting: new key in place", caFiles{cert: k1.cert, key: k2.key, prevCert: k1.cert, prevKey: k1.key}, &k1, false, &k1},
		{"rotation under way", caFiles{cert: k2.cert, key: k2.key, prevCert: k1.cert, prevKey: k1.key}, &k2, true, &k2},
		{"finishing: previous certificate replaced", caFiles{cert: k2.cert, key: k2.key, prevCert: k2.cert, prevKey: k1.key}, &k2, false, &k2},
		{"finishing: previous key removed", caFiles{cert: k2.cert, key: k2.key, prevCert: k2.cert}, &k2, false, &k2},
		{"previous key alone", caFiles{cert: k2.cert, key: k2.key, prevKey: k1.key}, nil, false, &k2},
		{"previous certificate of another CA alone", caFiles{cert: k2.cert, key: k2.key, prevCert: k1.cert}, nil, false, &k2},
		{"previous key of another CA", caFiles{cert: k2.cert, key: k2.key, prevCert: k1.cert, prevKey: k2.key}, nil, false, &k2},
		{"previous files only", caFiles{prevCert: k1.cert, prevKey: k1.key}, nil, false, nil},
		{"new certificate, old key", caFiles{cert: k2.cert, key: k1.key, prevCert: k1.cert, prevKey: k1.key}, nil, false, nil},
		{"previous certificate is garbage", caFiles{cert: k2.cert, key: k2.key, prevCert: []byte("garbage"), prevKey: k1.key}, nil, false, &k2},
	}
	defer func(d time.Duration) { createWait = d }(createWait)
	createWait = 50 * time.Millisecond
	check := func(t *testing.T, what string, ca *CA, err error, want *pemPair, prev bool) {
		t.Helper()
		if want == nil {
			if !errors.Is(err, ErrCorruptCA) {
				t.Errorf("%s error = %v, want ErrCorruptCA", what, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s error = %v", what, err)
		}
		if !bytes.Equal(ca.CertPEM, want.cert) {
			t.Errorf("%s = the other CA", what)
		}
		if !ca.Key.PublicKey.Equal(ca.Cert.PublicKey) {
			t.Errorf("%s: key does not match the certificate", what)
		}
		if got := ca.Prev != nil; got != prev {
			t.Errorf("%s: Prev set = %v, want %v", what, got, prev)
		}
		if prev && (!bytes.Equal(ca.Prev.CertPEM, k1.cert) || ca.Cross == nil) {
			t.Errorf("%s: Prev is not k1 or Cross is missing", what)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string][]byte{CACertFile: tt.files.cert, CAKeyFile: tt.files.key, CAPrevCertFile: tt.files.prevCert, CAPrevKeyFile: tt.files.prevKey} {
				if data != nil {
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			ca, err := LoadCA(dir)
			check(t, "LoadCA()", ca, err, tt.want, tt.prev)
			ca, err = ParseCAWithPrevious(tt.files.cert, tt.files.key, tt.files.prevCert, tt.files.prevKey)
			check(t, "ParseCAWithPrevious()", ca, err, tt.want, tt.prev)
			before := snapshot(t, dir)
			if tt.files.cert == nil {
				if _, err := LoadOrCreateCA(dir, "east"); !errors.Is(err, ErrCorruptCA) {
					t.Errorf("LoadOrCreateCA() error = %v, want ErrCorruptCA", err)
				}
				if diff := cmp.Diff(snapshot(t, dir), before); diff != "" {
					t.Errorf("LoadOrCreateCA() changed the dir (-got +want):\n%s", diff)
				}
			}

			err = FinishCARotation(dir)
			if tt.finished == nil {
				if err == nil {
					t.Fatal("FinishCARotation() = nil, want it to refuse")
				}
				if diff := cmp.Diff(snapshot(t, dir), before); diff != "" {
					t.Errorf("FinishCARotation() changed the dir (-got +want):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("FinishCARotation() error = %v", err)
			}
			if diff := cmp.Diff(snapshot(t, dir), map[string]string{CACertFile: string(tt.finished.cert), CAKeyFile: string(tt.finished.key)}); diff != "" {
				t.Errorf("after FinishCARotation() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseCAWithPreviousNone(t *testing.T) {
	k := newCAFiles(t, "east")
	for _, empty := range [][]byte{nil, {}} {
		ca, err := ParseCAWithPrevious(k.cert, k.key, empty, empty)
		if err != nil || ca.Prev != nil || ca.Cross != nil || !bytes.Equal(ca.CertPEM, k.cert) {
			t.Errorf("ParseCAWithPrevious(%q previous) = %v, want the CA alone, as ParseCA", empty, err)
		}
	}
	if _, err := ParseCAWithPrevious(nil, nil, nil, nil); !errors.Is(err, ErrCorruptCA) {
		t.Errorf("ParseCAWithPrevious(nothing) error = %v, want ErrCorruptCA", err)
	}
}

// A rotation and its finish, again and again, while other processes
// load the CA: every load finds a CA, the one in effect before or after
// a step, never a mix of two.
func TestRotateCAConcurrentLoads(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(dir, "east"); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var loads atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				ca, err := LoadCA(dir)
				if err != nil {
					t.Errorf("LoadCA() during a rotation error = %v", err)
					return
				}
				if ca.Prev != nil {
					if err := ca.Cross.CheckSignatureFrom(ca.Prev.Cert); err != nil || ca.Prev.Key.Equal(ca.Key) {
						t.Errorf("LoadCA() during a rotation: a Prev that does not endorse the CA (%v)", err)
						return
					}
				}
				loads.Add(1)
			}
		})
	}
	for i := 0; i < 10 && !t.Failed(); i++ {
		if err := RotateCA(dir, "east"); err != nil {
			t.Fatalf("RotateCA() #%d error = %v", i, err)
		}
		if err := FinishCARotation(dir); err != nil {
			t.Fatalf("FinishCARotation() #%d error = %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d loads", loads.Load())
	if diff := cmp.Diff(snapshotNames(t, dir), []string{CACertFile, CAKeyFile}); diff != "" {
		t.Errorf("files left (-got +want):\n%s", diff)
	}
}

func TestCross(t *testing.T) {
	r := rotate(t, "east")
	cross, cur, prev := r.cur.Cross, r.cur.Cert, r.old.Cert
	if !bytes.Equal(cross.RawSubject, cur.RawSubject) || !bytes.Equal(cross.SubjectKeyId, cur.SubjectKeyId) || !bytes.Equal(cross.RawSubjectPublicKeyInfo, cur.RawSubjectPublicKeyInfo) {
		t.Error("cross certificate: not the CA's subject, subject key id and key")
	}
	if !bytes.Equal(cross.RawIssuer, prev.RawSubject) || !bytes.Equal(cross.AuthorityKeyId, prev.SubjectKeyId) {
		t.Error("cross certificate: not issued by the previous CA")
	}
	if err := cross.CheckSignatureFrom(prev); err != nil {
		t.Errorf("cross certificate not signed by the previous CA: %v", err)
	}
	if !cross.IsCA || !cross.MaxPathLenZero || cross.NotAfter.After(prev.NotAfter) {
		t.Errorf("cross certificate: IsCA %v, MaxPathLenZero %v, NotAfter %v (previous CA's %v)", cross.IsCA, cross.MaxPathLenZero, cross.NotAfter, prev.NotAfter)
	}
	if _, err := cross.Verify(x509.VerifyOptions{Roots: poolOf(prev), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("cross certificate does not verify against the previous CA: %v", err)
	}
}

// What a rotating CA issues verifies for a peer that trusts only the
// previous CA (through the cross certificate), only the new one, or
// both; once the rotation finished, for a peer that trusts the new one
// and not for one that trusts only the previous one.
func TestRotationVerifies(t *testing.T) {
	r := rotate(t, "east")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chains := func(ca *CA) map[string]struct {
		chain []*x509.Certificate
		name  string
		usage x509.ExtKeyUsage
	} {
		srv, err := ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var srvChain []*x509.Certificate
		for _, der := range srv.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			srvChain = append(srvChain, c)
		}
		clientPEM, _, _, err := ca.IssueClient("link-token:1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		linkPEM, err := ca.IssueLink("west", &key.PublicKey, "1f", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]struct {
			chain []*x509.Certificate
			name  string
			usage x509.ExtKeyUsage
		}{
			"server": {srvChain, ServerName("east"), x509.ExtKeyUsageServerAuth},
			"client": {parseChain(t, clientPEM), "", x509.ExtKeyUsageClientAuth},
			"link":   {parseChain(t, linkPEM), "", x509.ExtKeyUsageClientAuth},
		}
	}
	for what, c := range chains(r.cur) {
		if what == "server" {
			// Issued by the previous CA, which every client trusts.
			if len(c.chain) != 1 || c.chain[0].CheckSignatureFrom(r.old.Cert) != nil {
				t.Errorf("server certificate of a rotating CA: chain of %d, want one certificate from the previous CA", len(c.chain))
			}
			for trust, roots := range map[string]*x509.CertPool{"previous CA only": poolOf(r.old.Cert), "Pool()": r.cur.Pool()} {
				if err := verify(c.chain, roots, c.name, c.usage); err != nil {
					t.Errorf("server certificate of a rotating CA, verified against the %s: %v", trust, err)
				}
			}
			continue
		}
		if len(c.chain) != 2 || !c.chain[1].Equal(r.cur.Cross) {
			t.Errorf("%s certificate of a rotating CA: chain of %d, want the certificate and the cross certificate", what, len(c.chain))
		}
		for trust, roots := range map[string]*x509.CertPool{"previous CA only": poolOf(r.old.Cert), "new CA only": poolOf(r.cur.Cert), "Pool()": r.cur.Pool()} {
			if err := verify(c.chain, roots, c.name, c.usage); err != nil {
				t.Errorf("%s certificate of a rotating CA, verified against the %s: %v", what, trust, err)
			}
		}
	}
	for what, c := range chains(r.done) {
		if len(c.chain) != 1 {
			t.Errorf("%s certificate after the rotation: chain of %d, want the certificate alone", what, len(c.chain))
		}
		if err := verify(c.chain, poolOf(r.cur.Cert), c.name, c.usage); err != nil {
			t.Errorf("%s certificate after the rotation, verified against the new CA: %v", what, err)
		}
		var uae x509.UnknownAuthorityError
		if err := verify(c.chain, poolOf(r.old.Cert), c.name, c.usage); !errors.As(err, &uae) {
			t.Errorf("%s certificate after the rotation, verified against the previous CA only: %v, want UnknownAuthorityError", what, err)
		}
	}
	// What the previous CA issued verifies against the rotating CA's pool.
	old, _, _, err := r.old.IssueClient("link-token:2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(parseChain(t, old), r.cur.Pool(), "", x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("certificate of the previous CA, verified against the rotating CA's Pool(): %v", err)
	}
}

// A CA of path length 0 (made before CAs could rotate) cannot endorse a
// successor for Go's verifier, which counts the cross certificate as an
// intermediate (RFC 5280 would not: it is self-issued). New CAs have path
// length 1, and a rotating CA's serving certificates come from the
// previous CA (IssueServer), so no client depends on the cross
// certificate to verify a server.
func TestCrossNeedsPathLen(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skiff site east CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	old := pemPair{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM}
	k2 := newCAFiles(t, "east")
	ca, err := ParseCAWithPrevious(k2.cert, k2.key, old.cert, old.key)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, _, err := ca.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, leafPEM)
	var cie x509.CertificateInvalidError
	if err := verify(chain, poolOf(ca.Prev.Cert), "", x509.ExtKeyUsageClientAuth); !errors.As(err, &cie) || cie.Reason != x509.TooManyIntermediates {
		t.Errorf("verified through a path length 0 CA: %v, want TooManyIntermediates", err)
	}
}

func TestRotatePEM(t *testing.T) {
	k1 := newCAFiles(t, "east")
	data := map[string][]byte{CACertFile: k1.cert, CAKeyFile: k1.key, "other": []byte("kept")}
	before := maps.Clone(data)
	rotated, err := RotatePEM(data, "east")
	if err != nil {
		t.Fatalf("RotatePEM() error = %v", err)
	}
	if diff := cmp.Diff(data, before); diff != "" {
		t.Errorf("RotatePEM() changed its input (-got +want):\n%s", diff)
	}
	if !bytes.Equal(rotated[CAPrevCertFile], k1.cert) || !bytes.Equal(rotated[CAPrevKeyFile], k1.key) || bytes.Equal(rotated[CACertFile], k1.cert) || string(rotated["other"]) != "kept" {
		t.Errorf("RotatePEM() = keys %v; want the CA previous, a new one current, other keys kept", slices.Sorted(maps.Keys(rotated)))
	}
	ca, err := ParseCAWithPrevious(rotated[CACertFile], rotated[CAKeyFile], rotated[CAPrevCertFile], rotated[CAPrevKeyFile])
	if err != nil || ca.Prev == nil || ca.Cross == nil || !bytes.Equal(ca.Prev.CertPEM, k1.cert) {
		t.Fatalf("ParseCAWithPrevious(RotatePEM()) = %v, want the new CA with k1 as Prev", err)
	}
	if got, want := ca.Cert.Subject.CommonName, "skiff site east CA"; got != want {
		t.Errorf("new CA's CN = %q, want %q", got, want)
	}
	if _, err := RotatePEM(rotated, "east"); !errors.Is(err, ErrRotationUnderway) {
		t.Errorf("RotatePEM() during a rotation error = %v, want ErrRotationUnderway", err)
	}
	if _, err := RotatePEM(map[string][]byte{"other": nil}, "east"); !errors.Is(err, ErrCorruptCA) {
		t.Errorf("RotatePEM() without a CA error = %v, want ErrCorruptCA", err)
	}

	beforeFinish := maps.Clone(rotated)
	finished := FinishPEM(rotated)
	if diff := cmp.Diff(rotated, beforeFinish); diff != "" {
		t.Errorf("FinishPEM() changed its input (-got +want):\n%s", diff)
	}
	want := map[string][]byte{CACertFile: rotated[CACertFile], CAKeyFile: rotated[CAKeyFile], "other": []byte("kept")}
	if diff := cmp.Diff(finished, want); diff != "" {
		t.Errorf("FinishPEM() (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(FinishPEM(finished), want); diff != "" {
		t.Errorf("FinishPEM() without a rotation (-got +want):\n%s", diff)
	}
}
