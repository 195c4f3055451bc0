package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"
)

// clientOf returns a link dialer's configuration that trusts the PEM
// bundle roots and presents a client certificate from ca.
func clientOf(t *testing.T, roots []byte, ca *CA) *tls.Config {
	t.Helper()
	certPEM, keyPEM, _, err := ca.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ClientTLS(roots, certPEM, keyPEM, ServerName("east"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// isUnknownAuthority reports a certificate verification error for a
// certificate of a CA that is not trusted.
func isUnknownAuthority(err error) bool {
	var uae x509.UnknownAuthorityError
	return errors.As(err, &uae)
}

// A rotating CA's server (its certificate issued by the previous CA) is
// verified by clients that trust only the previous CA or both, and
// accepts client certificates of both; a server whose CA is still the previous one accepts client
// certificates of the new CA. Once the rotation finished, the previous
// CA is neither trusted nor able to verify the new CA's server.
func TestHandshakeDuringRotation(t *testing.T) {
	r := rotate(t, "east")
	serve := func(ca *CA) *tls.Config {
		cert, err := ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return ServerTLS(ca, cert)
	}
	tests := []struct {
		name           string
		server, client *tls.Config
		wantErr        bool
	}{
		{"client of the previous CA, rotating server", serve(r.cur), clientOf(t, r.old.CertPEM, r.old), false},
		{"client of the new CA only, rotating server", serve(r.cur), clientOf(t, r.cur.CertPEM, r.done), true},
		{"client of the rotating CA, rotating server", serve(r.cur), clientOf(t, r.cur.BundlePEM(), r.cur), false},
		{"client certificate of the rotating CA, server of the previous CA", serve(r.old), clientOf(t, r.old.CertPEM, r.cur), false},
		{"client of the previous CA, finished server", serve(r.done), clientOf(t, r.old.CertPEM, r.done), true},
		{"client certificate of the previous CA, finished server", serve(r.done), clientOf(t, r.done.CertPEM, r.old), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, tt.server, tt.client)
			if !tt.wantErr {
				if serverErr != nil || clientErr != nil {
					t.Fatalf("handshake: server error = %v, client error = %v", serverErr, clientErr)
				}
				return
			}
			if !isUnknownAuthority(serverErr) && !isUnknownAuthority(clientErr) {
				t.Errorf("handshake: server error = %v, client error = %v; want an unknown authority", serverErr, clientErr)
			}
		})
	}
}

// servedBy returns a client configuration like cfg that records the
// serving certificate's chain of each handshake.
func servedBy(cfg *tls.Config) (*tls.Config, func() []*x509.Certificate) {
	cfg = cfg.Clone()
	var mu sync.Mutex
	var last []*x509.Certificate
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		defer mu.Unlock()
		last = cs.PeerCertificates
		return nil
	}
	return cfg, func() []*x509.Certificate {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

func TestAuthorityServerTLS(t *testing.T) {
	r := rotate(t, "east")
	a := NewAuthority(r.old)
	var mu sync.Mutex
	issued := 0
	cfg := a.ServerTLS(func(ca *CA) (tls.Certificate, error) {
		mu.Lock()
		issued++
		mu.Unlock()
		return ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
	})
	if issued != 0 {
		t.Fatalf("issued %d certificates before the first handshake", issued)
	}
	steps := []struct {
		name       string
		ca         *CA
		issuer     *CA // of the serving certificate
		chain      int
		accepted   map[string]*tls.Config
		refused    map[string]*tls.Config
		wantIssued int
	}{
		{
			name: "before the rotation", ca: r.old, issuer: r.old, chain: 1, wantIssued: 1,
			accepted: map[string]*tls.Config{"client of the CA": clientOf(t, r.old.CertPEM, r.old)},
			refused:  map[string]*tls.Config{"client certificate of the next CA": clientOf(t, r.old.CertPEM, r.done)},
		},
		{
			name: "rotation started", ca: r.cur, issuer: r.old, chain: 1, wantIssued: 2,
			accepted: map[string]*tls.Config{
				"client of the previous CA":       clientOf(t, r.old.CertPEM, r.old),
				"client of both, new certificate": clientOf(t, r.cur.BundlePEM(), r.done),
			},
		},
		{
			name: "rotation finished", ca: r.done, issuer: r.done, chain: 1, wantIssued: 3,
			accepted: map[string]*tls.Config{"client of the new CA": clientOf(t, r.cur.CertPEM, r.done)},
			refused: map[string]*tls.Config{
				"client certificate of the previous CA": clientOf(t, r.cur.CertPEM, r.old),
				"client that trusts the previous CA":    clientOf(t, r.old.CertPEM, r.done),
			},
		},
	}
	for _, st := range steps {
		a.Set(st.ca)
		if a.CA() != st.ca {
			t.Fatalf("%s: CA() is not the CA Set", st.name)
		}
		for name, client := range st.accepted {
			client, served := servedBy(client)
			serverErr, clientErr := handshake(t, cfg, client)
			if serverErr != nil || clientErr != nil {
				t.Errorf("%s, %s: server error = %v, client error = %v", st.name, name, serverErr, clientErr)
				continue
			}
			chain := served()
			if len(chain) != st.chain || chain[0].CheckSignatureFrom(st.issuer.Cert) != nil {
				t.Errorf("%s, %s: served a chain of %d not issued by the expected CA, want %d from it", st.name, name, len(chain), st.chain)
			}
		}
		for name, client := range st.refused {
			serverErr, clientErr := handshake(t, cfg, client)
			if !isUnknownAuthority(serverErr) && !isUnknownAuthority(clientErr) {
				t.Errorf("%s, %s: server error = %v, client error = %v; want an unknown authority", st.name, name, serverErr, clientErr)
			}
		}
		mu.Lock()
		if issued != st.wantIssued {
			t.Errorf("%s: issued %d serving certificates in all, want %d (once per CA)", st.name, issued, st.wantIssued)
		}
		mu.Unlock()
	}
}

// The serving certificate is issued again once two thirds of its life
// are over; a failed issue keeps the one it has, and without one fails
// the handshake.
func TestAuthorityServerTLSRenewal(t *testing.T) {
	r := rotate(t, "east")
	a := NewAuthority(r.old)
	now := time.Now()
	lives := [][2]time.Time{
		{now.Add(-2 * time.Hour), now.Add(time.Hour)}, // two thirds over
		{now.Add(-time.Hour), now.Add(time.Hour)},
	}
	fail := false
	cfg := a.ServerTLS(func(ca *CA) (tls.Certificate, error) {
		if fail {
			return tls.Certificate{}, errors.New("no")
		}
		life := lives[0]
		lives = lives[1:]
		return certLiving(t, ca, life[0], life[1]), nil
	})
	serial := func() string {
		t.Helper()
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	s0, s1 := serial(), serial()
	if s1 == s0 {
		t.Error("not issued again after two thirds of its life")
	}
	if serial() != s1 {
		t.Error("issued again before two thirds of its life")
	}
	fail = true
	a.Set(r.cur)
	if serial() != s1 {
		t.Error("a failed issue did not keep the certificate it had")
	}

	b := NewAuthority(r.old)
	_, err := b.ServerTLS(func(*CA) (tls.Certificate, error) { return tls.Certificate{}, errors.New("no") }).GetCertificate(&tls.ClientHelloInfo{})
	if err == nil {
		t.Error("GetCertificate() without any certificate succeeded")
	}
	if _, err := NewAuthority(nil).ServerTLS(nil).GetConfigForClient(&tls.ClientHelloInfo{}); !errors.Is(err, errNoCA) {
		t.Errorf("GetConfigForClient() without a CA error = %v, want errNoCA", err)
	}
}

// certLiving returns a serving certificate of ca valid from notBefore to
// notAfter.
func certLiving(t *testing.T, ca *CA, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: notBefore, NotAfter: notAfter, DNSNames: []string{ServerName("east")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: ca.Chain(der), PrivateKey: key, Leaf: leaf}
}

// Two gateways of a site, one of which took the rotated CA: each dials
// the other (SiblingTLS) and is accepted (ServerTLS). Once the rotation
// finished on one, the one still on the previous CA no longer is.
func TestAuthoritySiblingTLS(t *testing.T) {
	r := rotate(t, "east")
	issue := func(ca *CA) (tls.Certificate, error) {
		return ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
	}
	behind, ahead := NewAuthority(r.old), NewAuthority(r.cur)
	dial := func(from, to *Authority) (error, error) {
		return handshake(t, to.ServerTLS(issue), from.SiblingTLS("east"))
	}
	for _, d := range []struct {
		name     string
		from, to *Authority
	}{{"previous CA to rotating CA", behind, ahead}, {"rotating CA to previous CA", ahead, behind}} {
		if serverErr, clientErr := dial(d.from, d.to); serverErr != nil || clientErr != nil {
			t.Errorf("%s: server error = %v, client error = %v", d.name, serverErr, clientErr)
		}
	}

	// The sibling certificate is a link certificate for the site key.
	cfg := ahead.SiblingTLS("east")
	cert, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if id, err := ParseLinkIdentity(leaf); err != nil || id != (LinkIdentity{Site: "east", TokenID: SiblingLinkID}) || !r.cur.Key.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("sibling certificate: %+v, %v; want a link certificate of east for the site key", id, err)
	}
	if len(cert.Certificate) != 2 {
		t.Errorf("sibling certificate of a rotating CA: chain of %d, want 2", len(cert.Certificate))
	}

	// Verified under the site's server name.
	var he x509.HostnameError
	if _, clientErr := handshake(t, ahead.ServerTLS(issue), behind.SiblingTLS("west")); !errors.As(clientErr, &he) {
		t.Errorf("dialling a gateway of east as a sibling of west: client error = %v, want a HostnameError", clientErr)
	}

	ahead.Set(r.done)
	for _, d := range []struct {
		name     string
		from, to *Authority
	}{{"previous CA to finished CA", behind, ahead}, {"finished CA to previous CA", ahead, behind}} {
		serverErr, clientErr := dial(d.from, d.to)
		if !isUnknownAuthority(serverErr) && !isUnknownAuthority(clientErr) {
			t.Errorf("%s: server error = %v, client error = %v; want an unknown authority", d.name, serverErr, clientErr)
		}
	}
}

// Handshakes go on while the CA changes under them: every one with a
// client that trusts both CAs and presents a certificate of the rotating
// one succeeds, whichever CA it meets.
func TestAuthorityConcurrentSet(t *testing.T) {
	r := rotate(t, "east")
	a := NewAuthority(r.old)
	server := a.ServerTLS(func(ca *CA) (tls.Certificate, error) {
		return ca.IssueServer("east", []string{"127.0.0.1"}, time.Hour)
	})
	client := clientOf(t, r.cur.BundlePEM(), r.cur)
	sibling := a.SiblingTLS("east")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.Set([]*CA{r.old, r.cur, r.done}[i%3])
			time.Sleep(time.Millisecond)
		}
	})
	for i := range 20 {
		if serverErr, clientErr := handshake(t, server, client); serverErr != nil || clientErr != nil {
			t.Errorf("handshake #%d: server error = %v, client error = %v", i, serverErr, clientErr)
		}
		if _, err := sibling.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil {
			t.Errorf("sibling certificate #%d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}
