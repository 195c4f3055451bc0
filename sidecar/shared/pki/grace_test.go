package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// The link port's client verification: a link certificate is admitted
// until LinkGraceEnd, as long again as it lasted after it expired; any
// other certificate, and a link certificate past its grace or from
// another CA, is refused as crypto/tls refuses it.
func TestVerifyClientGrace(t *testing.T) {
	east, key, link := linkFixture(t)
	other, err := LoadOrCreateCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	raw := func(pemBytes []byte) [][]byte {
		chain, err := ParseCertificates(pemBytes, 4)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, c := range chain {
			out = append(out, c.Raw)
		}
		return out
	}
	otherLink, err := other.IssueLink("west", &key.PublicKey, "1f", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, _, _, err := east.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name  string
		certs [][]byte
		at    time.Time
		ok    bool
	}{
		{"link certificate, valid", raw(link), now, true},
		{"link certificate, expired a minute ago", raw(link), now.Add(time.Hour + time.Minute), true},
		{"link certificate, expired within its grace", raw(link), now.Add(2 * time.Hour), true},
		{"link certificate, past its grace", raw(link), now.Add(2*time.Hour + 10*time.Minute), false},
		{"link certificate of another CA, expired", raw(otherLink), now.Add(time.Hour + time.Minute), false},
		{"link certificate of another CA, valid", raw(otherLink), now, false},
		{"token certificate, valid", raw(client), now, true},
		{"token certificate, expired a minute ago", raw(client), now.Add(time.Hour + time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyClient(tc.certs, east.Pool(), tc.at)
			if (err == nil) != tc.ok {
				t.Fatalf("verifyClient = %v, want admitted %v", err, tc.ok)
			}
			var cve *tls.CertificateVerificationError
			if err != nil && !errors.As(err, &cve) {
				t.Errorf("error %T, want a *tls.CertificateVerificationError as crypto/tls returns", err)
			}
		})
	}
	if err := verifyClient(nil, east.Pool(), now); err == nil {
		t.Error("no certificate admitted")
	}
	if err := verifyClient([][]byte{[]byte("not DER")}, east.Pool(), now); err == nil {
		t.Error("a certificate that does not parse admitted")
	}
}

// Through a handshake: ServerTLS (the link port) admits a link
// certificate an hour past its end, StrictServerTLS (the controller's
// xDS port) refuses it as crypto/tls does.
func TestServerTLSGrace(t *testing.T) {
	east, key, linkPEM := linkFixture(t)
	chain, err := ParseCertificates(linkPEM, 4)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := east.IssueServer("east", []string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: east.Pool(), ServerName: ServerName("east"),
		Certificates: []tls.Certificate{{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key}}}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	grace := ServerTLS(east, srv)
	grace.Time = later
	if serverErr, clientErr := handshake(t, grace, client); serverErr != nil || clientErr != nil {
		t.Errorf("ServerTLS, a link certificate an hour past its end: server %v, client %v; want it admitted", serverErr, clientErr)
	}
	strict := StrictServerTLS(east, srv)
	strict.Time = later
	serverErr, _ := handshake(t, strict, client)
	var invalid x509.CertificateInvalidError
	if !errors.As(serverErr, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("StrictServerTLS, the same certificate: %v, want it refused as expired", serverErr)
	}
}

// linkFixture returns site east's CA, the key of site west, and the link
// certificate (PEM, an hour) east issued west for it.
func linkFixture(t *testing.T) (*CA, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	east, err := LoadOrCreateCA(t.TempDir(), "east")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	link, err := east.IssueLink("west", &key.PublicKey, "1f", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return east, key, link
}
