package router

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// memStore keeps what a dialling gateway saves for one link (its link
// certificate and the peer's trust bundle), as the state store does.
type memStore struct {
	mu           sync.Mutex
	cert, bundle []byte
	certs        int // link certificates saved
}

func (m *memStore) wire(spec *LinkSpec) {
	get := func(p *[]byte) func() ([]byte, error) {
		return func() ([]byte, error) { m.mu.Lock(); defer m.mu.Unlock(); return *p, nil }
	}
	spec.LinkCert, spec.PeerCA = get(&m.cert), get(&m.bundle)
	spec.SaveLinkCert = func(b []byte) error { m.mu.Lock(); defer m.mu.Unlock(); m.cert = b; m.certs++; return nil }
	spec.SavePeerCA = func(b []byte) error { m.mu.Lock(); defer m.mu.Unlock(); m.bundle = b; return nil }
}

func (m *memStore) get() (cert, bundle []byte, certs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert, m.bundle, m.certs
}

// leafOf parses the first certificate of a PEM chain.
func leafOf(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keyID(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	id, err := netview.KeyID(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func rotate(t *testing.T, n *drainNode, dir string) *pki.CA {
	t.Helper()
	if err := pki.RotateCA(dir, n.r.cfg.Site); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(dir, n.r.cfg.Site)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Prev == nil {
		t.Fatal("a rotated CA without its previous one")
	}
	if err := n.r.SetCA(ca); err != nil {
		t.Fatal(err)
	}
	return ca
}

func finish(t *testing.T, n *drainNode, dir string) *pki.CA {
	t.Helper()
	if err := pki.FinishCARotation(dir); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(dir, n.r.cfg.Site)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.r.SetCA(ca); err != nil {
		t.Fatal(err)
	}
	return ca
}

// rotationSites starts east (link access, an echo service) and west,
// which dials east with a token, keeps what east sends it in store, and
// listens for the echo service on port; both run over a pki.Authority.
func rotationSites(t *testing.T) (east, west *drainNode, eastDir, westDir string, spec LinkSpec, store *memStore, port int) {
	t.Helper()
	eastDir, westDir = t.TempDir(), t.TempDir()
	east = startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, authority: true,
		svc: Services{Connectors: []Connector{echoService(t, "east-1")}}})
	store = &memStore{}
	spec = linkSpecTo(t, east, eastDir, east.r.LinkAddr().String())
	store.wire(&spec)
	port = tu.FreePort(t, "127.0.0.1")
	west = startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", dir: westDir, authority: true, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	return east, west, eastDir, westDir, spec, store, port
}

// Both sites of a link rotate their CA, one after the other, then finish:
// the link and a stream on it stay up throughout; east sends west its new
// CA and a link certificate from it, west's key rollover gets west a link
// certificate for its new key; once both finished, a restarted west links
// again with what it was sent, and a west that has only the token's CA
// (the old one) no longer can.
func TestCARotation(t *testing.T) {
	east, west, eastDir, westDir, spec, store, port := rotationSites(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e := echoAnsweredBy(t, addr, "east-1")
	defer func() { e.c.Close() }()
	linkID := func() string {
		st := west.r.Status()
		if len(st.Links) != 1 {
			return fmt.Sprintf("%d links", len(st.Links))
		}
		return st.Links[0].ID
	}
	first := linkID()
	stream := func(what string) {
		t.Helper()
		if err := e.roundTrip(what); err != nil {
			t.Fatalf("the open stream, %s: %v", what, err)
		}
		if got := linkID(); got != first {
			t.Fatalf("%s: the link was replaced (%s, then %s)", what, first, got)
		}
	}
	westOld := keyID(t, west.ca.Key)

	// East rotates: west gets east's bundle and a link certificate from
	// east's new CA, and holds east's name for the new key.
	eastCA := rotate(t, east, eastDir)
	eastNew := keyID(t, eastCA.Key)
	tu.Eventually(t, 10*time.Second, "west takes east's new CA", func() error {
		stream("east rotating")
		cert, bundle, _ := store.get()
		if !bytes.Equal(bundle, eastCA.BundlePEM()) {
			return fmt.Errorf("bundle kept: %d bytes, want east's two CAs", len(bundle))
		}
		if err := leafOf(t, cert).CheckSignatureFrom(eastCA.Cert); err != nil {
			return fmt.Errorf("west's link certificate is not from east's new CA: %v", err)
		}
		if h := west.r.db.HolderOf("east"); h != eastNew {
			return fmt.Errorf("west holds east for %s, want the new key %s", netview.Fingerprint(h), netview.Fingerprint(eastNew))
		}
		return nil
	})

	// West rotates: east moves west to its new key and issues it a link
	// certificate for it.
	westCA := rotate(t, west, westDir)
	westNew := keyID(t, westCA.Key)
	tu.Eventually(t, 10*time.Second, "east issues west a certificate for its new key", func() error {
		stream("west rotating")
		cert, _, _ := store.get()
		if got, _ := netview.KeyID(leafOf(t, cert).PublicKey.(*ecdsa.PublicKey)); got != westNew {
			return fmt.Errorf("west's link certificate certifies %s, want its new key %s", netview.Fingerprint(got), netview.Fingerprint(westNew))
		}
		if h := east.r.db.HolderOf("west"); h != westNew {
			return fmt.Errorf("east holds west for %s, want %s", netview.Fingerprint(h), netview.Fingerprint(westNew))
		}
		return nil
	})

	// Both finish: the previous keys are dropped everywhere.
	eastCA = finish(t, east, eastDir)
	finish(t, west, westDir)
	tu.Eventually(t, 10*time.Second, "previous keys dropped", func() error {
		stream("both finished")
		if _, bundle, _ := store.get(); !bytes.Equal(bundle, eastCA.BundlePEM()) {
			return fmt.Errorf("west keeps a bundle of %d bytes, want east's new CA alone", len(bundle))
		}
		if keys := east.r.db.KeysOf("west"); len(keys) != 1 || keys[0] != westNew {
			return fmt.Errorf("east accepts %d keys for west", len(keys))
		}
		if keys := west.r.db.KeysOf("east"); len(keys) != 1 || keys[0] != eastNew {
			return fmt.Errorf("west accepts %d keys for east", len(keys))
		}
		return nil
	})
	if err := east.r.db.Bind("west", westOld); err == nil {
		t.Error("east still takes west's previous key after west finished its rotation")
	}

	// West restarts with what it kept: it links again. A west with only
	// the token (east's old CA, west's old link certificate gone) cannot.
	e.c.Close()
	west.r.Drain()
	west.waitStopped(t)
	port2 := tu.FreePort(t, "127.0.0.1")
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-2", dir: westDir, authority: true, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port2}}}})
	tu.Eventually(t, 10*time.Second, "a restarted west links with east's new CA and its renewed certificate", reachEcho(fmt.Sprintf("127.0.0.1:%d", port2), "east-1"))

	bare := spec
	bare.LinkCert, bare.PeerCA, bare.SaveLinkCert, bare.SavePeerCA = nil, nil, nil, nil
	failed := make(chan string, 16)
	bare.onReply = func(r helloReply) {
		select {
		case failed <- r.Error:
		default:
		}
	}
	port3 := tu.FreePort(t, "127.0.0.1")
	stale := startDrainNode(t, drainSiteConfig{site: "west", router: "west-3", dir: westDir, authority: true, links: []LinkSpec{bare},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port3}}}})
	select {
	case why := <-failed:
		if why == "" {
			t.Errorf("a west that trusts only east's old CA was answered by east")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a west with only the token never dialled")
	}
	if st := stale.r.Status(); len(st.Links) != 0 {
		t.Errorf("a west that trusts only east's old CA linked: %+v", st.Links)
	}
}

