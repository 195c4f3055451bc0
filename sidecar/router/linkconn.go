package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/backoff"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/rawio"
)

// handshakeTimeout bounds a link connection's TLS handshake and hello, on
// both sides: an unauthenticated connection is held no longer.
const handshakeTimeout = 5 * time.Second

// dialer dials the connections of one configured link. It holds the link
// certificate the peer issued, once there is one, for every later
// connection.
type dialer struct {
	r    *Router
	spec LinkSpec

	mu     sync.Mutex
	cert   *tls.Certificate // the link certificate; nil: the token's
	loaded bool             // the stored link certificate was read
	base   *tls.Config      // the token's, from spec.ClientTLS (nil: spec.TLS)
	// bundle and roots are the trust bundle the peer sent when it rotated
	// its CA (rotation.go) and its pool; nil: the token's CA.
	bundle   []byte
	roots    *x509.CertPool
	caLoaded bool   // the stored bundle was read
	peerKey  string // the peer's key, as the last handshake verified it
}

func (r *Router) newDialer(spec LinkSpec) *dialer {
	return &dialer{r: r, spec: spec, loaded: !r.storesLinkCert(spec),
		caLoaded: r.cfg.Role != RoleGateway || spec.PeerCA == nil, peerKey: spec.PeerKey}
}

// certRefused adds to err, when it is the TLS alert a link port sends
// for a client certificate it refuses (always "bad certificate": the port
// verifies certificates itself, pki.ServerTLS), what may be the cause and
// where it is named.
func certRefused(err error) error {
	if !strings.HasSuffix(err.Error(), "remote error: tls: bad certificate") {
		return err
	}
	return fmt.Errorf("%w (the peer refused this side's certificate, and its log says why: a token or credential from a CA it no longer trusts, a revoked token, or a link certificate past its grace)", err)
}

// storesLinkCert says whether the link certificates of spec's link are
// kept in a store (a gateway's), to be read before its first dial.
func (r *Router) storesLinkCert(spec LinkSpec) bool {
	return r.cfg.Role == RoleGateway && spec.LinkCert != nil
}

