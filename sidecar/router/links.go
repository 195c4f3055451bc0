package router

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
)

// link is one logical link to a peer: a pool of mux sessions over mTLS
// connections. Session 0, the primary, carries the control stream; the link
// is up while the primary lives.
type link struct {
	r        *Router
	id       string
	peer     string // peer site (a member's site equals ours)
	router   string // the peer's router name, as it said ("" if it did not)
	name     string // peer's own name (members: pod name)
	role     string // the peer's role
	identity string // what every pool connection must prove (peer.identity)
	tokenID  string // the token the link rests on
	key      string // the peer site's key (gateway peers); mu guards it once the link is up
	certLife certLife
	// learn takes a link certificate the peer sent (dialled links: the
	// dialer's); renewTimer renews the peer's (accepted links: renew.go).
	learn      func(certPEM string) error
	learnCA    func(bundlePEM []byte) error // dialled links: the dialer's (rotation.go)
	renewTimer *time.Timer
	policy     policy.Policy
	cost       int
	dialed     bool
	// peerCounts are the link's series of the per-peer counters, looked
	// up once here rather than for every stream.
	peerCounts peerCounts

	mu       sync.Mutex
	sessions []*mux.Session // by pool index; nil where down
	loads    []poolLoad     // by pool index: what each carried lately (pick)
	ctrl     *mux.Stream
	up       bool
	upSince  time.Time // when it came up
	closed   bool
	// synced is set once the peer's first records have been applied: the
	// whole of its database, which it sends when the link comes up.
	synced atomic.Bool

	// pending records to send, coalesced per node; kick wakes the writer.
	pendMu      sync.Mutex
	pending     map[string]netview.Signed
	pendingCert string // a renewed link certificate for the peer (renew.go)
	pendingCA   string // this site's trust bundle for the peer (rotation.go)
	// traffic holds traffic reports to send (traffic.go), the newest per
	// node.
	traffic map[string]netview.SignedTraffic
	kick    chan struct{}
	done    chan struct{}
}

func newLink(r *Router, id string, p peer, cost int, dialed bool, pool int) *link {
	name := p.router
	if name == "" {
		name = p.site
	}
	return &link{
		r: r, id: id, peer: p.site, router: p.router, name: name, role: p.role, identity: p.identity(), tokenID: p.tokenID, key: p.key, certLife: p.certLife, policy: p.policy, cost: cost, dialed: dialed,
		sessions: make([]*mux.Session, pool),
		loads:    make([]poolLoad, pool),
		pending:  map[string]netview.Signed{},
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		peerCounts: peerCounts{
			sent:     r.m.PeerBytes.WithLabelValues(p.site, "sent"),
			received: r.m.PeerBytes.WithLabelValues(p.site, "received"),
			opened:   r.m.PeerStreams.WithLabelValues(p.site, "opened"),
			accepted: r.m.PeerStreams.WithLabelValues(p.site, "accepted"),
		},
	}
}

// peerCounts are a peer site's series of skiff_peer_bytes_total and
// skiff_peer_streams_total.
type peerCounts struct {
	sent, received, opened, accepted prometheus.Counter
}

// node is the network node the link ends at (netview.NodeID): one
// gateway of the peer site.
func (l *link) node() string { return netview.NodeID(l.peer, l.router) }

func (l *link) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up && !l.closed
}

// pick returns the live session where a new stream costs least: the
// fewest streams and the least data carried lately (poolload.go), leaving
// out those whose peer sent GOAWAY (it takes no new streams there).
func (l *link) pick() *mux.Session {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var best *mux.Session
	bestCost := math.Inf(1)
	for i, s := range l.sessions {
		if s == nil || s.PeerGoingAway() {
			continue
		}
		select {
		case <-s.Done():
			continue
		default:
		}
		if c := poolCost(s.NumStreams(), l.loads[i].observe(s.DataBytes(), now)); c < bestCost {
			best, bestCost = s, c
		}
	}
	return best
}

// setSession installs a pool session; it returns false if the link is closed.
func (l *link) setSession(i int, s *mux.Session) bool {
	l.mu.Lock()
	if l.closed || i < 0 || i >= len(l.sessions) {
		l.mu.Unlock()
		return false
	}
	if old := l.sessions[i]; old != nil {
		old.Close()
	}
	l.sessions[i] = s
	l.loads[i] = poolLoad{}
	l.mu.Unlock()
	if l.r.draining.Load() {
		s.GoAway() // a session that joins a draining router takes no streams either
	}
	l.r.linkMetrics(l.peer)
	return true
}

// peerDraining reports whether the peer sent GOAWAY on the link's primary
// connection: it is draining (a draining router sends it on every
// connection of every link) and takes no new streams on this link. The
// link stays up, with the routes that rest on it, until the peer closes
// it; new streams go on another link to the same site, or a new one the
// dialling side makes (dialLoop).
func (l *link) peerDraining() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[0] != nil && l.sessions[0].PeerGoingAway()
}