// A trust bundle from the network is taken only as what it claims to be:
// 1 to 4 CA certificates of the peer's site.
func TestParseBundle(t *testing.T) {
	east, err := pki.LoadOrCreateCA(t.TempDir(), "east")
	if err != nil {
		t.Fatal(err)
	}
	north, err := pki.LoadOrCreateCA(t.TempDir(), "north")
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, _, err := east.IssueClient("link-token:1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	five := bytes.Repeat(east.CertPEM, 5)
	tests := []struct {
		name    string
		bundle  []byte
		wantErr bool
	}{
		{"the site's CA", east.CertPEM, false},
		{"two of the site's CAs", append(append([]byte{}, east.CertPEM...), east.CertPEM...), false},
		{"nothing", nil, true},
		{"not PEM", []byte("hello"), true},
		{"another site's CA", north.CertPEM, true},
		{"the site's CA and another's", append(append([]byte{}, east.CertPEM...), north.CertPEM...), true},
		{"a leaf, not a CA", leafPEM, true},
		{"more than four", five, true},
		{"a key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBundle("east", tt.bundle)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseBundle() error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// A site that rotated its CA while its gateway was down dials with the
// link certificate it has, which certifies its previous key: it proves
// that key, is admitted, and the peer, seeing the endorsed new key in its
// records, issues it a certificate for the new key.
func TestCARotationWhileDown(t *testing.T) {
	_, west, _, westDir, spec, store, port := rotationSites(t)
	tu.Eventually(t, 10*time.Second, "west reaches east", reachEcho(fmt.Sprintf("127.0.0.1:%d", port), "east-1"))
	west.r.Drain()
	west.waitStopped(t)

	if err := pki.RotateCA(westDir, "west"); err != nil {
		t.Fatal(err)
	}
	port2 := tu.FreePort(t, "127.0.0.1")
	west2 := startDrainNode(t, drainSiteConfig{site: "west", router: "west-2", dir: westDir, authority: true, links: []LinkSpec{spec},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port2}}}})
	if west2.ca.Prev == nil {
		t.Fatal("the restarted west has no previous CA")
	}
	westNew := keyID(t, west2.ca.Key)
	tu.Eventually(t, 10*time.Second, "the restarted west reaches east", reachEcho(fmt.Sprintf("127.0.0.1:%d", port2), "east-1"))
	tu.Eventually(t, 10*time.Second, "east issues west a certificate for its new key", func() error {
		cert, _, _ := store.get()
		if got, _ := netview.KeyID(leafOf(t, cert).PublicKey.(*ecdsa.PublicKey)); got != westNew {
			return fmt.Errorf("west's link certificate certifies %s, want its new key %s", netview.Fingerprint(got), netview.Fingerprint(westNew))
		}
		return nil
	})
}

// A linked site cannot push a trust bundle or a link certificate onto the
// site it dialled: only the dialling side of a link takes them from its
// issuer. Mallory, linked to east with east's token, sends east a CA of
// its own named as east's and a link certificate; east ignores both and
// goes on with the link (mallory's next record is applied).
func TestLinkedSiteCannotPushCA(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	_, ctrl := m.link(p.east, p.east.issue(t, 1))
	go func() { _, _ = io.Copy(io.Discard, ctrl) }()
	fake, err := pki.LoadOrCreateCA(t.TempDir(), "east") // "skiff site east CA", mallory's
	if err != nil {
		t.Fatal(err)
	}
	linkPEM, err := fake.IssueLink("mallory", &m.key.PublicKey, "00ff", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eastKey := p.east.r.db.HolderOf("east")
	rec, err := netview.Sign(netview.Record{Site: "mallory", Epoch: time.Now().UnixNano(), Seq: 7}, m.key)
	if err != nil {
		t.Fatal(err)
	}
	ctrl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := writeMsg(ctrl, controlMsg{CA: string(fake.CertPEM), LinkCert: string(linkPEM)}); err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(ctrl, controlMsg{Records: [][]byte{rec.Wire()}}); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "east applies mallory's next record", func() error {
		for _, r := range p.east.r.db.Records() {
			if r.Site == "mallory" && r.Seq == 7 {
				return nil
			}
		}
		return fmt.Errorf("no record of mallory at seq 7")
	})
	if got := p.east.r.db.HolderOf("east"); got != eastKey {
		t.Errorf("east's own key changed to %s", netview.Fingerprint(got))
	}
	if keys := p.east.r.db.KeysOf("east"); len(keys) != 1 {
		t.Errorf("east accepts %d keys for its own name, want its own alone", len(keys))
	}
}