// loadCA reads the stored trust bundle of the peer, until a read
// succeeds.
func (d *dialer) loadCA() {
	d.mu.Lock()
	done := d.caLoaded
	d.mu.Unlock()
	if done {
		return
	}
	bundle, err := d.spec.PeerCA()
	if err != nil {
		d.r.log.Info("stored CA bundle of the peer not read; verifying it with the token's CA, and reading again next time", "link", d.spec.Name, "error", err.Error())
		return
	}
	var pool *x509.CertPool
	if bundle != nil {
		if pool, err = parseBundle(d.spec.PeerSite, bundle); err != nil {
			d.r.log.Info("stored CA bundle of the peer not used; verifying it with the token's CA", "link", d.spec.Name, "error", err.Error())
			bundle = nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.caLoaded && d.roots == nil && pool != nil {
		d.bundle, d.roots = bundle, pool
	}
	d.caLoaded = true
}

// rootPool returns the roots the peer is verified with: its trust bundle,
// or the token's CA.
func (d *dialer) rootPool() *x509.CertPool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.roots != nil {
		return d.roots
	}
	if d.base != nil {
		return d.base.RootCAs
	}
	return d.spec.TLS.RootCAs
}

// learnCA takes the trust bundle the peer sent over the link: checked,
// used for the next connections, and saved.
func (d *dialer) learnCA(bundle []byte) error {
	pool, err := parseBundle(d.spec.PeerSite, bundle)
	if err != nil {
		return err
	}
	base := d.rootPool()
	d.mu.Lock()
	// The bundle a peer that never rotated sends is its token's CA: nothing
	// to keep.
	same := bytes.Equal(d.bundle, bundle) || (d.bundle == nil && base != nil && base.Equal(pool))
	if !same {
		d.bundle, d.roots, d.caLoaded = bundle, pool, true
	}
	d.mu.Unlock()
	if same {
		return nil
	}
	d.r.log.Info("peer's CA bundle taken: the peer is verified with it from now on", "link", d.spec.Name, "peerSite", d.spec.PeerSite, "certificates", bytes.Count(bundle, []byte("BEGIN CERTIFICATE")))
	if d.spec.SavePeerCA != nil {
		if err := d.spec.SavePeerCA(bundle); err != nil {
			d.r.log.Error(err, "save the peer's CA bundle", "link", d.spec.Name, "peerSite", d.spec.PeerSite)
		}
	}
	return nil
}

// load reads the stored link certificate, until a read succeeds. One that
// cannot be read now (its store unreachable) is read again before the
// next dial; meanwhile the token's certificate is tried.
func (d *dialer) load() {
	d.mu.Lock()
	done := d.loaded
	d.mu.Unlock()
	if done {
		return
	}
	certPEM, err := d.spec.LinkCert()
	if err != nil {
		d.r.log.Info("stored link certificate not read; trying the token, and the store again next time", "link", d.spec.Name, "error", err.Error())
		return
	}
	var cert *tls.Certificate
	if certPEM != nil {
		d.loadCA()
		if cert, err = d.r.linkClientCert(d.rootPool(), certPEM); err != nil {
			d.r.log.Info("stored link certificate not used; redeeming the token again", "link", d.spec.Name, "error", err.Error())
		} else {
			d.r.certExpiry(d.spec.PeerSite, certPEM)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded && d.cert == nil {
		d.cert = cert
	}
	d.loaded = true
}

// dropExpired forgets a link certificate past the grace its issuer
// gives an expired one (pki.LinkGraceEnd: the link was down for longer
// than the certificate had left, and as long again), so that the next
// dial reads the store again, where another replica may have saved a
// renewed one, and otherwise redeems the token again, which the peer
// admits for the key that redeemed it before if it still trusts the
// token's CA. Offering that certificate would be refused for ever. One
// that expired within its grace is still offered: the peer answers with
// a new one.
func (d *dialer) dropExpired(now time.Time) {
	d.mu.Lock()
	cert := d.cert
	expired := false
	if cert != nil {
		_, ok := offerTime(cert.Leaf, now)
		expired = !ok
	}
	if expired {
		d.cert = nil
		d.loaded = !d.r.storesLinkCert(d.spec)
	}
	d.mu.Unlock()
	if expired {
		d.r.log.Info("link certificate expired and past the grace its issuer gives; reading the store again, else redeeming the token", "link", d.spec.Name, "peerSite", d.spec.PeerSite, "expired", cert.Leaf.NotAfter.UTC())
	}
}

// tlsConfig returns the TLS configuration of the next dial, and the link
// certificate it presents (nil: the token's).
func (d *dialer) tlsConfig() (*tls.Config, *tls.Certificate) {
	d.dropExpired(time.Now())
	d.load()
	d.loadCA()
	base := d.spec.TLS
	if d.spec.ClientTLS != nil {
		c, err := d.spec.ClientTLS()
		d.mu.Lock()
		if err != nil {
			d.r.log.Info("credential not read again; dialling with the last one", "link", d.spec.Name, "error", err.Error())
		} else {
			d.base = c
		}
		if d.base != nil {
			base = d.base
		}
		d.mu.Unlock()
	}
	cfg := base.Clone()
	d.mu.Lock()
	cert, roots := d.cert, d.roots
	d.mu.Unlock()
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if roots != nil {
		cfg.RootCAs = roots
	}
	return cfg, cert
}

// learn takes the link certificate a redemption returned: checked, kept
// for the next connections, and saved.
func (d *dialer) learn(certPEM string) error {
	cert, err := d.r.linkClientCert(d.rootPool(), []byte(certPEM))
	if err != nil {
		return fmt.Errorf("link certificate from %s: %w", d.spec.PeerSite, err)
	}
	d.mu.Lock()
	d.cert, d.loaded = cert, true
	d.mu.Unlock()
	d.r.certExpiry(d.spec.PeerSite, []byte(certPEM))
	if d.spec.SaveLinkCert != nil {
		if err := d.spec.SaveLinkCert([]byte(certPEM)); err != nil {
			// The link works; the token is redeemed again after a restart.
			d.r.log.Error(err, "save link certificate", "link", d.spec.Name, "peerSite", d.spec.PeerSite)
		}
	}
	return nil
}

// Redialling while the peer drains: how often a dialled link is checked
// for the peer's GOAWAY, the longest pause between dials for a
// replacement (the peer is being replaced, not gone: a restarted
// process, or a new pod behind the same Service), and for how long after
// the GOAWAY dials are that frequent: a drain's length, after which a
// peer that is still not back is treated as down.
const (
	goAwayPoll     = 200 * time.Millisecond
	redialMaxPause = time.Second
	redialFastFor  = DefaultDrainTimeout + gatewayDrainHold
)

// dialLoop keeps one configured link up, with jittered exponential
// backoff. When the peer drains (it sent GOAWAY), it dials a replacement
// at once, which reaches another replica or the peer's successor, while
// the draining link stays open for its streams until the peer closes it.
// Until the replacement is up, even once the draining link has closed,
// it pauses no more than redialMaxPause between dials (for at most
// redialFastFor). A draining gateway dials nothing new; a draining
// sidecar goes on, since it still serves its pod.
func (r *Router) dialLoop(ctx context.Context, spec LinkSpec) {
	log := r.log.WithValues("link", spec.Name, "endpoint", spec.Endpoint)
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	d := r.newDialer(spec)
	var draining []*link    // links to a draining peer, kept until they close
	var replaceBy time.Time // the peer drained: no replacement is up yet
	defer func() {
		for _, l := range draining {
			l.close(ctx.Err())
		}
	}()
	for ctx.Err() == nil {
		if !r.dialsWhileDraining() {
			<-ctx.Done()
			return
		}
		draining = stillOpen(draining)
		l, err := d.dialLink(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := b.Next()
			if time.Now().Before(replaceBy) {
				wait = min(wait, redialMaxPause)
			}
			log.Info("link dial failed, retrying", "error", err.Error(), "retryIn", wait.String())
			backoff.Sleep(ctx, wait)
			continue
		}
		b.Reset()
		replaceBy = time.Time{}
		for i := 1; i < r.cfg.PoolSize; i++ {
			r.tasks.Go(func() { d.keepPoolConn(ctx, l, i) })
		}
		switch r.watchLink(ctx, l, replaceable(r, spec)) {
		case linkStopped:
			l.close(ctx.Err())
			return
		case linkPeerDraining:
			log.Info("peer is draining; dialling a replacement link", "peerSite", l.peer, "linkID", l.id)
			draining = append(draining, l)
			replaceBy = time.Now().Add(redialFastFor)
		case linkEnded:
			backoff.Sleep(ctx, b.Next())
		}
	}
}

// What became of a dialled link (watchLink).
type linkOutcome int

const (
	linkEnded        linkOutcome = iota // it closed
	linkStopped                         // the dial loop's context ended
	linkPeerDraining                    // the peer sent GOAWAY
)

// watchLink waits until l closes, ctx ends, or, when replace is true, the
// peer drains (while this router is one that dials a replacement then).
func (r *Router) watchLink(ctx context.Context, l *link, replace bool) linkOutcome {
	t := time.NewTicker(goAwayPoll)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return linkEnded
		case <-ctx.Done():
			return linkStopped
		case <-t.C:
			if replace && l.peerDraining() && r.dialsWhileDraining() {
				return linkPeerDraining
			}
		}
	}
}

// replaceable reports whether a link dialled with spec is replaced when
// its peer drains: not a sibling's (another gateway of this site), whose
// address is the draining gateway itself; the sibling loop lets it go
// once that gateway is gone.
func replaceable(r *Router, spec LinkSpec) bool {
	return r.cfg.Role == RoleSidecar || spec.PeerSite != r.self
}

// dialsWhileDraining reports whether the router dials links now: always
// but for a draining gateway, which takes no new streams.
func (r *Router) dialsWhileDraining() bool {
	return r.cfg.Role == RoleSidecar || !r.draining.Load()
}

// stillOpen returns the links of ls that have not closed.
func stillOpen(ls []*link) []*link {
	out := ls[:0]
	for _, l := range ls {
		select {
		case <-l.done:
		default:
			out = append(out, l)
		}
	}
	return out
}

// keepPoolConn keeps pool connection i of a dialed link up while the link
// lives and its peer (and, for a gateway, this router) is not draining.
func (d *dialer) keepPoolConn(ctx context.Context, l *link, i int) {
	r := d.r
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-l.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		if l.peerDraining() || !r.dialsWhileDraining() {
			return // no new streams go on this link
		}
		sess, reply, err := d.dialSession(ctx, l.id, i)
		if err == nil && reply.Router != l.router {
			// The site's Service sent it to another of its gateways,
			// which has no link with this id (it refused it, or a peer
			// that predates router names did not say).
			sess.Close()
			err = fmt.Errorf("landed on gateway %q of site %s, the link is with %q", clipName(reply.Router), l.peer, l.router)
		}
		if err != nil {
			r.log.V(1).Info("link pool connection failed", "peerSite", l.peer, "index", i, "error", err.Error())
			backoff.Sleep(ctx, b.Next())
			continue
		}
		b.Reset()
		if !l.setSession(i, sess) {
			sess.Close()
			return
		}
		r.tasks.Go(func() { r.serveSession(ctx, l, sess) })
		select {
		case <-sess.Done():
			l.clearSession(i, sess)
		case <-l.done:
			return
		}
	}
}

