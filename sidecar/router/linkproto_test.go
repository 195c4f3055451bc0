package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// The link protocol's refusals, as sidecar/mux tests its own protocol
// errors: each case is a hello, a pool connection, a stream header or a
// burst of records that mallory (hostile_test.go) sends to east over a
// real TLS connection, and each is checked by what east answers and by
// the counter it moves. hostile_test.go covers impersonation, a 16 MiB
// hello, a pool connection into another peer's link, forged records and
// bad stream headers; these tests add the rest of the handshake's
// refusals, each with its exact message and reason, and the transit hop
// limit.

// protoSite is newPair's east and west, with mallory holding a link token
// of east (redeemed: mallory has a link certificate), a member token of
// east, and that link certificate.
type protoSite struct {
	*pair
	m        *mallory
	tok      *token.Token
	member   *token.Token
	linkCert tls.Certificate
}

func newProtoSite(t *testing.T) *protoSite {
	t.Helper()
	p := newPair(t)
	s := &protoSite{pair: p, m: newMallory(t), tok: p.east.issue(t, 1)}
	member, err := token.IssueMember(p.east.ca, "east", p.east.r.LinkAddr().String(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.east.ledger.Record(member, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	s.member = member
	c := s.m.dial(p.east, s.tok)
	reply := s.m.hello(c, gatewayHello("mallory"), true)
	c.Close()
	if reply.Error != "" || reply.LinkCert == "" {
		t.Fatalf("mallory redeeming its token: reply %+v, want a link certificate", reply)
	}
	block, _ := pem.Decode([]byte(reply.LinkCert))
	if block == nil {
		t.Fatalf("link certificate is not PEM: %q", reply.LinkCert)
	}
	s.linkCert = tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: s.m.key}
	return s
}

// credential is what a test connection presents as its client
// certificate.
type credential int

const (
	withLinkToken credential = iota
	withMemberToken
	withLinkCert
)

// dial opens a TLS connection to east's link port presenting cred.
func (s *protoSite) dial(t *testing.T, cred credential) *tls.Conn {
	t.Helper()
	switch cred {
	case withLinkToken:
		return s.m.dial(s.east, s.tok)
	case withMemberToken:
		return s.m.dial(s.east, s.member)
	}
	cfg, err := s.tok.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cert := s.linkCert
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	c, err := tls.Dial("tcp", s.east.r.LinkAddr().String(), cfg)
	if err != nil {
		t.Fatalf("dial east with a link certificate: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// say sends hl on c, first signed with mallory's key if sign is true and
// then changed by edit (so edit can spoil what was signed), and returns
// the reply.
func (s *protoSite) say(t *testing.T, c *tls.Conn, hl hello, sign bool, edit func(*hello)) helloReply {
	t.Helper()
	if sign {
		d, err := helloDigest(c.ConnectionState(), hl.Site, hl.LinkID)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ecdsa.SignASN1(rand.Reader, s.m.key, d)
		if err != nil {
			t.Fatal(err)
		}
		hl.Key, hl.Proof = s.m.id, b64(sig)
	}
	if edit != nil {
		edit(&hl)
	}
	if err := writeMsg(c, hl); err != nil {
		t.Fatalf("send hello: %v", err)
	}
	var reply helloReply
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := readMsgLimit(c, &reply, maxHello); err != nil {
		t.Fatalf("read hello reply: %v", err)
	}
	return reply
}

// counts returns the non-zero counters of vec (one label) in reg, by
// label value.
func counts(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				out[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return out
}

// increase returns what grew from before to after.
func increase(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

const linkRefusedMetric = "skiff_link_connections_refused_total"

// TestLinkHelloRefusals: every hello east must refuse is refused with a
// message that says what is wrong, the reason in the reply, and one more
// skiff_link_connections_refused_total of that reason, and nothing else;
// a hello that is right on the same credential is admitted.
func TestLinkHelloRefusals(t *testing.T) {
	s := newProtoSite(t)
	other := newMalloryKey(t)
	otherID, err := netview.KeyID(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	memberHello := func() hello {
		return hello{Version: LinkProtocolVersion, Site: "east", Router: "shop/pod-1", Role: roleMember, Cost: 1, LinkID: newID(), Pool: 1}
	}
	long := strings.Repeat("k", 257)
	_, badKeyErr := netview.ParseKeyID("not-a-key")
	_, noKeyErr := netview.ParseKeyID("")
	tests := []struct {
		name   string
		cred   credential
		hello  func() hello
		sign   bool
		edit   func(*hello)
		want   string // the reply's Error; "" for an admitted hello
		reason string
	}{
		{name: "link protocol v1", edit: func(h *hello) { h.Version = 1 },
			want: "peer speaks link protocol v1, this gateway v2", reason: "version"},
		{name: "link protocol v3", edit: func(h *hello) { h.Version = 3 },
			want: "peer speaks link protocol v3, this gateway v2", reason: "version"},
		{name: "unknown role", edit: func(h *hello) { h.Role = "admin" },
			want: `unknown role "admin"`, reason: "bad_hello"},
		{name: "empty site", edit: func(h *hello) { h.Site = "" },
			want: "hello: " + errText(names.CheckSite("")), reason: "bad_hello"},
		{name: "site with capitals", edit: func(h *hello) { h.Site = "Mallory" },
			want: "hello: " + errText(names.CheckSite("Mallory")), reason: "bad_hello"},
		{name: "router with a path", edit: func(h *hello) { h.Router = "a/b/c" },
			want: "hello: " + errText(names.CheckRouter("a/b/c")), reason: "bad_hello"},
		{name: "member without a router name", cred: withMemberToken, hello: memberHello, edit: func(h *hello) { h.Router = "" },
			want: "hello: " + errText(names.CheckRouter("")), reason: "bad_hello"},
		{name: "negative cost", edit: func(h *hello) { h.Cost = -1 },
			want: "hello: cost -1, want 1..16777216 (0 between gateways of one site)", reason: "bad_hello"},
		{name: "cost above MaxCost", edit: func(h *hello) { h.Cost = netview.MaxCost + 1 },
			want: "hello: cost 16777217, want 1..16777216 (0 between gateways of one site)", reason: "bad_hello"},
		{name: "pool of 0", edit: func(h *hello) { h.Pool = 0 },
			want: "hello: connection 0 of a pool of 0, want a pool of 1..16", reason: "bad_hello"},
		{name: "pool of 17", edit: func(h *hello) { h.Pool = maxPool + 1 },
			want: "hello: connection 0 of a pool of 17, want a pool of 1..16", reason: "bad_hello"},
		{name: "negative index", edit: func(h *hello) { h.Index, h.Pool = -1, 2 },
			want: "hello: connection -1 of a pool of 2, want a pool of 1..16", reason: "bad_hello"},
		{name: "index equal to the pool", edit: func(h *hello) { h.Index, h.Pool = 2, 2 },
			want: "hello: connection 2 of a pool of 2, want a pool of 1..16", reason: "bad_hello"},
		{name: "link id of 15 digits", edit: func(h *hello) { h.LinkID = "0123456789abcde" },
			want: `hello: link id "0123456789abcde", want 16 hex digits`, reason: "bad_hello"},
		{name: "link id in capitals", edit: func(h *hello) { h.LinkID = "0123456789ABCDEF" },
			want: `hello: link id "0123456789ABCDEF", want 16 hex digits`, reason: "bad_hello"},
		{name: "empty link id", edit: func(h *hello) { h.LinkID = "" },
			want: `hello: link id "", want 16 hex digits`, reason: "bad_hello"},
		{name: "key of 257 bytes", sign: true, edit: func(h *hello) { h.Key = long },
			want: "hello: key or proof too long", reason: "bad_hello"},
		{name: "proof of 257 bytes", sign: true, edit: func(h *hello) { h.Proof = long },
			want: "hello: key or proof too long", reason: "bad_hello"},
		{name: "member token as a gateway", cred: withMemberToken, sign: true,
			want: "a member token is for this site's sidecars, not a gateway", reason: "identity"},
		{name: "member token of another site", cred: withMemberToken, hello: memberHello, edit: func(h *hello) { h.Site = "west" },
			want: `member of site "west", this is site "east"`, reason: "identity"},
		{name: "link token as a member", hello: memberHello,
			want: "a link token is for other sites; a sidecar needs a member token (token issue --member)", reason: "identity"},
		{name: "link token claiming this site's name", sign: true, edit: func(h *hello) { h.Site = "east" },
			want: `peer claims this site's own name "east"`, reason: "identity"},
		{name: "link token without a key",
			want: "hello: " + errText(noKeyErr), reason: "identity"},
		{name: "key that is no key", sign: true, edit: func(h *hello) { h.Key = "not-a-key" },
			want: "hello: " + errText(badKeyErr), reason: "identity"},
		{name: "proof that is not base64", sign: true, edit: func(h *hello) { h.Proof = "%%%" },
			want: "hello proof is not base64", reason: "identity"},
		{name: "proof of another link", sign: true, edit: func(h *hello) { h.LinkID = newID() },
			want: "hello proof does not verify: the peer does not hold the key it names", reason: "identity"},
		{name: "proof by another key", sign: true, edit: func(h *hello) { h.Key = otherID },
			want: "hello proof does not verify: the peer does not hold the key it names", reason: "identity"},
		{name: "link certificate of another site", cred: withLinkCert, sign: true, edit: func(h *hello) { h.Site = "west" },
			want: `hello says site "west", its link certificate is for site "mallory"`, reason: "identity"},
		{name: "link certificate as a member", cred: withLinkCert, hello: memberHello, edit: func(h *hello) { h.Site = "mallory" },
			want: "a link certificate is for gateways, not a member", reason: "identity"},
		{name: "link certificate with another key", cred: withLinkCert, edit: func(h *hello) { h.Key = otherID },
			want: "hello key differs from the link certificate's", reason: "identity"},
		{name: "link certificate at cost 0", cred: withLinkCert, edit: func(h *hello) { h.Cost = 0 },
			want: "hello: cost 0, want 1..16777216", reason: "bad_hello"},
		// The same credentials, used as they should be.
		{name: "link certificate", cred: withLinkCert},
		{name: "link certificate with its key", cred: withLinkCert, sign: true},
		{name: "link token, redeemed again by its site", sign: true},
		{name: "member token", cred: withMemberToken, hello: memberHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hl := gatewayHello("mallory")
			if tt.hello != nil {
				hl = tt.hello()
			}
			before := counts(t, s.east.reg, linkRefusedMetric)
			reply := s.say(t, s.dial(t, tt.cred), hl, tt.sign, tt.edit)
			if reply.Error != tt.want || reply.Reason != tt.reason {
				t.Errorf("reply error %q, reason %q; want %q, %q", reply.Error, reply.Reason, tt.want, tt.reason)
			}
			if reply.Site != "east" || reply.Version != LinkProtocolVersion {
				t.Errorf("reply from site %q v%d, want east v%d", reply.Site, reply.Version, LinkProtocolVersion)
			}
			want := map[string]float64{}
			if tt.reason != "" {
				want[tt.reason] = 1
			}
			// A refusal is counted before its reply is written.
			got := increase(before, counts(t, s.east.reg, linkRefusedMetric))
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", linkRefusedMetric, diff)
			}
		})
	}
	s.onlyWest(t, 10)
}

// TestLinkPoolConnRefusals: a pool connection (index > 0) joins only a
// link whose primary east holds, from the peer that made it, within the
// pool the primary announced; anything else is refused as "pool".
func TestLinkPoolConnRefusals(t *testing.T) {
	s := newProtoSite(t)
	// Mallory's primary, a pool of 2, kept open.
	primary := gatewayHello("mallory")
	primary.Pool = 2
	if reply := s.say(t, s.dial(t, withLinkCert), primary, false, nil); reply.Error != "" {
		t.Fatalf("mallory's primary refused: %s", reply.Error)
	}
	// East registers the link before it replies, so a pool connection
	// dialled the moment the reply arrives finds it.
	if s.east.r.linkByID(primary.LinkID) == nil {
		t.Fatal("east replied to mallory's primary before it registered the link")
	}
	// A second primary with the link's id is refused; the first stays.
	before := counts(t, s.east.reg, linkRefusedMetric)
	if reply := s.say(t, s.dial(t, withLinkCert), primary, false, nil); reply.Reason != "link_id" || reply.Error != fmt.Sprintf("a link with id %q exists", primary.LinkID) {
		t.Errorf("second primary with id %s: reply error %q, reason %q", primary.LinkID, reply.Error, reply.Reason)
	}
	if diff := cmp.Diff(increase(before, counts(t, s.east.reg, linkRefusedMetric)), map[string]float64{"link_id": 1}); diff != "" {
		t.Errorf("%s (-got +want):\n%s", linkRefusedMetric, diff)
	}
	var westLink string
	s.east.r.mu.Lock()
	for id, l := range s.east.r.links {
		if l.peer == "west" {
			westLink = id
		}
	}
	s.east.r.mu.Unlock()
	if westLink == "" {
		t.Fatal("east has no link from west")
	}
	pool := func(linkID string, index, size int) func() hello {
		return func() hello {
			hl := gatewayHello("mallory")
			hl.LinkID, hl.Index, hl.Pool = linkID, index, size
			return hl
		}
	}
	const noLink = "no such link (pool connection before its primary, or from another peer)"
	tests := []struct {
		name  string
		cred  credential
		hello func() hello
		want  string
	}{
		{"before its primary", withLinkCert, pool("00000000000000aa", 1, 2), noLink},
		{"into west's link", withLinkCert, pool(westLink, 1, 2), noLink},
		{"beyond the primary's pool", withLinkCert, pool(primary.LinkID, 2, 3), noLink},
		{"from a sidecar into mallory's link", withMemberToken, func() hello {
			return hello{Version: LinkProtocolVersion, Site: "east", Router: "shop/pod-1", Role: roleMember, Cost: 1, LinkID: primary.LinkID, Index: 1, Pool: 2}
		}, noLink},
		{"into mallory's link", withLinkCert, pool(primary.LinkID, 1, 2), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counts(t, s.east.reg, linkRefusedMetric)
			reply := s.say(t, s.dial(t, tt.cred), tt.hello(), false, nil)
			wantReason := ""
			if tt.want != "" {
				wantReason = "pool"
			}
			if reply.Error != tt.want || reply.Reason != wantReason {
				t.Errorf("reply error %q, reason %q; want %q, %q", reply.Error, reply.Reason, tt.want, wantReason)
			}
			want := map[string]float64{}
			if wantReason != "" {
				want[wantReason] = 1
			}
			got := increase(before, counts(t, s.east.reg, linkRefusedMetric))
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", linkRefusedMetric, diff)
			}
		})
	}
	s.onlyWest(t, 10)
}

// linkByID returns the link east holds with id, nil if none.
func (r *Router) linkByID(id string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.links[id]
}

// TestLinkHopLimit: a stream that reaches a transit gateway (east, on its
// way to west) with one hop or none left is answered with the hop-limit
// status and goes no further; one with hops to spare is forwarded to
// west's backend; one above the protocol's limit is a bad request.
func TestLinkHopLimit(t *testing.T) {
	s := newProtoSite(t)
	sess, ctrl := s.m.link(s.east, s.tok)
	go func() { _, _ = io.Copy(io.Discard, ctrl) }() // east's records for mallory
	tests := []struct {
		name      string
		hops      uint8
		code      uint8
		forwarded bool
	}{
		{"no hop left", 0, statusHopLimit, false},
		{"one hop left", 1, statusHopLimit, false},
		{"two hops left", 2, statusOK, true},
		{"the full limit", defaultHops, statusOK, true},
		{"above the limit", defaultHops + 1, statusBadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hopLimit := s.east.r.m.ConnectFailures.WithLabelValues("backend", "hop_limit")
			transit := s.east.r.m.StreamsOpened.WithLabelValues("backend", "transit")
			delivery := s.west.r.m.StreamsOpened.WithLabelValues("backend", "delivery")
			before := [3]float64{counterValue(hopLimit), counterValue(transit), counterValue(delivery)}
			code, msg, body := openThrough(t, sess, header{Kind: kindData, Hops: tt.hops, Address: "backend", Dest: "west", Origin: "mallory"})
			if code != tt.code {
				t.Fatalf("status %d (%q), want %d", code, msg, tt.code)
			}
			if tt.code == statusHopLimit && msg != "hop limit reached at site east on the way to west" {
				t.Errorf("hop-limit status says %q", msg)
			}
			if tt.forwarded && body != "west" {
				t.Errorf("forwarded stream answered %q, want west's backend", body)
			}
			n := 0.0
			if tt.forwarded {
				n = 1
			}
			want := [3]float64{before[0] + 1 - n, before[1] + n, before[2] + n}
			if tt.code == statusBadRequest {
				want[0] = before[0]
			}
			got := [3]float64{counterValue(hopLimit), counterValue(transit), counterValue(delivery)}
			if got != want {
				t.Errorf("east's hop-limit failures, east's transit streams, west's deliveries = %v, want %v (before %v)", got, want, before)
			}
		})
	}
	s.onlyWest(t, 10)
}

// openThrough opens a stream on sess with h and returns its status, the
// status message, and the first line after it if the status is OK.
func openThrough(t *testing.T, sess *mux.Session, h header) (code uint8, msg, body string) {
	t.Helper()
	b, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sess.OpenWrite(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(st)
	err = readStatus(br)
	var se *statusError
	switch {
	case err == nil:
		line, _ := br.ReadString('\n')
		return statusOK, "", strings.TrimSpace(line)
	case errors.As(err, &se):
		return se.Code, se.Msg, ""
	case errors.Is(err, mux.ErrStreamReset):
		return statusReset, err.Error(), ""
	}
	t.Fatalf("read status: %v", err)
	return 0, "", ""
}

// statusReset is openThrough's code for a stream reset before its
// status was read.
const statusReset = 255

// TestLinkRecordFlood: a linked peer floods its control stream with
// records, most of which east must refuse: each refusal is counted by
// reason, the link stays up, the newest of the peer's own records wins
// and reaches west, and east's clients still reach west.
func TestLinkRecordFlood(t *testing.T) {
	s := newProtoSite(t)
	_, ctrl := s.m.link(s.east, s.tok)
	go func() { _, _ = io.Copy(io.Discard, ctrl) }()
	epoch := time.Now().UnixNano()
	sign := func(r netview.Record) []byte {
		t.Helper()
		sr, err := netview.Sign(r, s.m.key)
		if err != nil {
			t.Fatal(err)
		}
		return sr.Wire()
	}
	asWest := sign(netview.Record{Site: "west", Router: "west-gw-0", Epoch: epoch, Seq: 1, Addresses: map[string]int{"backend": 50}})
	asEast := sign(netview.Record{Site: "east", Router: "east-gw-9", Epoch: epoch, Seq: 1, Addresses: map[string]int{"backend": 50}})
	tampered := tamper(t, sign(netview.Record{Site: "mallory", Router: "other", Epoch: epoch, Seq: 1}))
	const n = 100
	rr := s.east.reg
	before := counts(t, rr, "skiff_site_records_refused_total")
	for i := range n {
		own := sign(netview.Record{Site: "mallory", Epoch: epoch, Seq: uint64(i + 1), Addresses: map[string]int{fmt.Sprintf("flood-%d", i): 1}})
		msg := controlMsg{Records: [][]byte{own, asWest, asEast, tampered, []byte("{")}}
		ctrl.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeMsg(ctrl, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	want := map[string]float64{"key_conflict": 2 * n, "signature": n, "invalid": n}
	tu.Eventually(t, 20*time.Second, "every refused record counted", func() error {
		if diff := cmp.Diff(increase(before, counts(t, rr, "skiff_site_records_refused_total")), want); diff != "" {
			return fmt.Errorf("skiff_site_records_refused_total (-got +want):\n%s", diff)
		}
		return nil
	})
	seqOf := func(r *Router, node string) uint64 {
		for _, rec := range r.db.Records() {
			if rec.Node() == node {
				return rec.Seq
			}
		}
		return 0
	}
	// Messages are applied in order: once the last refusal is counted,
	// the last own record is in.
	if got := seqOf(s.east.r, "mallory"); got != n {
		t.Errorf("east holds mallory's record seq %d, want %d", got, n)
	}
	tu.Eventually(t, 10*time.Second, "west holds mallory's newest record", func() error {
		if got := seqOf(s.west.r, "mallory"); got != n {
			return fmt.Errorf("seq %d, want %d", got, n)
		}
		return nil
	})
	for _, held := range []struct {
		r    *Router
		node string
	}{{s.east.r, "west/west-gw-0"}, {s.west.r, "west/west-gw-0"}, {s.east.r, "east/east-gw-9"}, {s.west.r, "east/east-gw-9"}} {
		for _, rec := range held.r.db.Records() {
			if rec.Node() == held.node && rec.Key == s.m.id {
				t.Errorf("%s holds mallory's record for %s", held.r.self, held.node)
			}
		}
	}
	var up bool
	s.east.r.mu.Lock()
	for _, l := range s.east.r.links {
		if l.peer == "mallory" {
			up = up || l.isUp()
		}
	}
	s.east.r.mu.Unlock()
	if !up {
		t.Error("east closed mallory's link over refused records")
	}
	if !s.east.r.Ready() {
		t.Error("east is not ready after the flood")
	}
	s.onlyWest(t, 20)
}

// tamper returns a signed record's wire form with its signature spoiled.
func tamper(t *testing.T, wire []byte) []byte {
	t.Helper()
	var env struct {
		Record []byte `json:"record"`
		Sig    []byte `json:"sig"`
	}
	if err := json.Unmarshal(wire, &env); err != nil {
		t.Fatal(err)
	}
	env.Sig[len(env.Sig)-1] ^= 0xff
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
