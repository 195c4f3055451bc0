package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// The hostile-peer suite: two real gateways, east (accepting) and west
// (dialling east with a token, serving "backend"), and mallory, a test
// peer that speaks the link protocol with this package's own wire and mux
// code and tries what issue 12 lists. Every attack must be refused with
// the expected reason and leave east's clients reaching west only.

// testSite is a running gateway with its CA and ledger.
type testSite struct {
	name   string
	ca     *pki.CA
	ledger *token.Ledger
	r      *Router
	reg    *prometheus.Registry
	stop   func()
}

func startSite(t testing.TB, name string, linkAccess bool, links []LinkSpec, svc Services, opts ...func(*Config)) *testSite {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	s := &testSite{name: name, ca: ca, reg: prometheus.NewRegistry()}
	cfg := Config{
		Site: name, Role: RoleGateway, Name: name + "-gw-0", SiteKey: ca.Key,
		Links: links, Services: svc, Metrics: NewMetrics(s.reg),
		Log: testr.NewWithInterface(t, testr.Options{LogTimestamp: true}).WithName(name),
	}
	if linkAccess {
		s.ledger, err = token.OpenLedger(dir)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueServer(name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg.LinkListen = "127.0.0.1:0"
		cfg.ServerTLS = pki.ServerTLS(ca, cert)
		cfg.Admission = &token.Admission{Ledger: s.ledger, CA: ca, Site: name}
	}
	for _, o := range opts {
		o(&cfg)
	}
	s.r, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.r.Run(ctx) }()
	s.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(s.stop)
	tu.Eventually(t, 10*time.Second, name+" ready", func() error {
		if !s.r.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return s
}

// issue makes a token of s for redemptions sites.
func (s *testSite) issue(t testing.TB, redemptions int) *token.Token {
	t.Helper()
	tok, err := token.Issue(s.ca, s.name, s.r.LinkAddr().String(), time.Hour, redemptions, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ledger.Record(tok, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func specFor(t testing.TB, tok *token.Token) LinkSpec {
	t.Helper()
	tlsCfg, err := tok.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertificate([]byte(tok.CA))
	if err != nil {
		t.Fatal(err)
	}
	key, err := netview.KeyID(ca.PublicKey.(*ecdsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return LinkSpec{Name: "token-" + tok.ID, Endpoint: tok.Endpoint, TLS: tlsCfg, Cost: 1, PeerSite: tok.Site, PeerKey: key}
}

// banner serves name to every connection, then closes it.
func banner(t *testing.T, name string) Connector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name+"\n")
			c.Close()
		}
	}()
	return Connector{Address: "backend", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
}

// pair is east accepting, west dialling it and serving backend; east
// listens for backend on a local port.
type pair struct {
	east, west *testSite
	eastLn     string // east's listener for backend
	multi      *token.Token
}

func newPair(t *testing.T) *pair {
	t.Helper()
	port := tu.FreePort(t, "127.0.0.1")
	p := &pair{}
	p.east = startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}})
	p.eastLn = fmt.Sprintf("127.0.0.1:%d", port)
	p.multi = p.east.issue(t, 3) // a multi-use token: west uses it, a copy leaks
	p.west = startSite(t, "west", false, []LinkSpec{specFor(t, p.multi)}, Services{Connectors: []Connector{banner(t, "west")}})
	p.waitBackend(t, "west")
	return p
}

// waitBackend waits until east's clients reach backend at site.
func (p *pair) waitBackend(t *testing.T, site string) {
	t.Helper()
	tu.Eventually(t, 10*time.Second, "east routes backend to "+site, func() error {
		got, err := fetch(p.eastLn)
		if err != nil {
			return err
		}
		if got != site {
			return fmt.Errorf("answered by %q", got)
		}
		return nil
	})
}

// onlyWest checks that n connections to east's backend all reach west.
func (p *pair) onlyWest(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		got, err := fetch(p.eastLn)
		if err != nil || got != "west" {
			t.Fatalf("connection %d to backend through east: %q, %v; want west's answer", i, got, err)
		}
	}
}

func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// mallory is a hostile peer: a site key of its own and link-protocol
// messages written by hand.
type mallory struct {
	t   *testing.T
	key *ecdsa.PrivateKey
	id  string
}

func newMallory(t *testing.T) *mallory {
	key := newMalloryKey(t)
	id, _ := netview.KeyID(&key.PublicKey)
	return &mallory{t: t, key: key, id: id}
}

func newMalloryKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// dial opens a TLS connection to s's link port with tok's certificate.
func (m *mallory) dial(s *testSite, tok *token.Token) *tls.Conn {
	m.t.Helper()
	cfg, err := tok.ClientTLS()
	if err != nil {
		m.t.Fatal(err)
	}
	c, err := tls.Dial("tcp", s.r.LinkAddr().String(), cfg)
	if err != nil {
		m.t.Fatalf("dial %s: %v", s.name, err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// hello sends hl, signed with mallory's key unless sign is false, and
// returns the reply.
func (m *mallory) hello(c *tls.Conn, hl hello, sign bool) helloReply {
	m.t.Helper()
	if sign {
		d, err := helloDigest(c.ConnectionState(), hl.Site, hl.LinkID)
		if err != nil {
			m.t.Fatal(err)
		}
		sig, _ := ecdsa.SignASN1(rand.Reader, m.key, d)
		hl.Key, hl.Proof = m.id, b64(sig)
	}
	if err := writeMsg(c, hl); err != nil {
		m.t.Fatalf("send hello: %v", err)
	}
	var reply helloReply
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := readMsgLimit(c, &reply, maxHello); err != nil {
		m.t.Fatalf("read hello reply: %v", err)
	}
	return reply
}

func gatewayHello(site string) hello {
	return hello{Version: LinkProtocolVersion, Site: site, Role: roleGateway, Cost: 1, LinkID: newID(), Pool: 1}
}

// link redeems tok as site "mallory" and opens the control stream.
func (m *mallory) link(s *testSite, tok *token.Token) (*mux.Session, *mux.Stream) {
	m.t.Helper()
	c := m.dial(s, tok)
	if reply := m.hello(c, gatewayHello("mallory"), true); reply.Error != "" {
		m.t.Fatalf("mallory's own link refused: %s", reply.Error)
	}
	c.SetDeadline(time.Time{})
	sess := mux.Client(c, mux.Config{})
	m.t.Cleanup(func() { sess.Close() })
	ctrl, err := sess.Open(context.Background())
	if err != nil {
		m.t.Fatal(err)
	}
	h, _ := header{Kind: kindControl, Origin: "mallory"}.encode()
	if _, err := ctrl.Write(h); err != nil {
		m.t.Fatal(err)
	}
	return sess, ctrl
}

func refusedCount(_ *testSite, vec *prometheus.CounterVec, reason string) float64 {
	var m dto.Metric
	if err := vec.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestHostileImpersonation(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	for _, tc := range []struct {
		name string
		tok  *token.Token
	}{
		{"copy of west's multi-use token", p.multi},
		{"a token of its own", p.east.issue(t, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := refusedCount(p.east, p.east.r.m.LinkRefused, "name_taken")
			reply := m.hello(m.dial(p.east, tc.tok), gatewayHello("west"), true)
			if !strings.Contains(reply.Error, "west") || reply.LinkCert != "" {
				t.Fatalf("hello as west with another key: reply %+v, want a refusal", reply)
			}
			if got := refusedCount(p.east, p.east.r.m.LinkRefused, "name_taken"); got != before+1 {
				t.Errorf("name_taken refusals %v -> %v", before, got)
			}
		})
	}
	t.Run("hello that disagrees with the proof", func(t *testing.T) {
		hl := gatewayHello("mallory")
		c := m.dial(p.east, p.east.issue(t, 1))
		d, _ := helloDigest(c.ConnectionState(), "someone-else", hl.LinkID)
		sig, _ := ecdsa.SignASN1(rand.Reader, m.key, d)
		hl.Key, hl.Proof = m.id, b64(sig)
		if err := writeMsg(c, hl); err != nil {
			t.Fatal(err)
		}
		var reply helloReply
		if err := readMsgLimit(c, &reply, maxHello); err != nil || !strings.Contains(reply.Error, "proof") {
			t.Fatalf("reply %+v, %v; want a refused proof", reply, err)
		}
	})
	t.Run("key named without holding it", func(t *testing.T) {
		hl := gatewayHello("mallory")
		hl.Key, hl.Proof = p.west.r.db.HolderOf("west"), b64([]byte("not a signature"))
		reply := m.hello(m.dial(p.east, p.east.issue(t, 1)), hl, false)
		if reply.Error == "" {
			t.Fatalf("hello with west's key and no proof accepted")
		}
	})
	p.onlyWest(t, 20)
}

func TestHostilePoolConnection(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	// West's link id is in east's logs; mallory, linked in its own name,
	// tries to join west's link as a pool connection.
	var westLink string
	p.east.r.mu.Lock()
	for id, l := range p.east.r.links {
		if l.peer == "west" {
			westLink = id
		}
	}
	p.east.r.mu.Unlock()
	own := p.east.issue(t, 1)
	m.link(p.east, own)
	hl := gatewayHello("mallory")
	hl.LinkID, hl.Index, hl.Pool = westLink, 1, 2
	before := refusedCount(p.east, p.east.r.m.LinkRefused, "pool")
	if reply := m.hello(m.dial(p.east, own), hl, true); !strings.Contains(reply.Error, "no such link") {
		t.Fatalf("pool connection into west's link: reply %+v, want refused", reply)
	}
	if got := refusedCount(p.east, p.east.r.m.LinkRefused, "pool"); got != before+1 {
		t.Errorf("pool refusals %v -> %v", before, got)
	}
	p.onlyWest(t, 20)
}

func TestHostileRecords(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	_, ctrl := m.link(p.east, p.east.issue(t, 1))
	forged, err := netview.Sign(netview.Record{Site: "west", Epoch: time.Now().UnixNano(), Seq: netview.MaxSeq,
		Links: map[string]int{"mallory": 1}, Addresses: map[string]int{"backend": 100}}, m.key)
	if err != nil {
		t.Fatal(err)
	}
	v1 := []byte(fmt.Sprintf(`{"v":1,"site":"west","epoch":%d,"seq":1,"addresses":{"backend":9}}`, int64(math.MaxInt64)))
	future, err := netview.Sign(netview.Record{Site: "mallory", Epoch: math.MaxInt64, Seq: 1}, m.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(ctrl, controlMsg{Records: [][]byte{forged.Wire(), v1, future.Wire(), []byte("{")}}); err != nil {
		t.Fatal(err)
	}
	rr := p.east.r.m.RecordsRefused
	tu.Eventually(t, 5*time.Second, "records refused", func() error {
		if refusedCount(p.east, rr, "key_conflict") != 1 || refusedCount(p.east, rr, "version") != 1 || refusedCount(p.east, rr, "invalid") != 2 {
			return fmt.Errorf("key_conflict %v, version %v, invalid %v", refusedCount(p.east, rr, "key_conflict"), refusedCount(p.east, rr, "version"), refusedCount(p.east, rr, "invalid"))
		}
		return nil
	})
	if got := p.east.r.View().Addresses["backend"]; len(got) != 1 || got[0].Site != "west" || got[0].Endpoints != 1 {
		t.Errorf("east's view of backend after forged records: %+v", got)
	}
	p.onlyWest(t, 20)
}

func TestHostileStreams(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	sess, _ := m.link(p.east, p.east.issue(t, 1))
	tests := []struct {
		name   string
		h      header
		reason string
	}{
		{"absurd hop count", header{Kind: kindData, Hops: 200, Address: "backend", Dest: "west", Origin: "mallory"}, "hop_limit"},
		{"transit loop back to its origin", header{Kind: kindData, Hops: 3, Address: "backend", Dest: "west", Origin: "east"}, "loop"},
		{"address with a path", header{Kind: kindData, Hops: 3, Address: "../etc", Dest: "west", Origin: "mallory"}, "bad_header"},
		{"origin with a newline", header{Kind: kindData, Hops: 3, Address: "backend", Dest: "west", Origin: "a\nb"}, "bad_header"},
		{"a second control stream", header{Kind: kindControl, Origin: "mallory"}, "bad_header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := refusedCount(p.east, p.east.r.m.StreamsRefused, tt.reason)
			b, err := tt.h.encode()
			if err != nil {
				t.Fatal(err)
			}
			st, err := sess.OpenWrite(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			st.SetReadDeadline(time.Now().Add(5 * time.Second))
			err = readStatus(bufio.NewReader(st))
			var se *statusError
			if err == nil || (errors.As(err, &se) && se.Code == statusOK) {
				t.Fatalf("stream with %s: status ok", tt.name)
			}
			tu.Eventually(t, 5*time.Second, "refusal counted", func() error {
				if got := refusedCount(p.east, p.east.r.m.StreamsRefused, tt.reason); got != before+1 {
					return fmt.Errorf("%s refusals %v -> %v", tt.reason, before, got)
				}
				return nil
			})
		})
	}
	p.onlyWest(t, 20)
}

func TestHostileHello(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	tok := p.east.issue(t, 5)
	t.Run("16 MiB hello is refused unread", func(t *testing.T) {
		c := m.dial(p.east, tok)
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], 16<<20)
		if _, err := c.Write(n[:]); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("gateway kept reading a 16 MiB hello")
		}
	})
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name string
		edit func(*hello)
	}{
		{"300-character site", func(h *hello) { h.Site = long }},
		{"site with a newline", func(h *hello) { h.Site = "west\nlevel=error" }},
		{"site with a path", func(h *hello) { h.Site = "../../../pwned" }},
		{"cost 2^40", func(h *hello) { h.Cost = 1 << 40 }},
		{"pool of 1000", func(h *hello) { h.Pool, h.Index = 1000, 999 }},
		{"router with a path", func(h *hello) { h.Router = "a/b/c" }},
		{"unknown role", func(h *hello) { h.Role = "admin" }},
		{"old protocol", func(h *hello) { h.Version = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hl := gatewayHello("mallory")
			tc.edit(&hl)
			if reply := m.hello(m.dial(p.east, tok), hl, true); reply.Error == "" || len(reply.Error) > 300 {
				t.Errorf("hello with %s: reply %q", tc.name, reply.Error)
			}
		})
	}
	if n := refusedCount(p.east, p.east.r.m.LinkRefused, "bad_hello") + refusedCount(p.east, p.east.r.m.LinkRefused, "version"); n < 8 {
		t.Errorf("bad_hello and version refusals = %v, want >= 8", n)
	}
	p.onlyWest(t, 10)
}

// TestLinkCertificateIdentity: once redeemed, west dials with its link
// certificate (its name comes from it), so an expired token no longer
// matters and a restart of west keeps the link.
func TestLinkCertificateIdentity(t *testing.T) {
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: tu.FreePort(t, "127.0.0.1")}}})
	tok := east.issue(t, 1)
	var mu sync.Mutex
	var saved []byte
	spec := specFor(t, tok)
	spec.LinkCert = func() ([]byte, error) { mu.Lock(); defer mu.Unlock(); return saved, nil }
	spec.SaveLinkCert = func(b []byte) error { mu.Lock(); defer mu.Unlock(); saved = b; return nil }
	westCA, err := pki.LoadOrCreateCA(t.TempDir(), "west")
	if err != nil {
		t.Fatal(err)
	}
	run := func() (*Router, func()) {
		reg := prometheus.NewRegistry()
		r, err := New(Config{Site: "west", Role: RoleGateway, SiteKey: westCA.Key, Links: []LinkSpec{spec}, Metrics: NewMetrics(reg),
			Log: testr.New(t).WithName("west")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return r, sync.OnceFunc(func() { cancel(); <-done })
	}
	_, stop := run()
	tu.Eventually(t, 10*time.Second, "link certificate saved", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(saved) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	stop()
	// West no longer presents the token at all: its certificate now
	// comes from a CA east does not know. Only the link certificate can
	// get it in.
	other, err := pki.LoadOrCreateCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := other.IssueClient(token.CommonName(tok.ID), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	spec.TLS = spec.TLS.Clone()
	spec.TLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
	r, stop2 := run()
	defer stop2()
	tu.Eventually(t, 10*time.Second, "west links again with its certificate", func() error {
		if len(r.View().Routes) == 0 {
			return errors.New("no route")
		}
		return nil
	})
	// Revocation: deleting the token's ledger entry refuses the link
	// certificate at the next connection.
	if err := east.ledger.Remove(tok.ID); err != nil {
		t.Fatal(err)
	}
	before := refusedCount(east, east.r.m.LinkRefused, "token")
	stop2()
	r, stop3 := run()
	defer stop3()
	tu.Eventually(t, 10*time.Second, "revoked link certificate refused", func() error {
		if refusedCount(east, east.r.m.LinkRefused, "token") <= before {
			return errors.New("not refused yet")
		}
		return nil
	})
	if len(r.View().Routes) != 0 {
		t.Errorf("west reached %v with a revoked certificate", r.View().Routes)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// bannerFor serves name for address.
func bannerFor(t *testing.T, address, name string) Connector {
	c := banner(t, name)
	c.Address = address
	return c
}

func TestLinkPolicy(t *testing.T) {
	port := func() int { return tu.FreePort(t, "127.0.0.1") }
	eastBackend, eastOther := port(), port()
	east := startSite(t, "east", true, nil, Services{
		Listeners:  []Listener{{Address: "backend", Host: "127.0.0.1", Port: eastBackend}, {Address: "other", Host: "127.0.0.1", Port: eastOther}},
		Connectors: []Connector{bannerFor(t, "allowed", "east-allowed"), bannerFor(t, "internal", "east-internal")},
	})
	// The token's policy: west may advertise backend here, and reach
	// only allowed.
	tok, err := token.Issue(east.ca, "east", east.r.LinkAddr().String(), time.Hour, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := east.ledger.Record(tok, policy.Policy{Advertise: []string{"backend"}, Reach: []string{"allowed"}}); err != nil {
		t.Fatal(err)
	}
	westAllowed, westInternal := port(), port()
	west := startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{
		Listeners:  []Listener{{Address: "allowed", Host: "127.0.0.1", Port: westAllowed}, {Address: "internal", Host: "127.0.0.1", Port: westInternal}},
		Connectors: []Connector{bannerFor(t, "backend", "west"), bannerFor(t, "other", "west-other")},
	})
	_ = west
	p := &pair{east: east, eastLn: fmt.Sprintf("127.0.0.1:%d", eastBackend)}
	p.waitBackend(t, "west")
	tu.Eventually(t, 10*time.Second, "west reaches east's allowed", func() error {
		got, err := fetch(fmt.Sprintf("127.0.0.1:%d", westAllowed))
		if err != nil || got != "east-allowed" {
			return fmt.Errorf("%q, %v", got, err)
		}
		return nil
	})
	if got, err := fetch(fmt.Sprintf("127.0.0.1:%d", eastOther)); err == nil && got != "" {
		t.Errorf("east's client reached %q through west, which may not advertise other", got)
	}
	doc, _ := east.r.Document()
	if _, ok := doc.Addresses["other"]; ok {
		t.Errorf("east's view for its controller lists other: %+v", doc.Addresses["other"])
	}
	if got, err := fetch(fmt.Sprintf("127.0.0.1:%d", westInternal)); err == nil && got != "" {
		t.Errorf("west's client reached east's internal: %q", got)
	}
	tu.Eventually(t, 5*time.Second, "reach refusal counted", func() error {
		var m dto.Metric
		_ = east.r.m.PolicyRefused.WithLabelValues("west", "reach").Write(&m)
		if m.GetCounter().GetValue() < 1 {
			return errors.New("no reach refusal counted")
		}
		return nil
	})
}

// TestLinkGaugesForLinksThatNeverCameUp: a peer that says hello and never
// opens its control stream leaves no skiff_link_connections behind.
func TestLinkGaugesForLinksThatNeverCameUp(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	c := m.dial(p.east, p.east.issue(t, 1))
	if reply := m.hello(c, gatewayHello("mallory"), true); reply.Error != "" {
		t.Fatal(reply.Error)
	}
	gauge := func(peer string) float64 {
		var d dto.Metric
		_ = p.east.r.m.LinkConns.WithLabelValues(peer).Write(&d)
		return d.GetGauge().GetValue()
	}
	if got := gauge("mallory"); got != 0 {
		t.Errorf("skiff_link_connections{peer=mallory} = %v before its link is up, want 0", got)
	}
	c.Close()
	tu.Eventually(t, 5*time.Second, "mallory's link gone", func() error {
		p.east.r.mu.Lock()
		defer p.east.r.mu.Unlock()
		for _, l := range p.east.r.links {
			if l.peer == "mallory" {
				return errors.New("still registered")
			}
		}
		return nil
	})
	if got := gauge("mallory"); got != 0 {
		t.Errorf("skiff_link_connections{peer=mallory} = %v after it left, want 0", got)
	}
	if got := gauge("west"); got < 1 {
		t.Errorf("skiff_link_connections{peer=west} = %v, want west's live connections", got)
	}
}

// TestTokenKinds: a link token (given to another site) cannot attach a
// sidecar, and a member token (the site's own sidecars') cannot link a
// site.
func TestTokenKinds(t *testing.T) {
	p := newPair(t)
	m := newMallory(t)
	link := p.east.issue(t, 1)
	member, err := token.IssueMember(p.east.ca, "east", p.east.r.LinkAddr().String(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.east.ledger.Record(member, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	asMember := hello{Version: LinkProtocolVersion, Site: "east", Router: "shop/pod-1", Role: roleMember, Cost: 1, LinkID: newID(), Pool: 1}
	if reply := m.hello(m.dial(p.east, link), asMember, false); !strings.Contains(reply.Error, "member token") {
		t.Errorf("a link token as a sidecar: reply %+v, want refused", reply)
	}
	if reply := m.hello(m.dial(p.east, member), gatewayHello("mallory"), true); !strings.Contains(reply.Error, "member token") {
		t.Errorf("a member token as a site: reply %+v, want refused", reply)
	}
	if reply := m.hello(m.dial(p.east, member), asMember, false); reply.Error != "" {
		t.Errorf("a member token as a sidecar: refused: %s", reply.Error)
	}
	p.onlyWest(t, 10)
}
