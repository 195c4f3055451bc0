package pki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

// The link port's serving certificate is issued again once two thirds of
// its life are over; before that the same one is served.
func TestRenewingServerTLS(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), "east")
	if err != nil {
		t.Fatal(err)
	}
	issued := 0
	issue := func() (tls.Certificate, error) {
		issued++
		return ca.IssueServer("east", []string{"127.0.0.1"}, 3*time.Second)
	}
	first, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	cfg := RenewingServerTLS(ca, first, issue)
	serial := func() string {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	s0 := serial()
	if serial() != s0 || issued != 1 {
		t.Fatalf("renewed before its time (issued %d)", issued)
	}
	leaf, _ := x509.ParseCertificate(first.Certificate[0])
	time.Sleep(time.Until(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)*2/3)) + 50*time.Millisecond)
	if s1 := serial(); s1 == s0 || issued != 2 {
		t.Errorf("not renewed after two thirds of its life (serial %s, issued %d)", s1, issued)
	}
}
