package router

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// Link certificates that last 6 s: east renews west's over the link,
// twice while one stream stays open across the renewals and the link
// stays up; west saves each new one and dials with it. The first one has
// expired by then, so a west that dials again (a restart) gets in only
// with the renewed one.
func TestLinkCertRenewal(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	eastDir := t.TempDir()
	east := startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, linkValidity: 6 * time.Second,
		svc: Services{Connectors: []Connector{echoService(t, "east-1")}}})
	store := &certStore{}
	spec := store.spec(linkSpecTo(t, east, eastDir, east.r.LinkAddr().String()))
	port := tu.FreePort(t, "127.0.0.1")
	westDir := t.TempDir()
	west := startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", dir: westDir, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e := echoAnsweredBy(t, addr, "east-1")
	defer e.c.Close()
	linkID := func() string {
		st := west.r.Status()
		if len(st.Links) != 1 {
			return fmt.Sprintf("%d links", len(st.Links))
		}
		return st.Links[0].ID
	}
	first := linkID()
	tu.Eventually(t, 20*time.Second, "two renewals", func() error {
		if err := e.roundTrip("across renewals"); err != nil {
			t.Fatalf("the open stream: %v", err)
		}
		n := len(store.all())
		if n < 3 {
			return fmt.Errorf("%d certificates saved", n)
		}
		return nil
	})
	if got := linkID(); got != first {
		t.Errorf("the link was replaced (%s, then %s): a renewal must not drop it", first, got)
	}
	serials := map[string]bool{}
	var last *x509.Certificate
	for _, b := range store.all() {
		block, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		serials[c.SerialNumber.String()] = true
		last = c
	}
	if len(serials) < 3 {
		t.Errorf("%d distinct certificates among those saved", len(serials))
	}
	var m dto.Metric
	west.r.m.CertExpiry.WithLabelValues("link", "east").Write(&m)
	if got := m.GetGauge().GetValue(); got != float64(last.NotAfter.Unix()) {
		t.Errorf("skiff_certificate_expiry_timestamp_seconds{kind=link,name=east} = %v, want the last certificate's %d", got, last.NotAfter.Unix())
	}
	east.r.m.LinkCertsRenewed.WithLabelValues("west").Write(&m)
	if got := m.GetCounter().GetValue(); got < 2 {
		t.Errorf("skiff_link_certificates_renewed_total{peer=west} = %v, want at least 2", got)
	}

	// A new west (a restart) with the last certificate: the first has
	// expired, and the token is used up, so only the renewed one gets in.
	e.c.Close()
	west.r.Drain() // no drain timeout: it stops at once
	west.waitStopped(t)
	port2 := tu.FreePort(t, "127.0.0.1")
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-2", dir: westDir, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port2}}}})
	tu.Eventually(t, 10*time.Second, "a restarted west dials with the renewed certificate", reachEcho(fmt.Sprintf("127.0.0.1:%d", port2), "east-1"))
}

// A stored link certificate that expires while its peer is away: a west
// that started with it while it was still valid (a pod recreated while
// the other site was being reinstalled) and dialled in vain until it
// expired offers it when the peer is back, and the peer, which admits an
// expired link certificate within its grace (pki.LinkGraceEnd), answers
// with a new one. The token cannot stand in: here its certificate is
// from a CA east does not trust, as after a CA rotation.
func TestLinkCertExpiresWhilePeerAway(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	eastDir := t.TempDir()
	linkListen := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t, "127.0.0.1"))
	eastCfg := drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, linkValidity: 10 * time.Second, linkListen: linkListen,
		svc: Services{Connectors: []Connector{echoService(t, "east-1")}}}
	east := startDrainNode(t, eastCfg)
	store := &certStore{}
	spec := store.spec(linkSpecTo(t, east, eastDir, linkListen))
	westDir := t.TempDir()
	port := tu.FreePort(t, "127.0.0.1")
	west := startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", dir: westDir, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	tu.Eventually(t, 10*time.Second, "west reaches east", reachEcho(fmt.Sprintf("127.0.0.1:%d", port), "east-1"))

	// Both sites go away; west comes back first, with a certificate that
	// is still valid, and dials an east that is not there.
	east.r.Drain()
	east.waitStopped(t)
	west.r.Drain()
	west.waitStopped(t)
	saved := store.all()
	first := len(saved)
	block, _ := pem.Decode(saved[first-1])
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// A token east no longer trusts: its certificate from another CA.
	spec = untrustedToken(t, spec)
	port2 := tu.FreePort(t, "127.0.0.1")
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-2", dir: westDir, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port2}}}})
	time.Sleep(time.Until(cert.NotAfter) + 500*time.Millisecond)
	startDrainNode(t, eastCfg)
	tu.Eventually(t, 15*time.Second, "west links again with its expired certificate", reachEcho(fmt.Sprintf("127.0.0.1:%d", port2), "east-1"))
	saved = store.all()
	if len(saved) == first {
		t.Fatal("west saved no new link certificate")
	}
	block, _ = pem.Decode(saved[len(saved)-1])
	renewed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.NotAfter.After(time.Now()) {
		t.Errorf("the certificate west saved last ends %v, in the past", renewed.NotAfter)
	}
}

// certStore keeps the link certificates a dialler saves, in order; the
// last is what it reads.
type certStore struct {
	mu    sync.Mutex
	saved [][]byte
}

// spec returns spec reading and saving its link certificate in s.
func (s *certStore) spec(spec LinkSpec) LinkSpec {
	spec.LinkCert = func() ([]byte, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.saved) == 0 {
			return nil, nil
		}
		return s.saved[len(s.saved)-1], nil
	}
	spec.SaveLinkCert = func(b []byte) error { s.mu.Lock(); defer s.mu.Unlock(); s.saved = append(s.saved, b); return nil }
	return spec
}

func (s *certStore) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.saved)
}

// A dialler whose certificate the link port refuses learns from the
// error what may be the cause and that the peer's log names it: the port
// verifies client certificates itself, so TLS's alert is always "bad
// certificate".
func TestRefusedCertificateHint(t *testing.T) {
	eastDir := t.TempDir()
	east := startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true})
	spec := untrustedToken(t, linkSpecTo(t, east, eastDir, east.r.LinkAddr().String()))
	west := startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", dir: t.TempDir()})
	_, err := west.r.newDialer(spec).dialLink(t.Context())
	if err == nil || !strings.Contains(err.Error(), "tls: bad certificate (the peer refused this side's certificate, and its log says why") {
		t.Fatalf("dial with a token from another CA: %v, want the refusal with its hint", err)
	}
}

// untrustedToken returns spec presenting, in place of its token's
// certificate, one of a token from another CA of the same site name (as
// after a CA rotation, to the peer).
func untrustedToken(t *testing.T, spec LinkSpec) LinkSpec {
	t.Helper()
	other, err := pki.LoadOrCreateCA(t.TempDir(), spec.PeerSite)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Issue(other, spec.PeerSite, spec.Endpoint, time.Hour, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tok.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	spec.TLS = spec.TLS.Clone()
	spec.TLS.GetClientCertificate = cfg.GetClientCertificate
	return spec
}
