package router

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// Who is at the other end of a link connection, and how it proves it:
//
//   - A site redeeming a token connects with the token's client
//     certificate and proves in its hello that it holds its site key (a
//     signature over the TLS connection's exported keying material). The
//     accepting site records the redemption (name and key) and answers
//     with a link certificate: the redeeming site's name and token,
//     certifying the site key.
//   - From then on the site connects with the link certificate and its
//     site key: the name comes from the certificate, which the TLS
//     handshake verified against the accepting site's CA.
//   - A sidecar of the site (a member) connects with a member token of
//     the site (token.IssueMember); it is not part of the network graph.
//     A member token cannot link a site, nor a link token a sidecar.
//
// Either way, a gateway peer's name is then bound to its key in the
// link-state database (netview.DB.Bind): a name already held by another
// key is refused.

// Admission decides who may link to this site: it redeems tokens, issues
// link certificates and checks those it issued. Package app implements it
// over the token ledger and the site CA.
type Admission interface {
	// Redeem admits site, which proved that it holds key (netview.KeyID
	// form), with the token whose client certificate has serial id, and
	// returns a link certificate (PEM) for site and key.
	Redeem(id, site, key string, now time.Time) ([]byte, error)
	// CheckLink admits a link certificate that this site issued for site
	// and key with token id: the token must still be in the ledger (a
	// deleted ledger entry revokes its link certificates).
	CheckLink(id, site, key string) error
	// RenewLink issues a new link certificate (PEM) for site and key with
	// token id, if CheckLink admits them.
	RenewLink(id, site, key string) ([]byte, error)
	// RekeyLink moves site from key old to key new (site rotated its
	// key, and the link-state database verified new's endorsement by
	// old) and issues a link certificate (PEM) for new with token id.
	RekeyLink(id, site, old, new string) ([]byte, error)
	// AdmitMember admits a sidecar of this site holding the token whose
	// client certificate has serial id.
	AdmitMember(id string, now time.Time) error
	// Policy returns the policy of the links made with token id.
	Policy(id string) (policy.Policy, error)
}

// helloProofLabel is the TLS exporter label of a hello's proof.
const helloProofLabel = "EXPORTER-skiff-link-hello"

// maxHello bounds a hello or a hello reply (a reply carries a link
// certificate of under 1 KiB). It is checked before anything is allocated.
const maxHello = 16 << 10

// maxPool bounds the pool connections a peer may announce for one link.
const maxPool = 16

// peer is who a link connection proved to be.
type peer struct {
	site    string
	router  string // the peer's router name (a sidecar's pod)
	role    string
	key     string // a gateway peer's site key (netview.KeyID)
	tokenID string // the token its link rests on
	// linkCert is a link certificate issued by this connection's
	// redemption, or in place of the expired one it presented
	// (renewed), for the hello reply.
	linkCert []byte
	renewed  bool
	// certLife is the validity of the link certificate the peer holds
	// (presented, or just issued): when to renew it (renew.go).
	certLife certLife
	policy   policy.Policy // the link's (gateway peers)
}

// identity is what pool connections of one link must all prove.
func (p peer) identity() string {
	if p.role == roleMember {
		return "member:" + p.tokenID + "/" + p.router
	}
	return "site:" + p.site + "/" + p.key + "/" + p.router
}

// refusal is a link connection refused for a reason worth a metric label.
type refusal struct {
	reason string // metric label: bad_hello, identity, token, name_taken, ...
	msg    string // what the peer is told and the log says
}

func (e *refusal) Error() string { return e.msg }

