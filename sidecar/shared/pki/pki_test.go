package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "east-data")
	ca, err := LoadOrCreateCA(dir, "east")
	if err != nil {
		t.Fatalf("LoadOrCreateCA() error = %v", err)
	}
	if got, want := ca.Cert.Subject.CommonName, "skiff site east CA"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if !ca.Cert.IsCA || ca.Cert.MaxPathLen != 1 {
		t.Errorf("IsCA = %v, MaxPathLen = %d; want a CA that signs leaves and its successor's cross certificate only", ca.Cert.IsCA, ca.Cert.MaxPathLen)
	}
	if life := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); life < CAValidity || life > CAValidity+2*time.Hour {
		t.Errorf("CA valid for %s, want about %s", life, CAValidity)
	}
	if ca.Cert.PublicKeyAlgorithm != x509.ECDSA || ca.Key.Curve.Params().Name != "P-256" {
		t.Errorf("key %v %s, want ECDSA P-256", ca.Cert.PublicKeyAlgorithm, ca.Key.Curve.Params().Name)
	}
	wantModes := map[string]os.FileMode{dir: os.ModeDir | 0o700, filepath.Join(dir, CACertFile): 0o600, filepath.Join(dir, CAKeyFile): 0o600}
	for path, want := range wantModes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("data dir holds %d files, want ca.crt and ca.key only (no temporary files left)", len(entries))
	}

	again, err := LoadOrCreateCA(dir, "east")
	if err != nil {
		t.Fatalf("LoadOrCreateCA() again error = %v", err)
	}
	if !again.Cert.Equal(ca.Cert) || !again.Key.Equal(ca.Key) || !bytes.Equal(again.CertPEM, ca.CertPEM) {
		t.Error("reloading the data dir gave a different CA")
	}
}

func TestLoadOrCreateCAConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	cas := make([]*CA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cas[i], errs[i] = LoadOrCreateCA(dir, "east") })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadOrCreateCA() #%d error = %v", i, errs[i])
		}
		if !cas[i].Cert.Equal(cas[0].Cert) || !cas[i].Key.Equal(cas[0].Key) {
			t.Errorf("caller #%d got a different CA than #0", i)
		}
	}
}

func TestLoadOrCreateCACorrupt(t *testing.T) {
	other := newCA(t, "other")
	leafPEM, _, _, err := other.IssueClient("leaf", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(other.dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files map[string][]byte // written over a fresh CA; nil removes
	}{
		{"certificate is garbage", map[string][]byte{CACertFile: []byte("not PEM\n")}},
		{"key is garbage", map[string][]byte{CAKeyFile: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}},
		{"key of another CA", map[string][]byte{CAKeyFile: otherKey}},
		{"certificate is not a CA", map[string][]byte{CACertFile: leafPEM}},
		{"key without certificate", map[string][]byte{CACertFile: nil}},
		{"certificate without key", map[string][]byte{CAKeyFile: nil}},
	}
	defer func(d time.Duration) { createWait = d }(createWait)
	createWait = 50 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newCA(t, "east").dir
			for name, data := range tt.files {
				path := filepath.Join(dir, name)
				if data == nil {
					if err := os.Remove(path); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, dir)
			_, err := LoadOrCreateCA(dir, "east")
			if !errors.Is(err, ErrCorruptCA) {
				t.Fatalf("LoadOrCreateCA() error = %v, want ErrCorruptCA", err)
			}
			if diff := cmp.Diff(snapshot(t, dir), before); diff != "" {
				t.Errorf("LoadOrCreateCA() changed the data dir (-got +want):\n%s", diff)
			}
		})
	}
}

// snapshot returns the files of dir and their contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

type testCA struct {
	*CA
	dir string
}

func newCA(t *testing.T, site string) testCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, site)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{ca, dir}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t, "east")
	cert, err := ca.IssueServer("east", []string{"127.0.0.1", "east.example.com", "", "::1", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueServer() error = %v", err)
	}
	leaf := cert.Leaf
	if diff := cmp.Diff(leaf.DNSNames, []string{"east.skiff.local", "east.example.com"}); diff != "" {
		t.Errorf("DNS SANs (-got +want):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff(ips, []string{"127.0.0.1", "::1"}); diff != "" {
		t.Errorf("IP SANs (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}); diff != "" {
		t.Errorf("ExtKeyUsage (-got +want):\n%s", diff)
	}
	for _, name := range []string{"east.skiff.local", "east.example.com", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}); err != nil {
			t.Errorf("Verify(%s) error = %v", name, err)
		}
	}
	if _, err := ca.IssueServer("east", nil, 0); err == nil {
		t.Error("IssueServer() with zero validity succeeded")
	}
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t, "east")
	certPEM, keyPEM, serial, err := ca.IssueClient("link-token:abc", 365*24*time.Hour)
	if err != nil {
		t.Fatalf("IssueClient() error = %v", err)
	}
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.SerialNumber.Cmp(serial) != 0 || cert.Subject.CommonName != "link-token:abc" {
		t.Errorf("serial %x CN %q, want %x link-token:abc", cert.SerialNumber, cert.Subject.CommonName, serial)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify for client auth: %v", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("certificate and key do not pair: %v", err)
	}
}

// handshake runs a TLS server and client over 127.0.0.1 and exchanges one
// message each way. It returns what each side saw go wrong.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			done <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte("pong"))
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.HandshakeContext(t.Context())
	if clientErr == nil {
		if tc.ConnectionState().Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(tc.ConnectionState().Version))
		}
		_, clientErr = tc.Write([]byte("ping"))
	}
	if clientErr == nil {
		buf := make([]byte, 4)
		_, clientErr = io.ReadFull(tc, buf)
		if clientErr == nil && string(buf) != "pong" {
			t.Errorf("client read %q, want pong", buf)
		}
	}
	if clientErr != nil {
		c.Close()
	}
	return <-done, clientErr
}