func (l *link) clearSession(i int, s *mux.Session) {
	l.mu.Lock()
	if l.sessions[i] == s {
		l.sessions[i] = nil
	}
	closed := l.closed
	l.mu.Unlock()
	if err := s.Err(); err != nil && !closed {
		// One line per pool connection that ended: a protocol error names
		// the frame and what was wrong with it.
		l.r.log.Info("link pool connection ended", "peerSite", l.peer, "index", i, "error", err.Error())
	}
	l.r.linkMetrics(l.peer)
}

// linkMetrics sets the link gauges of peer from every link to it that is
// up: skiff_links_up counts them per direction, skiff_link_connections
// adds up their live connections, skiff_link_up_timestamp_seconds is when
// the newest came up. Links that never came up count nothing.
func (r *Router) linkMetrics(peer string) {
	var conns, in, out int
	var since time.Time
	r.mu.Lock()
	for _, l := range r.links {
		if l.peer != peer || !l.isUp() {
			continue
		}
		if l.dialed {
			out++
		} else {
			in++
		}
		l.mu.Lock()
		conns += l.liveLocked()
		if l.upSince.After(since) {
			since = l.upSince
		}
		l.mu.Unlock()
	}
	r.mu.Unlock()
	r.m.LinksUp.WithLabelValues(peer, "incoming").Set(float64(in))
	r.m.LinksUp.WithLabelValues(peer, "outgoing").Set(float64(out))
	r.m.LinkConns.WithLabelValues(peer).Set(float64(conns))
	up := 0.0
	if !since.IsZero() {
		up = float64(since.UnixMilli()) / 1000
	}
	r.m.LinkUpSince.WithLabelValues(peer).Set(up)
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
	if l.renewTimer != nil {
		l.renewTimer.Stop()
	}
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
		r.deleteLinkLocked(l)
	}
	r.mu.Unlock()
	r.linkMetrics(l.peer)
	if wasUp {
		r.log.Info("link down", "peerSite", l.peer, "peer", l.name, "linkID", l.id, "error", errString(cause))
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
	l.up, l.upSince = true, time.Now()
	l.mu.Unlock()
	r := l.r
	r.mu.Lock()
	r.setLinkLocked(l)
	close(r.linkUp) // wakes streams waiting for a link that is not draining
	r.linkUp = make(chan struct{})
	r.mu.Unlock()
	if r.draining.Load() {
		l.goAway()
	}
	r.log.Info("link up", "peerSite", l.peer, "peer", l.name, "peerRole", l.role, "cost", l.cost, "direction", l.direction(), "linkID", l.id)
	l.scheduleRenewal(l.certLife)
	if !l.dialed && l.role == roleGateway && l.peer != r.self && l.tokenID != "" && r.cfg.Authority != nil {
		l.sendCA(r.cfg.Authority.CA())
	}
	r.linkMetrics(l.peer)
	if r.cfg.Role == RoleGateway {
		recs, err := r.db.Signed()
		if err != nil {
			l.close(fmt.Errorf("sign the site record: %w", err))
			return
		}
		l.enqueue(recs)
	}
	// The writer starts once the database is queued, so that its first
	// message carries all of it: the peer's end of the link is synced
	// when it has taken that message.
	r.tasks.Go(l.writeLoop)
	if r.cfg.Role == RoleGateway {
		r.updateLocal()
	}
}