func refuse(reason, format string, args ...any) error {
	return &refusal{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// checkHello validates every field of a hello before any is used.
func checkHello(hl hello) error {
	if hl.Version != LinkProtocolVersion {
		return refuse("version", "peer speaks link protocol v%d, this gateway v%d", hl.Version, LinkProtocolVersion)
	}
	if hl.Role != roleGateway && hl.Role != roleMember {
		return refuse("bad_hello", "unknown role %q", clipName(hl.Role))
	}
	if err := names.CheckSite(hl.Site); err != nil {
		return refuse("bad_hello", "hello: %v", err)
	}
	if hl.Router != "" || hl.Role == roleMember {
		if err := names.CheckRouter(hl.Router); err != nil {
			return refuse("bad_hello", "hello: %v", err)
		}
	}
	if hl.Cost < 0 || hl.Cost > netview.MaxCost {
		return refuse("bad_hello", "hello: cost %d, want 1..%d (0 between gateways of one site)", hl.Cost, netview.MaxCost)
	}
	if hl.Pool < 1 || hl.Pool > maxPool || hl.Index < 0 || hl.Index >= hl.Pool {
		return refuse("bad_hello", "hello: connection %d of a pool of %d, want a pool of 1..%d", hl.Index, hl.Pool, maxPool)
	}
	if len(hl.LinkID) != 16 || strings.Trim(hl.LinkID, "0123456789abcdef") != "" {
		return refuse("bad_hello", "hello: link id %q, want 16 hex digits", clipName(hl.LinkID))
	}
	if len(hl.Key) > 256 || len(hl.Proof) > 256 {
		return refuse("bad_hello", "hello: key or proof too long")
	}
	return nil
}

// helloDigest is what a hello's proof signs: the site, the link and the
// TLS connection's exported keying material, so a proof is good for one
// connection only.
func helloDigest(cs tls.ConnectionState, site, linkID string) ([]byte, error) {
	ekm, err := cs.ExportKeyingMaterial(helloProofLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("export keying material: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "skiff link hello v%d\n%s\n%s\n", LinkProtocolVersion, site, linkID)
	h.Write(ekm)
	return h.Sum(nil), nil
}

// prove fills in a gateway's hello key and proof, made with key: the
// site key the connection's link certificate certifies (during a CA
// rotation, the previous one until the peer issued a certificate for the
// new one), or the current one.
func (r *Router) prove(hl *hello, cs tls.ConnectionState, key *ecdsa.PrivateKey) error {
	if key == nil {
		key, _ = siteKeys(r.cfg)
	}
	if key == nil {
		return errors.New("sign hello: no site key")
	}
	id, err := netview.KeyID(&key.PublicKey)
	if err != nil {
		return err
	}
	d, err := helloDigest(cs, hl.Site, hl.LinkID)
	if err != nil {
		return err
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, d)
	if err != nil {
		return fmt.Errorf("sign hello: %w", err)
	}
	hl.Key, hl.Proof = id, base64.StdEncoding.EncodeToString(sig)
	return nil
}

// identify decides who a link connection is, from its verified client
// certificate and its hello, redeeming a token if that is what it
// presents. It returns a *refusal for anything the peer got wrong.
func (r *Router) identify(cs tls.ConnectionState, hl hello, now time.Time) (peer, error) {
	if err := checkHello(hl); err != nil {
		return peer{}, err
	}
	if len(cs.PeerCertificates) == 0 {
		return peer{}, refuse("identity", "no client certificate")
	}
	cert := cs.PeerCertificates[0]
	p := peer{site: hl.Site, router: hl.Router, role: hl.Role}
	li, err := pki.ParseLinkIdentity(cert)
	switch {
	case err == nil:
		// A link certificate: the name is the certificate's.
		return r.identifyLinkCert(p, hl, li, cert, now)
	case strings.HasPrefix(cert.Subject.CommonName, token.MemberCommonName("")):
		// A member token: a sidecar of this site, nothing else.
		return r.identifyMember(p, hl, cert, now)
	case strings.HasPrefix(cert.Subject.CommonName, token.CommonName("")):
		return r.identifyRedeemer(p, cs, hl, cert, now)
	default:
		return peer{}, refuse("identity", "client certificate %q is neither a link certificate nor a token's", clipName(cert.Subject.CommonName))
	}
}

// identifyLinkCert identifies p, which presented a link certificate with
// identity li: a sibling (a gateway of this site), or a gateway of a
// linked site whose link certificate this site issued and still admits.
// One that expired (the handshake admits it until pki.LinkGraceEnd) is
// replaced at once: the reply carries a new one.
func (r *Router) identifyLinkCert(p peer, hl hello, li pki.LinkIdentity, cert *x509.Certificate, now time.Time) (peer, error) {
	key, err := linkCertKey(hl, li, cert)
	if err != nil {
		return peer{}, err
	}
	if li.Site == r.self {
		return r.sibling(hl, key)
	}
	if hl.Cost < 1 {
		return peer{}, refuse("bad_hello", "hello: cost %d, want 1..%d", hl.Cost, netview.MaxCost)
	}
	if err := r.cfg.Admission.CheckLink(li.TokenID, li.Site, key); err != nil {
		return peer{}, refuse("token", "%v", err)
	}
	p.key, p.tokenID = key, li.TokenID
	p.certLife = certLife{cert.NotBefore, cert.NotAfter}
	if now.After(cert.NotAfter) {
		certPEM, err := r.cfg.Admission.RenewLink(li.TokenID, li.Site, key)
		if err != nil {
			return peer{}, refuse("token", "expired link certificate not renewed: %v", err)
		}
		p.linkCert, p.renewed, p.certLife = certPEM, true, lifeOf(certPEM)
	}
	return r.bindGateway(p)
}

// linkCertKey checks that a link certificate with identity li matches
// the hello (a gateway of the certificate's site, naming its key if it
// names one) and returns the site key it certifies (netview.KeyID form).
func linkCertKey(hl hello, li pki.LinkIdentity, cert *x509.Certificate) (string, error) {
	if hl.Role != roleGateway {
		return "", refuse("identity", "a link certificate is for gateways, not a %s", hl.Role)
	}
	if li.Site != hl.Site {
		return "", refuse("identity", "hello says site %q, its link certificate is for site %q", hl.Site, li.Site)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", refuse("identity", "link certificate key is %T, not ECDSA", cert.PublicKey)
	}
	key, err := netview.KeyID(pub)
	if err != nil {
		return "", refuse("identity", "link certificate key: %v", err)
	}
	if hl.Key != "" && hl.Key != key {
		return "", refuse("identity", "hello key differs from the link certificate's")
	}
	return key, nil
}

// identifyMember identifies p, which presented a member token: a sidecar
// of this site, admitted with the token whose client certificate is cert.
func (r *Router) identifyMember(p peer, hl hello, cert *x509.Certificate, now time.Time) (peer, error) {
	p.tokenID = cert.SerialNumber.Text(16)
	if hl.Role != roleMember {
		return peer{}, refuse("identity", "a member token is for this site's sidecars, not a %s", hl.Role)
	}
	if hl.Site != r.self {
		return peer{}, refuse("identity", "member of site %q, this is site %q", hl.Site, r.self)
	}
	if err := r.cfg.Admission.AdmitMember(p.tokenID, now); err != nil {
		return peer{}, refuse("token", "%v", err)
	}
	return p, nil
}

// identifyRedeemer identifies p, which presented a link token's client
// certificate: a gateway of another site that proves it holds the key its
// hello names and redeems the token for a link certificate.
func (r *Router) identifyRedeemer(p peer, cs tls.ConnectionState, hl hello, cert *x509.Certificate, now time.Time) (peer, error) {
	p.tokenID = cert.SerialNumber.Text(16)
	if hl.Role == roleMember {
		return peer{}, refuse("identity", "a link token is for other sites; a sidecar needs a member token (token issue --member)")
	}
	if hl.Site == r.self {
		return peer{}, refuse("identity", "peer claims this site's own name %q", r.self)
	}
	if err := checkHelloProof(cs, hl); err != nil {
		return peer{}, err
	}
	if keys := r.db.KeysOf(hl.Site); len(keys) > 0 && !slices.Contains(keys, hl.Key) {
		return peer{}, refuse("name_taken", "site name %q is held in this network by key %s, not %s", hl.Site, netview.Fingerprint(keys[0]), netview.Fingerprint(hl.Key))
	}
	certPEM, err := r.cfg.Admission.Redeem(p.tokenID, hl.Site, hl.Key, now)
	if err != nil {
		reason := "token"
		if errors.Is(err, token.ErrNameTaken) {
			reason = "name_taken"
		}
		return peer{}, refuse(reason, "%v", err)
	}
	p.key, p.linkCert = hl.Key, certPEM
	p.certLife = lifeOf(certPEM)
	return r.bindGateway(p)
}

// checkHelloProof checks that a hello's proof is a signature, by the key
// the hello names, over this connection's helloDigest.
func checkHelloProof(cs tls.ConnectionState, hl hello) error {
	pub, err := netview.ParseKeyID(hl.Key)
	if err != nil {
		return refuse("identity", "hello: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(hl.Proof)
	if err != nil {
		return refuse("identity", "hello proof is not base64")
	}
	d, err := helloDigest(cs, hl.Site, hl.LinkID)
	if err != nil || !ecdsa.VerifyASN1(pub, d, sig) {
		return refuse("identity", "hello proof does not verify: the peer does not hold the key it names")
	}
	return nil
}

// bindGateway binds a gateway peer's site name to its key in the
// link-state database and completes p with its link's policy.
func (r *Router) bindGateway(p peer) (peer, error) {
	if err := r.db.Bind(p.site, p.key); err != nil {
		return peer{}, refuse("name_taken", "%v", err)
	}
	var err error
	if p.policy, err = r.cfg.Admission.Policy(p.tokenID); err != nil {
		return peer{}, refuse("token", "%v", err)
	}
	return p, nil
}

// linkClientCert checks a link certificate the peer issued to this site
// (for this site and its key, or its previous key during a CA rotation,
// from a CA of roots, valid for at least another minute, or a tenth of
// its life if that is shorter) and returns it, with the site key it
// certifies and the certificates after it (a rotating peer CA's cross
// certificate), as the client certificate of the link's connections.
func (r *Router) linkClientCert(roots *x509.CertPool, certPEM []byte) (*tls.Certificate, error) {
	chain, err := pki.ParseCertificates(certPEM, 1+maxBundle)
	if err != nil {
		return nil, err
	}
	cert := chain[0]
	li, err := pki.ParseLinkIdentity(cert)
	if err != nil {
		return nil, err
	}
	if li.Site != r.self {
		return nil, fmt.Errorf("link certificate is for site %q, this is site %q", li.Site, r.self)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("link certificate key is not ECDSA")
	}
	var key *ecdsa.PrivateKey
	cur, prev := siteKeys(r.cfg)
	switch {
	case cur != nil && pub.Equal(&cur.PublicKey):
		key = cur
	case prev != nil && pub.Equal(&prev.PublicKey):
		key = prev
	default:
		return nil, errors.New("link certificate is for another key than this site's")
	}
	inter := x509.NewCertPool()
	der := [][]byte{cert.Raw}
	for _, c := range chain[1:] {
		inter.AddCert(c)
		der = append(der, c.Raw)
	}
	// An expired one is offered until the peer no longer admits it
	// (pki.LinkGraceEnd): its chain is checked at its last second.
	at, ok := offerTime(cert, time.Now())
	if !ok {
		return nil, fmt.Errorf("link certificate expired at %s, and its issuer no longer admits it", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("link certificate: %w", err)
	}
	return &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: cert}, nil
}

// offerTime is pki.LinkCheckTime for a link certificate this site
// offers at now, with a margin for the clocks: it is no longer offered a
// minute (or a tenth of its life, if that is shorter) before the end of
// its grace.
func offerTime(cert *x509.Certificate, now time.Time) (time.Time, bool) {
	return pki.LinkCheckTime(cert, now.Add(min(time.Minute, cert.NotAfter.Sub(cert.NotBefore)/10)))
}

// clipName shortens a name from the network for a message.
func clipName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

// sibling admits another gateway of this site: it presented a link
// certificate for this site that certifies this site's key, which only a
// holder of the key (the site CA's) can have (pki.CA.SiblingTLS). Of two
// siblings, the one with the lower router name dials: a hello from a
// higher name is refused ("sibling_order"), and the reply's router name
// tells the dialler to stop.
func (r *Router) sibling(hl hello, key string) (peer, error) {
	switch {
	case !slices.Contains(r.db.KeysOf(r.self), key):
		return peer{}, refuse("identity", "a link certificate for this site (%s) with another key", r.self)
	case hl.Role != roleGateway || hl.Router == "":
		return peer{}, refuse("identity", "a gateway of this site must say it is a gateway and name its router")
	case hl.Router == r.routerName:
		return peer{}, refuse("sibling_self", "this is gateway %q itself", r.routerName)
	case hl.Router > r.routerName:
		// It found this gateway before this one found it: dial it now.
		r.kickSiblings()
		return peer{}, refuse("sibling_order", "gateway %q is dialled by gateway %q, not the other way", hl.Router, r.routerName)
	}
	return peer{site: r.self, router: hl.Router, role: roleGateway, key: key}, nil
}
