package router

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/netview"
)

// link is one logical link to a peer: a pool of mux sessions over mTLS
// connections. Session 0, the primary, carries the control stream; the link
// is up while the primary lives.
type link struct {
	r      *Router
	id     string
	peer   string // peer site (a member's site equals ours)
	name   string // peer's own name (members: pod name)
	role   string // the peer's role
	cost   int
	dialed bool

	mu       sync.Mutex
	sessions []*mux.Session // by pool index; nil where down
	ctrl     *mux.Stream
	up       bool
	closed   bool

	// pending records to send, coalesced per site; kick wakes the writer.
	pendMu  sync.Mutex
	pending map[string]netview.Record
	kick    chan struct{}
	done    chan struct{}
}

func newLink(r *Router, id, peer, name, role string, cost int, dialed bool, pool int) *link {
	return &link{
		r: r, id: id, peer: peer, name: name, role: role, cost: cost, dialed: dialed,
		sessions: make([]*mux.Session, pool),
		pending:  map[string]netview.Record{},
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

func (l *link) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up && !l.closed
}

func (l *link) counts() (conns, streams int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sessions {
		if s != nil {
			conns++
			streams += s.NumStreams()
		}
	}
	return
}

// pick returns the live session with the fewest streams.
func (l *link) pick() *mux.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best *mux.Session
	bestN := math.MaxInt
	for _, s := range l.sessions {
		if s == nil {
			continue
		}
		select {
		case <-s.Done():
			continue
		default:
		}
		if n := s.NumStreams(); n < bestN {
			best, bestN = s, n
		}
	}
	return best
}

// setSession installs a pool session; it returns false if the link is closed.
func (l *link) setSession(i int, s *mux.Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || i < 0 || i >= len(l.sessions) {
		return false
	}
	if old := l.sessions[i]; old != nil {
		old.Close()
	}
	l.sessions[i] = s
	l.r.m.LinkConns.WithLabelValues(l.peer).Set(float64(l.liveLocked()))
	return true
}

func (l *link) clearSession(i int, s *mux.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[i] == s {
		l.sessions[i] = nil
	}
	l.r.m.LinkConns.WithLabelValues(l.peer).Set(float64(l.liveLocked()))
}

func (l *link) liveLocked() int {
	n := 0
	for _, s := range l.sessions {
		if s != nil {
			n++
		}
	}
	return n
}

func (l *link) goAway() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sessions {
		if s != nil {
			s.GoAway()
		}
	}
}

// close ends the link and all its sessions; idempotent.
func (l *link) close(cause error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	wasUp := l.up
	l.up = false
	sessions := append([]*mux.Session(nil), l.sessions...)
	l.mu.Unlock()
	close(l.done)
	for _, s := range sessions {
		if s != nil {
			s.Close()
		}
	}
	r := l.r
	r.mu.Lock()
	if r.links[l.id] == l {
		delete(r.links, l.id)
	}
	r.mu.Unlock()
	if wasUp {
		r.log.Info("link down", "peerSite", l.peer, "peer", l.name, "linkID", l.id, "reason", errString(cause))
		r.m.LinksUp.WithLabelValues(l.peer, l.direction()).Set(0)
		r.m.LinkConns.WithLabelValues(l.peer).Set(0)
		r.updateLocal()
		r.viewChanged()
	}
}

func (l *link) direction() string {
	if l.dialed {
		return "outgoing"
	}
	return "incoming"
}

// markUp registers the link once its control stream exists and sends the
// peer our whole database.
func (l *link) markUp(ctrl *mux.Stream) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.ctrl = ctrl
	l.up = true
	l.mu.Unlock()
	r := l.r
	r.mu.Lock()
	r.links[l.id] = l
	r.mu.Unlock()
	r.log.Info("link up", "peerSite", l.peer, "peer", l.name, "peerRole", l.role, "cost", l.cost, "direction", l.direction(), "linkID", l.id)
	r.m.LinksUp.WithLabelValues(l.peer, l.direction()).Set(1)
	go l.writeLoop()
	if r.cfg.Role == RoleGateway {
		l.enqueue(r.db.Records())
		l.enqueue([]netview.Record{r.db.Local()})
		r.updateLocal()
	}
}