func (l *link) enqueue(recs []netview.Signed) {
	l.pendMu.Lock()
	for _, rec := range recs {
		if old, ok := l.pending[rec.Node()]; !ok || rec.Newer(old.Record) {
			l.pending[rec.Node()] = rec
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
	Records [][]byte `json:"records,omitempty"` // signed site records (netview wire form)
	// Traffic are signed traffic reports (netview wire form), between
	// gateways only (traffic.go). A gateway of an earlier version ignores
	// the field.
	Traffic [][]byte `json:"traffic,omitempty"`
	// LinkCert is a new link certificate (PEM) for the site that dialled
	// the link, from the site that issued its token (renew.go).
	LinkCert string `json:"linkCert,omitempty"`
	// CA is the trust bundle (PEM CA certificates) of the site that
	// issued the dialling site's token: sent when the link comes up and
	// when the site rotates its CA (rotation.go).
	CA string `json:"ca,omitempty"`
}

// writeLoop sends pending records; a slow peer gets the newest record per
// node, never a growing queue.
func (l *link) writeLoop() {
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
		}
		l.pendMu.Lock()
		batch, traffic := l.pending, l.traffic
		l.pending, l.traffic = map[string]netview.Signed{}, nil
		msg := controlMsg{LinkCert: l.pendingCert, CA: l.pendingCA}
		l.pendingCert, l.pendingCA = "", ""
		l.pendMu.Unlock()
		for _, rec := range batch {
			msg.Records = append(msg.Records, rec.Wire())
		}
		for _, t := range traffic {
			msg.Traffic = append(msg.Traffic, t.Wire())
		}
		if len(msg.Records) == 0 && len(msg.Traffic) == 0 && msg.LinkCert == "" && msg.CA == "" {
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
		if msg.CA != "" {
			l.takeCA(msg.CA) // before a link certificate from the CA it brings
		}
		if msg.LinkCert != "" {
			l.takeCert(msg.LinkCert)
		}
		var changed []netview.Signed
		for _, b := range msg.Records {
			rec, err := netview.Open(b, time.Now())
			if err != nil {
				r.recordRefused(l, err)
				continue
			}
			r.m.RecordsReceived.Inc()
			if r.cfg.Role == RoleSidecar && rec.Node() == l.node() && r.gateway.Load() == l {
				// A sidecar's view is rooted at its gateway: the record of
				// the gateway of its newest link is its local one (the
				// records of its site's other gateways, the one it was
				// linked to before included, are held like any other).
				if l.peerDraining() {
					// The gateway is going; its record only shows its
					// links closing. Until a replacement link brings the
					// next gateway's record, the view keeps the last one
					// it had, under which new connections wait for that
					// link (linkToward) instead of finding no endpoint.
					continue
				}
				ok, err := r.db.Mirror(rec)
				if err != nil {
					r.recordRefused(l, err)
				} else if ok {
					changed = append(changed, rec)
				}
				continue
			}
			if l.role == roleMember {
				continue // members never originate records
			}
			ok, err := r.db.Apply(rec)
			if err != nil {
				r.recordRefused(l, err)
				continue
			}
			if ok {
				changed = append(changed, rec)
				if r.cfg.Role == RoleGateway {
					r.siblingSeen(rec.Record)
					r.rolledOver(rec.Site)
				}
			}
		}
		if len(changed) > 0 {
			if r.cfg.Role == RoleGateway {
				r.flood(changed, l)
			}
			r.viewChanged()
		}
		if len(msg.Records) > 0 && !l.synced.Swap(true) && r.cfg.Role == RoleGateway && l.peer == r.self {
			r.kickSiblings() // a sibling's database: the site may be settled
		}
		if len(msg.Traffic) > 0 {
			r.applyTraffic(l, msg.Traffic)
		}
	}
}

// recordRefused counts and reports a site record that link l brought
// and that was refused. A record for a name another key holds is a
// Warning: some site forged it, or two sites use one name.
func (r *Router) recordRefused(l *link, err error) {
	reason := refusedReason(err)
	r.m.RecordsRefused.WithLabelValues(reason).Inc()
	ok, suppressed := r.refusedLogs.Allow("record " + reason)
	if !ok {
		return
	}
	if reason == "key_conflict" {
		r.log.Info("Warning: site record refused: its site's name is held by another key", "peerSite", l.peer, "error", err.Error(), "suppressed", suppressed)
		return
	}
	r.log.Info("site record refused", "peerSite", l.peer, "error", err.Error(), "suppressed", suppressed)
}

// refusedReason is the reason label of a site record or traffic report
// refused with err.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, netview.ErrKeyConflict):
		return "key_conflict"
	case errors.Is(err, netview.ErrSignature):
		return "signature"
	case errors.Is(err, netview.ErrTooManySites):
		return "too_many"
	case errors.Is(err, netview.ErrVersion):
		return "version"
	}
	return "invalid"
}

// flood sends records to every up link but except.
func (r *Router) flood(recs []netview.Signed, except *link) {
	for _, l := range r.upLinks(except, true) {
		l.enqueue(recs)
	}
}

// upLinks returns the links that are up but except, those to members
// (sidecars) too with members.
func (r *Router) upLinks(except *link, members bool) []*link {
	r.mu.Lock()
	targets := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		if l != except && (members || l.role != roleMember) {
			targets = append(targets, l)
		}
	}
	r.mu.Unlock()
	return slices.DeleteFunc(targets, func(l *link) bool { return !l.isUp() })
}

// acceptLinks serves link access until ln is closed (a drain begins) or
// ctx, Run's, ends; the connections it accepted go on with ctx.
func (r *Router) acceptLinks(ctx context.Context, ln net.Listener) {
	admission := newLinkAdmission(r.log)
	acceptLoop(ctx, ln, r.log.WithValues("listener", "links", "bind", ln.Addr().String()), func(c net.Conn) {
		release, refused := admission.admit(c)
		if refused != "" {
			r.m.LinkRefused.WithLabelValues(refused).Inc()
			return
		}
		r.tasks.Go(func() {
			// handleLinkConn releases the slot once the hello is
			// answered; this is for a path that forgets.
			defer release()
			r.handleLinkConn(ctx, c, release)
		})
	})
}

// serveSession accepts streams the peer opens on one session; ctx (Run's,
// or a dial loop's) is the parent of their handlers'.
func (r *Router) serveSession(ctx context.Context, l *link, sess *mux.Session) {
	for {
		st, err := sess.Accept()
		if err != nil {
			return
		}
		f, ok := r.flows.begin(st)
		if !ok {
			continue // the router is stopping; begin reset the stream
		}
		r.workers.Go(func() { defer f.end(); r.handleStream(ctx, f, l, st) })
	}
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

var errNoLink = errors.New("no link")