func TestHandshake(t *testing.T) {
	ca := newCA(t, "east")
	srvCert, err := ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, serial, err := ca.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := ServerTLS(ca.CA, srvCert)
	peerSerial := make(chan string, 1)
	srv.VerifyConnection = func(cs tls.ConnectionState) error {
		peerSerial <- cs.PeerCertificates[0].SerialNumber.Text(16)
		return nil
	}
	cli, err := ClientTLS(ca.CertPEM, certPEM, keyPEM, ServerName("east"))
	if err != nil {
		t.Fatal(err)
	}
	serverErr, clientErr := handshake(t, srv, cli)
	if serverErr != nil || clientErr != nil {
		t.Fatalf("handshake: server error = %v, client error = %v", serverErr, clientErr)
	}
	if got := <-peerSerial; got != serial.Text(16) {
		t.Errorf("server saw client serial %s, want %s", got, serial.Text(16))
	}
}

func TestHandshakeRejects(t *testing.T) {
	east, other := newCA(t, "east"), newCA(t, "other")
	srvCert, err := east.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherSrvCert, err := other.IssueServer("other", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eastCert, eastKey, _, err := east.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, _, err := other.IssueClient("link-token:2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := func(caPEM, cert, key []byte, name string) *tls.Config {
		c, err := ClientTLS(caPEM, cert, key, name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tls12 := clientTLS(east.CertPEM, eastCert, eastKey, ServerName("east"))
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		serverErr func(error) bool
		clientErr func(error) bool
	}{
		{
			name:   "client certificate from another CA",
			server: ServerTLS(east.CA, srvCert),
			client: clientTLS(east.CertPEM, otherCert, otherKey, ServerName("east")),
			serverErr: func(err error) bool {
				var cve *tls.CertificateVerificationError
				var uae x509.UnknownAuthorityError
				return errors.As(err, &cve) && errors.As(err, &uae)
			},
			clientErr: isRemoteError,
		},
		{
			name:   "server certificate from another CA",
			server: ServerTLS(other.CA, otherSrvCert),
			client: clientTLS(east.CertPEM, eastCert, eastKey, ServerName("other")),
			clientErr: func(err error) bool {
				var uae x509.UnknownAuthorityError
				return errors.As(err, &uae)
			},
			serverErr: func(err error) bool { return err != nil },
		},
		{
			name:   "server certificate for another site",
			server: ServerTLS(east.CA, srvCert),
			client: clientTLS(east.CertPEM, eastCert, eastKey, ServerName("west")),
			clientErr: func(err error) bool {
				var he x509.HostnameError
				return errors.As(err, &he)
			},
			serverErr: func(err error) bool { return err != nil },
		},
		{
			name:   "client without a certificate",
			server: ServerTLS(east.CA, srvCert),
			client: &tls.Config{RootCAs: east.Pool(), ServerName: ServerName("east"), MinVersion: tls.VersionTLS13},
			serverErr: func(err error) bool {
				return err != nil
			},
			clientErr: isRemoteError,
		},
		{
			name:   "TLS 1.2 client",
			server: ServerTLS(east.CA, srvCert),
			client: tls12,
			serverErr: func(err error) bool {
				return err != nil
			},
			clientErr: isRemoteError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, tt.server, tt.client)
			if !tt.serverErr(serverErr) {
				t.Errorf("server error = %v (%T)", serverErr, serverErr)
			}
			if !tt.clientErr(clientErr) {
				t.Errorf("client error = %v (%T)", clientErr, clientErr)
			}
		})
	}
}

// isRemoteError reports a TLS alert from the peer.
func isRemoteError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

func TestClientTLSErrors(t *testing.T) {
	ca := newCA(t, "east")
	certPEM, keyPEM, _, err := ca.IssueClient("c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _, err := ca.IssueClient("d", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		caPEM, cert, key []byte
	}{
		{"no CA", nil, certPEM, keyPEM},
		{"CA is not PEM", []byte("garbage"), certPEM, keyPEM},
		{"key of another certificate", ca.CertPEM, certPEM, otherKey},
		{"no certificate", ca.CertPEM, nil, keyPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ClientTLS(tt.caPEM, tt.cert, tt.key, "east.skiff.local"); err == nil {
				t.Error("ClientTLS() succeeded")
			}
		})
	}
}

// ParseCertificates takes a chain or a bundle of up to max certificates
// and refuses anything else in it.
func TestParseCertificates(t *testing.T) {
	ca := newCA(t, "east")
	two := append(append([]byte{}, ca.CertPEM...), ca.CertPEM...)
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	tests := []struct {
		name    string
		data    []byte
		max     int
		want    int
		wantErr bool
	}{
		{"one", ca.CertPEM, 4, 1, false},
		{"two", two, 2, 2, false},
		{"more than max", two, 1, 0, true},
		{"nothing", nil, 4, 0, true},
		{"not PEM", []byte("hello"), 4, 0, true},
		{"a key after the certificate", append(append([]byte{}, ca.CertPEM...), key...), 4, 0, true},
		{"a certificate that does not parse", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), 4, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertificates(tt.data, tt.max)
			if (err != nil) != tt.wantErr || len(got) != tt.want {
				t.Errorf("ParseCertificates() = %d certificates, error %v; want %d, error %v", len(got), err, tt.want, tt.wantErr)
			}
		})
	}
}