func (l *link) enqueue(recs []netview.Record) {
	l.pendMu.Lock()
	for _, rec := range recs {
		if old, ok := l.pending[rec.Site]; !ok || rec.Newer(old) {
			l.pending[rec.Site] = rec
		}
	}
	l.pendMu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// controlMsg is what flows on a link's control stream.
type controlMsg struct {
	Records [][]byte `json:"records,omitempty"` // netview-encoded site records
}

// writeLoop sends pending records; a slow peer gets the newest record per
// site, never a growing queue.
func (l *link) writeLoop() {
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
		}
		l.pendMu.Lock()
		batch := l.pending
		l.pending = map[string]netview.Record{}
		l.pendMu.Unlock()
		var msg controlMsg
		for _, rec := range batch {
			b, err := netview.Encode(rec)
			if err != nil {
				l.r.log.Error(err, "encode site record", "peerSite", rec.Site)
				continue
			}
			msg.Records = append(msg.Records, b)
		}
		if len(msg.Records) == 0 {
			continue
		}
		l.mu.Lock()
		ctrl := l.ctrl
		l.mu.Unlock()
		ctrl.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeMsg(ctrl, msg); err != nil {
			l.close(fmt.Errorf("send site records: %w", err))
			return
		}
	}
}

// readControl applies records from the peer until the stream ends.
func (l *link) readControl(br *bufio.Reader) {
	r := l.r
	for {
		var msg controlMsg
		if err := readMsg(br, &msg); err != nil {
			l.close(fmt.Errorf("control stream: %w", err))
			return
		}
		var changed []netview.Record
		for _, b := range msg.Records {
			rec, err := netview.Decode(b)
			if err != nil {
				r.log.Error(err, "site record refused", "peerSite", l.peer)
				continue
			}
			r.m.RecordsReceived.Inc()
			if r.cfg.Role == RoleSidecar && rec.Site == r.self {
				// A sidecar's view is rooted at its gateway: the gateway's
				// record is the sidecar's local one.
				_, ch1 := r.db.SetLocal(rec.Links, rec.Addresses)
				if _, ch2 := r.db.SetLocalRouting(rec.Routing); ch1 || ch2 {
					changed = append(changed, rec)
				}
				continue
			}
			if l.role == roleMember {
				continue // members never originate records
			}
			if r.db.Apply(rec) {
				changed = append(changed, rec)
			}
		}
		if len(changed) > 0 {
			if r.cfg.Role == RoleGateway {
				r.flood(changed, l)
			}
			r.viewChanged()
		}
	}
}

// flood sends records to every up link but except.
func (r *Router) flood(recs []netview.Record, except *link) {
	r.mu.Lock()
	targets := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		if l != except {
			targets = append(targets, l)
		}
	}
	r.mu.Unlock()
	for _, l := range targets {
		if l.isUp() {
			l.enqueue(recs)
		}
	}
}

// dialLoop keeps one configured link up, with jittered exponential backoff.
func (r *Router) dialLoop(ctx context.Context, spec LinkSpec) {
	log := r.log.WithValues("link", spec.Name, "endpoint", spec.Endpoint)
	backoff := newBackoff(100*time.Millisecond, 15*time.Second)
	for ctx.Err() == nil {
		l, err := r.dialLink(ctx, spec)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := backoff.next()
			log.Info("link dial failed, retrying", "error", err.Error(), "retryIn", d.String())
			sleepCtx(ctx, d)
			continue
		}
		backoff.reset()
		if spec.Connected != nil {
			spec.Connected(l.peer)
		}
		for i := 1; i < r.cfg.PoolSize; i++ {
			go r.keepPoolConn(ctx, spec, l, i)
		}
		select {
		case <-l.done:
		case <-ctx.Done():
			l.close(ctx.Err())
			return
		}
		sleepCtx(ctx, backoff.next())
	}
}