// dialLink dials the primary connection, opens the control stream and
// returns the link once it is up.
func (d *dialer) dialLink(ctx context.Context) (*link, error) {
	r := d.r
	id := newID()
	sess, reply, err := d.dialSession(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	peerKey := d.peerKey
	d.mu.Unlock()
	p := peer{site: d.spec.PeerSite, router: reply.Router, role: roleGateway, key: peerKey, policy: d.spec.Policy}
	if r.cfg.Role == RoleSidecar {
		p.site = r.self
	}
	l := newLink(r, id, p, d.spec.Cost, true, r.cfg.PoolSize)
	if r.cfg.Role == RoleSidecar {
		// This gateway's record becomes the sidecar's local one when it
		// comes over the link (readControl).
		r.gateway.Store(l)
	}
	if r.cfg.Role == RoleGateway && d.spec.PeerSite != r.self {
		l.learn, l.learnCA = d.learn, d.learnCA
	}
	l.setSession(0, sess)
	ctrl, err := sess.Open(ctx)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	h, _ := header{Kind: kindControl, Origin: r.self}.encode()
	if _, err := ctrl.Write(h); err != nil {
		sess.Close()
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	r.tasks.Go(func() { r.serveSession(ctx, l, sess) })
	r.tasks.Go(func() {
		<-sess.Done()
		l.close(fmt.Errorf("primary connection: %w", sess.Err()))
	})
	l.markUp(ctrl)
	r.tasks.Go(func() { l.readControl(bufio.NewReader(ctrl)) })
	return l, nil
}

// dialSession dials one TLS connection of a link and says hello.
func (d *dialer) dialSession(ctx context.Context, id string, index int) (*mux.Session, helloReply, error) {
	r, spec := d.r, d.spec
	cfg, cert := d.tlsConfig()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout+2*time.Second)
	defer cancel()
	conn, err := dialTLS(dctx, r.cfg.DialTimeout, spec.Endpoint, cfg)
	if err != nil {
		if spec.onReply != nil {
			spec.onReply(helloReply{Error: "unreachable"}) // no gateway answered there
		}
		return nil, helloReply{}, fmt.Errorf("dial %s: %w", spec.Endpoint, err)
	}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	hl := hello{Version: LinkProtocolVersion, Site: r.self, Role: roleGateway, Cost: spec.Cost, LinkID: id, Index: index, Pool: r.cfg.PoolSize, Router: r.routerName}
	if r.cfg.Role == RoleSidecar {
		hl.Role = roleMember
	} else if err := r.prove(&hl, conn.ConnectionState(), certKey(cert)); err != nil {
		conn.Close()
		return nil, helloReply{}, err
	}
	if err := writeMsg(conn, hl); err != nil {
		conn.Close()
		return nil, helloReply{}, fmt.Errorf("send hello: %w", err)
	}
	var reply helloReply
	if err := readMsgLimit(conn, &reply, maxHello); err != nil {
		conn.Close()
		return nil, helloReply{}, fmt.Errorf("read hello reply: %w", certRefused(err))
	}
	if reply.Router != "" && names.CheckRouter(reply.Router) != nil {
		conn.Close()
		return nil, helloReply{}, fmt.Errorf("peer %q names its router %q: not a router name", clipName(reply.Site), clipName(reply.Router))
	}
	if spec.onReply != nil {
		spec.onReply(reply)
	}
	if err := d.checkReply(reply, conn.ConnectionState()); err != nil {
		conn.Close()
		return nil, helloReply{}, err
	}
	conn.SetDeadline(time.Time{})
	return mux.Client(corked(conn), r.muxConfig), reply, nil
}

// checkReply checks the accepting side's answer to a hello, and binds
// the peer's name to its key: the key of the CA the handshake verified
// the peer with (during the peer's CA rotation, either of its keys), or
// the token's.
func (d *dialer) checkReply(reply helloReply, cs tls.ConnectionState) error {
	r, spec := d.r, d.spec
	if reply.Error != "" {
		return fmt.Errorf("peer %q refused the link: %s", clipName(reply.Site), clipName(reply.Error))
	}
	if reply.Version != LinkProtocolVersion {
		return fmt.Errorf("peer %q speaks link protocol v%d, this gateway v%d: %w", clipName(reply.Site), reply.Version, LinkProtocolVersion, ErrVersion)
	}
	if r.cfg.Role == RoleSidecar {
		if reply.Site != r.self {
			return fmt.Errorf("gateway belongs to site %q, this sidecar to %q", clipName(reply.Site), r.self)
		}
		return nil
	}
	if reply.Site != spec.PeerSite {
		return fmt.Errorf("peer says it is site %q, its token is site %q's", clipName(reply.Site), spec.PeerSite)
	}
	if reply.LinkCert != "" {
		if err := d.learn(reply.LinkCert); err != nil {
			return err
		}
	}
	key := spec.PeerKey
	if k := rootKey(cs); k != "" {
		key = k
	}
	if err := r.db.Bind(spec.PeerSite, key); err != nil {
		return fmt.Errorf("link to %s: %w", spec.PeerSite, err)
	}
	d.mu.Lock()
	d.peerKey = key
	d.mu.Unlock()
	return nil
}

// rootKey returns the key (netview.KeyID) of the root the handshake
// verified the peer's certificate with, "" if there is none.
func rootKey(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	chain := cs.VerifiedChains[0]
	pub, ok := chain[len(chain)-1].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return ""
	}
	id, _ := netview.KeyID(pub)
	return id
}

