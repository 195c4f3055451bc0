package router

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Siblings are the other gateways of this site (replicas): every gateway
// routes for the site, so each links to each other one, at cost 0, and
// streams reach whichever gateway holds the link they need. A gateway
// finds its siblings by resolving Config.Siblings (host:port; in
// Kubernetes a headless Service's name, which resolves to every gateway
// pod) every siblingResolveEvery, and at once when a record of a sibling
// it has no link to arrives (siblingSeen), and dials each address it finds with
// Config.SiblingTLS. Of two siblings the one with the lower router name
// dials (the other refuses, "sibling_order"); the reply names the gateway
// at an address, so a gateway stops dialling itself and the siblings that
// dial it.
const siblingResolveEvery = 2 * time.Second

// siblingSettleWait bounds how long a gateway with siblings stays unready
// while it links to the siblings it found (one that cannot be reached
// does not keep it unready longer).
const siblingSettleWait = 3 * time.Second

// siblingKnownWait bounds how long a gateway stays unready while a
// gateway of its site that it reaches through another (its record came)
// has no direct link to it: the resolution, from a DNS answer cached for
// a few seconds, has not found it yet. Two new gateways of a rolling
// upgrade that are not linked to each other hang together by an old one,
// which is about to drain.
const siblingKnownWait = 15 * time.Second

// siblingState is what the sibling loop knows of an address.
type siblingState struct {
	cancel context.CancelFunc // of its dial loop; nil when not dialled
	router string             // the gateway there, once a reply said
	absent bool               // the last dial found no gateway there
}

// siblingSet is what the sibling loop keeps: the addresses it found and
// the dial loops it runs to them.
type siblingSet struct {
	wg    sync.WaitGroup // the dial loops, which siblingLoop waits for
	mu    sync.Mutex     // guards addrs and the siblingStates in it
	addrs map[string]*siblingState
}

// siblingLoop keeps a link to every sibling until ctx ends.
func (r *Router) siblingLoop(ctx context.Context) {
	s := &siblingSet{addrs: map[string]*siblingState{}}
	defer s.wg.Wait()
	t := time.NewTicker(siblingResolveEvery)
	defer t.Stop()
	settleBy := time.Now().Add(siblingSettleWait)
	settleTimer := time.NewTimer(siblingSettleWait)
	defer settleTimer.Stop()
	logged := ""
	resolved := false // once: a gateway that never resolved its siblings is not settled before settleBy
	for {
		found, err := r.resolveSiblings(ctx)
		resolved = resolved || err == nil
		if err != nil && err.Error() != logged {
			r.log.Info("sibling gateways not resolved; keeping the known ones", "error", err.Error())
		}
		logged = ""
		if err != nil {
			logged = err.Error()
		}
		r.updateSiblings(ctx, s, found, err == nil)
		if !r.awaitSiblings(ctx, s, t.C, settleTimer.C, settleBy, resolved) {
			return
		}
	}
}

// updateSiblings dials every address found that s does not have yet and,
// if found is complete (the resolution succeeded), forgets the addresses
// it lacks, ending their dial loops.
func (r *Router) updateSiblings(ctx context.Context, s *siblingSet, found []string, complete bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if complete {
		for a, st := range s.addrs {
			if !slices.Contains(found, a) {
				if st.cancel != nil {
					st.cancel()
				}
				delete(s.addrs, a)
			}
		}
	}
	for _, a := range found {
		if _, ok := s.addrs[a]; ok {
			continue
		}
		r.dialSibling(ctx, s, a)
	}
}

// dialSibling adds address a to s and starts a dial loop to it, a task of
// the router that s also waits for; the caller holds s.mu.
func (r *Router) dialSibling(ctx context.Context, s *siblingSet, a string) {
	st := &siblingState{}
	s.addrs[a] = st
	dctx, cancel := context.WithCancel(ctx)
	st.cancel = cancel
	spec := LinkSpec{Name: "sibling " + a, Endpoint: a, TLS: r.cfg.SiblingTLS, Cost: 0, PeerSite: r.self, PeerKey: r.db.HolderOf(r.self)}
	spec.onReply = func(reply helloReply) { r.siblingReplied(s, st, cancel, reply) }
	s.wg.Add(1)
	r.tasks.Go(func() { defer s.wg.Done(); r.dialLoop(dctx, spec) })
}

// siblingReplied records in st what a hello reply from its address said,
// and ends its dial loop (cancel) if the gateway there is this one or a
// sibling that dials this one.
func (r *Router) siblingReplied(s *siblingSet, st *siblingState, cancel context.CancelFunc, reply helloReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Nothing answered, or a gateway that takes no sibling link
	// from here (it drains, say) and will not dial this one:
	// no sibling to wait for.
	st.absent = reply.Router == "" || (reply.Error != "" && reply.Reason != "sibling_order" && reply.Reason != "sibling_self")
	if reply.Router == "" {
		return
	}
	st.router = reply.Router
	if reply.Router == r.routerName || (reply.Error != "" && reply.Router < r.routerName) {
		// This gateway itself, or a sibling that dials this one.
		cancel()
	}
}