// keepPoolConn keeps pool connection i of a dialed link up while the link lives.
func (r *Router) keepPoolConn(ctx context.Context, spec LinkSpec, l *link, i int) {
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-l.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		sess, _, err := r.dialSession(ctx, spec, l.id, i)
		if err != nil {
			r.log.V(1).Info("link pool connection failed", "peerSite", l.peer, "index", i, "error", err.Error())
			sleepCtx(ctx, backoff.next())
			continue
		}
		backoff.reset()
		if !l.setSession(i, sess) {
			sess.Close()
			return
		}
		go r.serveSession(l, sess)
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
func (r *Router) dialLink(ctx context.Context, spec LinkSpec) (*link, error) {
	id := newID()
	sess, reply, err := r.dialSession(ctx, spec, id, 0)
	if err != nil {
		return nil, err
	}
	if r.cfg.Role == RoleSidecar && reply.Site != r.self {
		sess.Close()
		return nil, fmt.Errorf("gateway belongs to site %q, this sidecar to %q", reply.Site, r.self)
	}
	l := newLink(r, id, reply.Site, reply.Site, roleGateway, spec.Cost, true, r.cfg.PoolSize)
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
	go r.serveSession(l, sess)
	go func() {
		<-sess.Done()
		l.close(fmt.Errorf("primary connection: %w", sess.Err()))
	}()
	l.markUp(ctrl)
	go l.readControl(bufio.NewReader(ctrl))
	return l, nil
}

// dialSession dials one TLS connection of a link and says hello.
func (r *Router) dialSession(ctx context.Context, spec LinkSpec, id string, index int) (*mux.Session, helloReply, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: r.cfg.DialTimeout, KeepAlive: 15 * time.Second}, Config: spec.TLS}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout+2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", spec.Endpoint)
	if err != nil {
		return nil, helloReply{}, fmt.Errorf("dial %s: %w", spec.Endpoint, err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	role, name := roleGateway, r.self
	if r.cfg.Role == RoleSidecar {
		role, name = roleMember, r.cfg.Name
	}
	hl := hello{Version: LinkProtocolVersion, Site: r.self, Role: role, Cost: spec.Cost, LinkID: id, Index: index, Pool: r.cfg.PoolSize}
	if role == roleMember {
		hl.Site = r.self + "/" + name
	}
	if err := writeMsg(conn, hl); err != nil {
		conn.Close()
		return nil, helloReply{}, fmt.Errorf("send hello: %w", err)
	}
	var reply helloReply
	if err := readMsg(conn, &reply); err != nil {
		conn.Close()
		return nil, helloReply{}, fmt.Errorf("read hello reply: %w", err)
	}
	if reply.Error != "" {
		conn.Close()
		return nil, reply, fmt.Errorf("peer %q refused the link: %s", reply.Site, reply.Error)
	}
	if reply.Version != LinkProtocolVersion {
		conn.Close()
		return nil, reply, fmt.Errorf("peer %q speaks link protocol v%d, this gateway v%d: %w", reply.Site, reply.Version, LinkProtocolVersion, ErrVersion)
	}
	conn.SetDeadline(time.Time{})
	return mux.Client(conn, r.cfg.Mux), reply, nil
}

// acceptLinks serves link access.
func (r *Router) acceptLinks(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error(err, "accept link connection")
			}
			return
		}
		go r.handleLinkConn(ctx, c)
	}
}