// certKey returns the private key of a link certificate (nil: none).
func certKey(c *tls.Certificate) *ecdsa.PrivateKey {
	if c == nil {
		return nil
	}
	k, _ := c.PrivateKey.(*ecdsa.PrivateKey)
	return k
}

// handleLinkConn serves one connection to the link port: TLS, hello,
// identity, then a mux session as a link's primary or pool connection.
// ctx is Run's.
func (r *Router) handleLinkConn(ctx context.Context, raw net.Conn, handshakeDone func()) {
	conn, hl, err := r.acceptHello(ctx, raw)
	if err != nil {
		handshakeDone()
		r.refused(raw, hl, err)
		raw.Close()
		return
	}
	p, err := r.identify(conn.ConnectionState(), hl, time.Now())
	if err == nil && hl.Index > 0 {
		err = r.checkPoolConn(hl, p)
	}
	if err == nil && r.draining.Load() {
		// The link port closed when the drain began; a handshake that
		// was under way gets no link either.
		err = refuse("draining", "site %s's gateway is draining", r.self)
	}
	var l *link
	if err == nil && hl.Index == 0 {
		// Registered before the reply, so that a pool connection the
		// peer dials as soon as it has the reply finds its link; it
		// counts as up only once markUp runs.
		l = newLink(r, hl.LinkID, p, hl.Cost, false, hl.Pool)
		if !r.registerLink(l) {
			err = refuse("link_id", "a link with id %q exists", hl.LinkID)
		}
	}
	if err != nil {
		handshakeDone()
		r.refused(raw, hl, err)
		reason := "other"
		var rf *refusal
		if errors.As(err, &rf) {
			reason = rf.reason
		}
		_ = writeMsg(conn, helloReply{Version: LinkProtocolVersion, Site: r.self, Router: r.routerName, Error: err.Error(), Reason: reason})
		conn.Close()
		return
	}
	err = writeMsg(conn, helloReply{Version: LinkProtocolVersion, Site: r.self, Router: r.routerName, LinkCert: string(p.linkCert)})
	handshakeDone()
	if err != nil {
		if l != nil {
			l.close(fmt.Errorf("hello reply: %w", err))
		}
		conn.Close()
		return
	}
	switch {
	case p.renewed:
		r.m.LinkCertsRenewed.WithLabelValues(p.site).Inc()
		r.log.Info("expired link certificate admitted within its grace; a new one sent", "peerSite", p.site, "token", p.tokenID, "expires", p.certLife.notAfter.UTC().Format(time.RFC3339))
	case len(p.linkCert) > 0:
		r.log.Info("token redeemed", "peerSite", p.site, "token", p.tokenID, "peerKey", netview.Fingerprint(p.key))
	}
	conn.SetDeadline(time.Time{})
	sess := mux.Server(corked(conn), r.muxConfig)
	if hl.Index > 0 {
		r.attachPoolConn(ctx, hl, sess)
		return
	}
	if !l.setSession(0, sess) {
		sess.Close() // closed meanwhile: the router stopped
		return
	}
	if ctx.Err() != nil {
		// Accepted as the router stopped, after it closed its links.
		l.close(ctx.Err())
	}
	r.serveSession(ctx, l, sess) // until the session ends
	l.close(fmt.Errorf("primary connection: %w", sess.Err()))
}