// awaitSiblings waits for the next resolution (a tick of tick, or a kick),
// marking the siblings settled meanwhile once they are (checkSettled). It
// reports false, having ended every dial loop, when ctx ends.
func (r *Router) awaitSiblings(ctx context.Context, s *siblingSet, tick, settle <-chan time.Time, settleBy time.Time, resolved bool) bool {
	for {
		r.checkSettled(s, settleBy, resolved)
		r.mu.Lock()
		up := r.linkUp
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, st := range s.addrs {
				st.cancel()
			}
			s.mu.Unlock()
			return false
		case <-tick:
		case <-r.siblingKick:
		case <-settle:
			continue
		case <-up:
			continue
		}
		return true
	}
}

// checkSettled marks the siblings settled, and logs it the first time.
// Ready once every sibling found is linked (or is this gateway), or,
// after siblingSettleWait (settleBy), once every sibling that answered
// is (one that cannot be reached does not keep it unready longer); and
// in either case once every gateway of the site that the view reaches
// and that does not drain is linked directly too. A sibling that
// answered, or that the view reaches, keeps it unready for at most
// siblingKnownWait: it dials this gateway (the lower name dials) once
// its own resolution finds it. awaitSiblings checks again as links come
// up, and on every resolution.
func (r *Router) checkSettled(s *siblingSet, settleBy time.Time, resolved bool) {
	if r.siblingsSettled.Load() {
		return
	}
	now := time.Now()
	s.mu.Lock()
	answered := r.answeredUnlinked(s.addrs)
	found := resolved && allAnswered(s.addrs) && answered == ""
	s.mu.Unlock()
	unlinked := r.unlinkedSibling()
	ready := (found || (!now.Before(settleBy) && answered == "")) && unlinked == ""
	if !ready && now.Before(settleBy.Add(siblingKnownWait-siblingSettleWait)) {
		return
	}
	if !r.siblingsSettled.Swap(true) {
		r.log.Info("linked to the site's other gateways", "gateways", len(s.addrs), "unlinked", cmp.Or(unlinked, answered))
	}
}

// answeredUnlinked returns a sibling that answered at an address found
// (its router name is known) and that this gateway has no synced link to,
// or ""; the caller holds the loop's lock.
func (r *Router) answeredUnlinked(addrs map[string]*siblingState) string {
	for _, st := range addrs {
		if st.absent || st.router == "" || st.router == r.routerName {
			continue
		}
		if !r.syncedWith(st.router) {
			return st.router
		}
	}
	return ""
}

// unlinkedSibling returns a gateway of this site that the view reaches,
// that does not drain, and that this gateway has no synced link to (it
// reaches it through another: one the resolution did not find yet), or
// "".
func (r *Router) unlinkedSibling() string {
	v := r.db.View()
	for _, router := range v.Routers[r.self] {
		node := netview.NodeID(r.self, router)
		if node == v.Node {
			continue
		}
		if rec, ok := r.db.Record(node); !ok || rec.Draining {
			continue
		}
		if !r.syncedWith(router) {
			return node
		}
	}
	return ""
}

// siblingSeen wakes the sibling loop when a record of another gateway of
// this site arrives from a gateway it has no link to: a sibling that
// started after the last resolution (a rolling upgrade), which it should
// link to now rather than at the next tick.
func (r *Router) siblingSeen(rec netview.Record) {
	if len(r.cfg.Siblings) == 0 || rec.Site != r.self || rec.Router == "" || rec.Router == r.routerName || r.siblingLink(rec.Router) != nil {
		return
	}
	r.kickSiblings()
}

// kickSiblings wakes the sibling loop at once.
func (r *Router) kickSiblings() {
	select {
	case r.siblingKick <- struct{}{}:
	default:
	}
}

// allAnswered reports whether a gateway answered at every address found
// (this one, or a sibling: the reply named its router) or none is there
// (its last dial found nothing listening: one starting, or gone); the
// caller holds the loop's lock.
func allAnswered(addrs map[string]*siblingState) bool {
	for _, st := range addrs {
		if !st.absent && st.router == "" {
			return false
		}
	}
	return true
}

// syncedWith reports whether a link to sibling router is up and its
// database has arrived over it.
func (r *Router) syncedWith(router string) bool {
	l := r.siblingLink(router)
	return l != nil && l.synced.Load()
}

// siblingLink returns the up link to sibling router, nil if there is none.
func (r *Router) siblingLink(router string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		if l.peer == r.self && l.router == router && l.role == roleGateway && l.isUp() {
			return l
		}
	}
	return nil
}

// resolveSiblings returns the addresses (ip:port) the sibling entries
// resolve to now, sorted.
func (r *Router) resolveSiblings(ctx context.Context) ([]string, error) {
	var out []string
	for _, entry := range r.cfg.Siblings {
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ips, err := r.lookupHost(rctx, host)
		cancel()
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			continue // no gateway there (a headless Service with no pod yet)
		}
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// siblingTLSValid reports whether a sibling configuration is usable.
func siblingTLSValid(c *tls.Config) bool { return c != nil && c.GetClientCertificate != nil }