func (r *Router) handleLinkConn(ctx context.Context, raw net.Conn) {
	conn := tls.Server(raw, r.cfg.ServerTLS)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	log := r.log.WithValues("remote", raw.RemoteAddr().String())
	if err := conn.HandshakeContext(ctx); err != nil {
		log.Info("link connection refused: TLS handshake failed", "error", err.Error())
		conn.Close()
		return
	}
	var hl hello
	if err := readMsg(conn, &hl); err != nil {
		log.Info("link connection refused: bad hello", "error", err.Error())
		conn.Close()
		return
	}
	refuse := func(msg string) {
		log.Info("link connection refused", "peerSite", hl.Site, "reason", msg)
		_ = writeMsg(conn, helloReply{Version: LinkProtocolVersion, Site: r.self, Error: msg})
		conn.Close()
	}
	if hl.Version != LinkProtocolVersion {
		refuse(fmt.Sprintf("peer speaks link protocol v%d, this gateway v%d", hl.Version, LinkProtocolVersion))
		return
	}
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		refuse("no client certificate")
		return
	}
	peerSite, memberName := hl.Site, hl.Site
	if hl.Role == roleMember {
		site, name, ok := cutSlash(hl.Site)
		if !ok || site != r.self {
			refuse(fmt.Sprintf("member %q does not belong to site %q", hl.Site, r.self))
			return
		}
		peerSite, memberName = site, name
	} else if hl.Role != roleGateway {
		refuse(fmt.Sprintf("unknown role %q", hl.Role))
		return
	} else if hl.Site == r.self {
		refuse(fmt.Sprintf("peer claims this site's own name %q", r.self))
		return
	}
	if hl.Cost < 1 || hl.Index < 0 || hl.Index >= max(hl.Pool, 1) || hl.Pool > 64 {
		refuse(fmt.Sprintf("bad hello: cost %d, index %d of %d", hl.Cost, hl.Index, hl.Pool))
		return
	}
	if err := r.cfg.Redeemer.Redeem(certs[0].SerialNumber.Text(16), peerSite, time.Now()); err != nil {
		refuse(err.Error())
		return
	}
	var l *link
	if hl.Index > 0 {
		r.mu.Lock()
		l = r.links[hl.LinkID]
		r.mu.Unlock()
		if l == nil || l.peer != peerSite {
			refuse("no such link (pool connection before its primary)")
			return
		}
	}
	if err := writeMsg(conn, helloReply{Version: LinkProtocolVersion, Site: r.self}); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	sess := mux.Server(conn, r.cfg.Mux)
	if hl.Index > 0 {
		if !l.setSession(hl.Index, sess) {
			sess.Close()
			return
		}
		go func() { <-sess.Done(); l.clearSession(hl.Index, sess) }()
		r.serveSession(l, sess)
		return
	}
	pool := min(max(hl.Pool, 1), 64)
	l = newLink(r, hl.LinkID, peerSite, memberName, hl.Role, hl.Cost, false, pool)
	l.setSession(0, sess)
	// Registered before the control stream arrives so pool connections
	// can attach; it counts as up only once markUp runs.
	r.mu.Lock()
	r.links[l.id] = l
	r.mu.Unlock()
	go func() {
		<-sess.Done()
		l.close(fmt.Errorf("primary connection: %w", sess.Err()))
	}()
	r.serveSession(l, sess)
}

// serveSession accepts streams the peer opens on one session.
func (r *Router) serveSession(l *link, sess *mux.Session) {
	for {
		st, err := sess.Accept()
		if err != nil {
			return
		}
		r.workers.Go(func() { r.handleStream(l, st) })
	}
}

func cutSlash(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], i > 0 && i < len(s)-1
		}
	}
	return "", "", false
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// backoff is jittered exponential backoff.
type backoff struct {
	base, cap, cur time.Duration
}

func newBackoff(base, cap time.Duration) *backoff { return &backoff{base: base, cap: cap} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(b.cur*2, b.cap)
	}
	// full jitter over [cur/2, cur)
	half := b.cur / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

func (b *backoff) reset() { b.cur = 0 }

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errNoLink = errors.New("no link")