// registerLink adds l to the router's links, unless one with its id is
// there.
func (r *Router) registerLink(l *link) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.links[l.id] != nil {
		return false
	}
	r.setLinkLocked(l)
	return true
}

// dialTLS dials endpoint and runs the TLS handshake, as tls.Dialer does,
// over a corkConn (cork.go).
func dialTLS(ctx context.Context, timeout time.Duration, endpoint string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := (&net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}).DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		host, _, _ := net.SplitHostPort(endpoint)
		cfg.ServerName = host
	}
	conn := tls.Client(&corkConn{Conn: rawio.Wrap(raw)}, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// acceptHello runs the TLS handshake and reads the hello, within
// handshakeTimeout.
func (r *Router) acceptHello(ctx context.Context, raw net.Conn) (*tls.Conn, hello, error) {
	conn := tls.Server(&corkConn{Conn: rawio.Wrap(raw)}, r.cfg.ServerTLS)
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return nil, hello{}, refuse("tls", "TLS handshake failed: %v", err)
	}
	var hl hello
	if err := readMsgLimit(conn, &hl, maxHello); err != nil {
		return nil, hello{}, refuse("bad_hello", "bad hello: %v", err)
	}
	return conn, hl, nil
}

// checkPoolConn admits a pool connection to an existing link only if it
// proved the identity of the link's primary.
func (r *Router) checkPoolConn(hl hello, p peer) error {
	r.mu.Lock()
	l := r.links[hl.LinkID]
	r.mu.Unlock()
	if l == nil || !r.samePeer(l, p) || hl.Index >= len(l.sessions) {
		return refuse("pool", "no such link (pool connection before its primary, or from another peer)")
	}
	return nil
}

func (r *Router) attachPoolConn(ctx context.Context, hl hello, sess *mux.Session) {
	r.mu.Lock()
	l := r.links[hl.LinkID]
	r.mu.Unlock()
	if l == nil || !l.setSession(hl.Index, sess) {
		sess.Close()
		return
	}
	r.tasks.Go(func() { <-sess.Done(); l.clearSession(hl.Index, sess) })
	r.serveSession(ctx, l, sess)
}

// refused logs (rate-limited) and counts a refused link connection.
func (r *Router) refused(raw net.Conn, hl hello, err error) {
	reason := "other"
	var rf *refusal
	if errors.As(err, &rf) {
		reason = rf.reason
	}
	r.m.LinkRefused.WithLabelValues(reason).Inc()
	site := hl.Site
	if names.CheckSite(site) != nil {
		site = clipName(site)
	}
	if ok, suppressed := r.refusedLogs.Allow(reason); ok {
		r.log.Info("link connection refused", "remote", raw.RemoteAddr().String(), "peerSite", site, "error", err.Error(), "suppressed", suppressed)
	}
}
