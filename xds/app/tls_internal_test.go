package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
)

// The xDS listener refuses every handshake until the site CA is known,
// then serves clients of that CA but not another site's link certificate;
// a replaced CA is used from the next handshake on, and clients of the
// old one are refused.
func TestServerTLSCA(t *testing.T) {
	s := newServerTLS("east", []string{"127.0.0.1"}, testr.New(t))
	lis, err := tls.Listen("tcp", "127.0.0.1:0", s.config())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				c.Write([]byte("x")) // a TLS 1.3 client learns of a refused certificate on its first read
			}()
		}
	}()
	dialWith := func(cfg *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	}
	dial := func(ca *pki.CA) error {
		certPEM, keyPEM, _, err := ca.IssueClient("client", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pki.ClientTLS(ca.CertPEM, certPEM, keyPEM, xdsclient.ServerName("east"))
		if err != nil {
			t.Fatal(err)
		}
		return dialWith(cfg)
	}
	newCA := func() *pki.CA {
		ca, err := pki.LoadOrCreateCA(t.TempDir(), "east")
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	first, second := newCA(), newCA()

	if s.ready() {
		t.Fatal("ready without a CA")
	}
	if _, err := s.current(); !errors.Is(err, errNoCA) {
		t.Fatalf("config without a CA: %v, want errNoCA", err)
	}
	if err := dial(first); err == nil {
		t.Fatal("a handshake succeeded before the CA was known")
	}

	if changed, err := s.setCA(first); err != nil || !changed {
		t.Fatalf("setCA: %v, %v", changed, err)
	}
	if changed, err := s.setCA(first); err != nil || changed {
		t.Fatalf("setCA with the same CA: changed %v, %v", changed, err)
	}
	if err := dial(first); err != nil {
		t.Fatalf("a client of the CA: %v", err)
	}

	// A link certificate this CA issued to west, for its link, is refused.
	westKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	linkPEM, err := first.IssueLink("west", &westKey.PublicKey, "1f", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(westKey)
	if err != nil {
		t.Fatal(err)
	}
	linkCfg, err := pki.ClientTLS(first.CertPEM, linkPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), xdsclient.ServerName("east"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dialWith(linkCfg); err == nil || !strings.Contains(err.Error(), "tls: bad certificate") {
		t.Fatalf("west's link certificate: %v, want it refused (bad certificate)", err)
	}

	// A link token this site gave to another site is refused; a member
	// token of the same CA is served.
	for _, tc := range []struct {
		member bool
		issue  func(*pki.CA, string, string, time.Duration, time.Time) (*token.Token, error)
	}{
		{false, func(ca *pki.CA, site, ep string, ttl time.Duration, now time.Time) (*token.Token, error) {
			return token.Issue(ca, site, ep, ttl, 1, now)
		}},
		{true, token.IssueMember},
	} {
		tok, err := tc.issue(first, "east", "127.0.0.1:1", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pki.ClientTLS(first.CertPEM, []byte(tok.Cert), []byte(tok.Key), xdsclient.ServerName("east"))
		if err != nil {
			t.Fatal(err)
		}
		err = dialWith(cfg)
		if tc.member && err != nil {
			t.Errorf("a member token: %v, want it served", err)
		}
		if !tc.member && (err == nil || !strings.Contains(err.Error(), "tls: bad certificate")) {
			t.Errorf("a link token: %v, want it refused (bad certificate)", err)
		}
	}

	if changed, err := s.setCA(second); err != nil || !changed {
		t.Fatalf("setCA with a new CA: %v, %v", changed, err)
	}
	if err := dial(second); err != nil {
		t.Fatalf("a client of the new CA: %v", err)
	}
	if err := dial(first); err == nil {
		t.Fatal("a client of the replaced CA was served")
	}
}
